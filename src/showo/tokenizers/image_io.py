"""Image pre/post-processing of the official scripts, with PIL + numpy (no torchvision).

`preprocess` = torchvision `Resize(res, BICUBIC)` (shortest side, PIL so antialiased) -> `CenterCrop(res)` ->
`ToTensor` -> `Normalize(0.5, 0.5)`; `postprocess` = `clamp((x+1)/2, 0, 1) * 255 -> uint8` (truncating, as the
official `astype(np.uint8)`); `mask_to_grid` = the inpainting mask's reduction to the code grid (white = regenerate).
`load_image` reads what users give (a file, its bytes, an array or a PIL image of any mode) as checked RGB, bombs
refused.
"""
from __future__ import annotations

import io
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..errors import InputError
from ..files import file_problem

# what users give as an image: a file path, a PIL image, a numpy array [H, W] / [H, W, 1|3|4] (uint8, or floats
# in [0, 1], as from matplotlib or skimage), or an image file's bytes
ImageInput = str | os.PathLike | Image.Image | np.ndarray | bytes
MAX_IMAGE_PIXELS = 64_000_000  # ~8000x8000; larger files are refused as possible decompression bombs

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


@contextmanager
def pixel_limit() -> Iterator[None]:
    """Pillow refusing images over `MAX_IMAGE_PIXELS` (its own limit is 89.5M, and between half that and its limit
    it only warns): a DecompressionBombWarning or Error is raised instead."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def load_image(source: ImageInput, what: str = "image", background: int = 255) -> Image.Image:
    """An RGB PIL image from a path, a file's bytes, a numpy array (`_from_array`) or a PIL image of any mode (L,
    LA, P, RGBA, CMYK, I;16 read as 0..65535, F as 0..1 or 0..255, ...), turned upright as its EXIF orientation says
    (as viewers show it: a phone photo, and a mask drawn on it). Transparent parts show the grey level `background`
    (white for pictures)."""
    if isinstance(source, np.ndarray):
        source = _from_array(source, what)
    if isinstance(source, Image.Image):
        image = source
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise InputError(f"{what} is too large ({image.width}x{image.height} pixels)")
        try:  # Image.open() is lazy: its pixels are read here, and may be truncated, or the file closed
            image.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise InputError(f"{what} cannot be read: {e}") from None
    elif isinstance(source, (bytes, bytearray)):  # an image file's contents (an upload to `showo serve`)
        if not source:
            raise InputError(f"{what} is empty (0 bytes)")
        image = _open(io.BytesIO(source), f"{what} ({len(source)} bytes)")
    elif not isinstance(source, (str, os.PathLike)):
        raise InputError(f"{what} must be a file path, a PIL image, a numpy array or a file's bytes, "
                         f"got {type(source).__name__}")
    else:
        path = Path(os.fspath(source))
        if problem := file_problem(path, "an image file"):
            raise InputError(f"{what} {path} {problem}")
        if path.stat().st_size == 0:
            raise InputError(f"{what} is an empty file: {path}")
        image = _open(path, f"{what} {path}")
    if image.width < 1 or image.height < 1:  # (the pixel limit was checked above: by Pillow when opening a file)
        raise InputError(f"{what} has no pixels")
    try:
        return _to_rgb(ImageOps.exif_transpose(image), background)
    except InputError:  # our own, already one line (an InputError is a ValueError too)
        raise
    except (OSError, SyntaxError, ValueError) as e:  # a mode Pillow cannot convert, a broken EXIF block
        raise InputError(f"{what} cannot be converted to RGB ({image.mode}): {e}") from None


def _open(file: Path | io.BytesIO, label: str) -> Image.Image:
    """The image in `file`, read whole, with Pillow's failures as one line that starts with `label`."""
    try:
        with pixel_limit():
            image = Image.open(file)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{label} is too large (over {MAX_IMAGE_PIXELS} pixels)") from None
    except Image.UnidentifiedImageError:
        raise InputError(f"{label} is not an image file Pillow can read") from None
    except PermissionError:
        raise InputError(f"{label} cannot be read: permission denied") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{label} is corrupt or truncated ({e})") from None
    return image


def _from_array(array: np.ndarray, what: str) -> Image.Image:
    """A PIL image of a numpy array [H, W] or [H, W, C] (C = 1, 3 or 4): uint8 as is, bool as black and white,
    floats in [0, 1] scaled to 8 bits (other ranges are refused rather than guessed)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or array.ndim == 3 and array.shape[2] in (3, 4)):
        raise InputError(f"{what} as an array must be [H, W] or [H, W, 1|3|4] (channels last), got shape "
                         f"{list(array.shape)}")
    if array.shape[0] * array.shape[1] > MAX_IMAGE_PIXELS:
        raise InputError(f"{what} is too large ({array.shape[1]}x{array.shape[0]} pixels)")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.size and not 0 <= array.min() <= array.max() <= 1:
            raise InputError(f"{what}: float arrays must hold values in [0, 1]")
        array = np.round(array * 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise InputError(f"{what}: arrays must be uint8, bool or floats in [0, 1], got {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array))


def _to_rgb(image: Image.Image, background: int = 255) -> Image.Image:
    if image.mode == "La":  # premultiplied alpha: Pillow converts it only to LA
        image = image.convert("LA")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale (PNG, TIFF) is 0..65535, whatever its brightest pixel (scaling by that turned a dark
        # picture white, and a near-black mask into one that regenerates everything); 32-bit I holds either range
        wide = image.mode != "I"
        image = image.convert("I")  # point() takes I, not the big-endian I;16B
        lo, hi = image.getextrema()
        if lo < 0 or hi > 65535:
            raise InputError(f"32-bit integer pixels must be 0..255 or 0..65535, got {lo}..{hi}")
        scale = 255.0 / 65535 if wide or hi > 255 else 1.0
        image = image.point(lambda v: v * scale).convert("L")
    if image.mode == "F":  # float pixels: [0, 1] (as from numpy) scaled to 8 bits; larger ones read as 0..255
        if not np.isfinite(np.asarray(image)).all():  # NaN came out black (getextrema skips it)
            raise InputError("float pixels must be finite numbers (found NaN or infinity)")
        hi = image.getextrema()[1]
        image = image.point(lambda v: v * (255.0 if hi <= 1.0 else 1.0)).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (background, background, background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")  # L, P, CMYK, YCbCr, ... convert directly
