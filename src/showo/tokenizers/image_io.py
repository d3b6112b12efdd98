"""Image pre/post-processing of the official scripts, with PIL + numpy (no torchvision).

`preprocess` = torchvision `Resize(res, BICUBIC)` (shortest side, PIL so antialiased) -> `CenterCrop(res)` ->
`ToTensor` -> `Normalize(0.5, 0.5)`; `postprocess` = `clamp((x+1)/2, 0, 1) * 255 -> uint8` (truncating, as the
official `astype(np.uint8)`); `mask_to_grid` = the inpainting mask's reduction to the code grid (white = regenerate).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError


MAX_ASPECT = 64  # long side / short side of an input: a panorama is 10:1


def _resize_center_crop(image: Image.Image, resolution: int) -> Image.Image:
    """Shortest side to `resolution` (long side truncated like torchvision), bicubic, then the centre square."""
    if not isinstance(image, Image.Image):
        raise InputError(f"expected a PIL image, got {type(image).__name__}")
    if resolution <= 0:
        raise InputError(f"resolution must be positive, got {resolution}")
    w, h = image.size
    if w == 0 or h == 0:
        raise InputError("image is empty")
    short, long = (w, h) if w <= h else (h, w)
    if long > MAX_ASPECT * short:  # a 1x300000 image was resized to 300000 x 512 before its centre was cut
        raise InputError(f"image is {w}x{h}: sides further apart than {MAX_ASPECT}:1 are refused (its centre "
                         "square would be a sliver)")
    new_long = int(resolution * long / short)
    new_w, new_h = (resolution, new_long) if w <= h else (new_long, resolution)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.BICUBIC)
    top = int(round((new_h - resolution) / 2.0))
    left = int(round((new_w - resolution) / 2.0))
    return image.crop((left, top, left + resolution, top + resolution))


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """uint8 HxWxC (or HxW) -> float [C, H, W] in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)


def preprocess(image: Image.Image, resolution: int) -> torch.Tensor:
    """[3, res, res] float in [-1, 1] of any PIL image (grayscale, RGBA, palette... are converted to RGB first)."""
    image = image.convert("RGB") if isinstance(image, Image.Image) and image.mode != "RGB" else image
    return (_to_tensor(_resize_center_crop(image, resolution)) - 0.5) / 0.5


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """[B, H, W, 3] uint8 of decoder output [B, 3, H, W] in [-1, 1] (clamped, then truncated)."""
    if pixels.dim() != 4:
        raise InputError(f"expected pixels [B, C, H, W], got {tuple(pixels.shape)}")
    x = torch.clamp((pixels.detach().float() + 1.0) / 2.0, min=0.0, max=1.0) * 255.0
    return x.permute(0, 2, 3, 1).to(torch.uint8).cpu()


def postprocess(pixels: torch.Tensor) -> list[Image.Image]:
    """PIL RGB images of decoder output [B, 3, H, W] in [-1, 1]."""
    return [Image.fromarray(a) for a in to_uint8(pixels).numpy()]


def mask_to_grid(mask: Image.Image, resolution: int, grid_hw: tuple[int, int]) -> torch.Tensor:
    """bool [h*w] (row-major) of an inpainting mask: True (white) = regenerate this code.

    Official steps: 'L', same resize/crop as the image, to [0, 1] (no normalize), bicubic `F.interpolate` to the
    grid (no antialias), `>= 0.5`.
    """
    if not isinstance(mask, Image.Image):
        raise InputError(f"expected a PIL mask image, got {type(mask).__name__}")
    h, w = (int(s) for s in grid_hw)
    if h <= 0 or w <= 0:
        raise InputError(f"grid_hw must be positive, got {tuple(grid_hw)}")
    x = _to_tensor(_resize_center_crop(mask.convert("L"), resolution))[None]  # [1, 1, res, res]
    x = F.interpolate(x, size=(h, w), mode="bicubic")
    return (x >= 0.5).reshape(-1)
