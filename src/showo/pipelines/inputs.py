"""Validation of user inputs: images, masks, prompts and numbers. Problems raise `InputError` (one line);
recoverable oddities (a resized mask, a truncated prompt) are reported with `ShowoWarning`."""
from __future__ import annotations

import functools
import os
import inspect
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from ..errors import InputError, ShowoWarning
from ..files import file_problem

MAX_IMAGE_PIXELS = 64_000_000  # ~8000x8000; larger files are refused as possible decompression bombs


def warn(message: str) -> None:
    warnings.warn(message, ShowoWarning, stacklevel=3)


def square_input(image: Image.Image, task: str) -> Image.Image:
    """`image`, with a warning when it is not square: the official pre-processing keeps its centre square only,
    so the result covers that square (and extrapolation grows it, not the whole picture)."""
    w, h = image.size
    if w != h:
        side = min(w, h)
        warn(f"the image is {w}x{h}: {task} works on its centre {side}x{side} square (the rest is cropped away)")
    return image


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


def load_image(source: str | Path | Image.Image, what: str = "image", background: int = 255) -> Image.Image:
    """An RGB PIL image from a path or a PIL image of any mode (L, LA, P, RGBA, CMYK, I;16 read as 0..65535, F as
    0..1 or 0..255, ...), turned upright as its EXIF orientation says (as viewers show it: a phone photo, and a
    mask drawn on it). Transparent parts show the grey level `background` (white for pictures)."""
    if isinstance(source, Image.Image):
        image = source
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise InputError(f"{what} is too large ({image.width}x{image.height} pixels)")
        try:  # Image.open() is lazy: its pixels are read here, and may be truncated, or the file closed
            image.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise InputError(f"{what} cannot be read: {e}") from None
    elif not isinstance(source, (str, os.PathLike)):
        raise InputError(f"{what} must be a file path or a PIL image, got {type(source).__name__}")
    else:
        path = Path(os.fspath(source))
        if problem := file_problem(path, "an image file"):
            raise InputError(f"{what} {path} {problem}")
        if path.stat().st_size == 0:
            raise InputError(f"{what} is an empty file: {path}")
        try:
            with pixel_limit():
                image = Image.open(path)
                image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(f"{what} {path} is too large (over {MAX_IMAGE_PIXELS} pixels)") from None
        except Image.UnidentifiedImageError:
            raise InputError(f"{what} {path} is not an image file Pillow can read") from None
        except PermissionError:
            raise InputError(f"{what} {path} cannot be read: permission denied") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise InputError(f"{what} {path} is corrupt or truncated ({e})") from None
    if image.width < 1 or image.height < 1:  # (the pixel limit was checked above: by Pillow when opening a file)
        raise InputError(f"{what} has no pixels")
    try:
        return _to_rgb(ImageOps.exif_transpose(image), background)
    except InputError:  # our own, already one line (an InputError is a ValueError too)
        raise
    except (OSError, SyntaxError, ValueError) as e:  # a mode Pillow cannot convert, a broken EXIF block
        raise InputError(f"{what} cannot be converted to RGB ({image.mode}): {e}") from None


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


def load_mask(source: str | Path | Image.Image, size: tuple[int, int]) -> Image.Image:
    """An 'L' mask (white = regenerate) of the image's `size`; resized with a warning when it differs. Transparent
    parts keep the image (white strokes painted on a transparent layer select the strokes, not everything)."""
    mask = load_image(source, what="mask", background=0).convert("L")
    if mask.size != size:
        warn(f"mask is {mask.size[0]}x{mask.size[1]} but the image is {size[0]}x{size[1]}: mask resized")
        mask = mask.resize(size, Image.NEAREST)
    return mask


def check_prompt(prompt: str) -> str:
    """A single prompt (the tasks that take one, not a batch)."""
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be one text, got {type(prompt).__name__}")
    return check_prompts(prompt)[0]


def check_prompts(prompt: str | list[str], what: str = "prompt") -> list[str]:
    if not isinstance(prompt, (str, list, tuple)):
        raise InputError(f"{what} must be a text or a list of texts, got {type(prompt).__name__}")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise InputError(f"no {what} given")
    for p in prompts:
        if not isinstance(p, str):
            raise InputError(f"{what} must be text, got {type(p).__name__}")
        if not p.strip():
            raise InputError(f"empty {what}")
        try:
            p.encode("utf-8")
        except UnicodeEncodeError:  # bytes the shell passed that are not UTF-8 (Python keeps them as surrogates)
            raise InputError(f"{what} is not valid UTF-8 text: {p.encode('utf-8', 'replace').decode()!r}") from None
    return prompts


def plain_arguments(method):
    """Give `method` numpy scalars (from a sweep: np.int64 steps, np.float32 scales) as Python numbers: then the
    sampling arithmetic and the results match Python arguments exactly, and the metadata stays JSON-able. Its
    `bool` parameters must be True or False (a string such as "false" is truthy and was taken as True)."""
    signature = inspect.signature(method)
    flags = [name for name, p in signature.parameters.items() if p.annotation in ("bool", bool)]

    def plain(value):
        return value.item() if isinstance(value, np.generic) else value

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        args, kwargs = [plain(a) for a in args], {k: plain(v) for k, v in kwargs.items()}
        try:
            given = signature.bind_partial(self, *args, **kwargs).arguments
        except TypeError:  # a wrong call: the method's own call below says so
            given = {}
        for name in flags:
            if name in given and not isinstance(given[name], bool):
                raise InputError(f"{name} must be True or False, got {given[name]!r}")
        return method(self, *args, **kwargs)
    return wrapper
