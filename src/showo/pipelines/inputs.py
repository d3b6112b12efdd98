"""Validation of user inputs: masks, prompts and arguments (images: `tokenizers.image_io.load_image`). Problems
raise `InputError` (one line); recoverable oddities (a resized mask, a truncated prompt) are reported with
`ShowoWarning`."""
from __future__ import annotations

import functools
import inspect
import math
import warnings

import numpy as np
import torch
from PIL import Image

from ..errors import InputError, ShowoWarning
from ..fields import is_number
from ..limits import check_batch
from ..tokenizers.image_io import ImageInput, load_image


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


def load_mask(source: ImageInput, size: tuple[int, int]) -> Image.Image:
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


def question_pairs(image: object, question: object, pairwise: bool) -> tuple[list, list[str], list[tuple[int, str]]]:
    """`ask`'s images (one or a list), its questions, and its rows as (image index, question): every question
    about every image, or with `pairwise` question i about image i. Checked in this order (so that a request
    batched with others by `showo serve` meets the error it meets alone)."""
    images = list(image) if isinstance(image, (list, tuple)) else [image]
    if not images:
        raise InputError("no image given")
    questions = check_prompts(question, what="question")
    if pairwise and len(images) != len(questions):
        raise InputError(f"pairwise takes one question per image, got {_count(len(images), 'image')} and "
                         f"{_count(len(questions), 'question')}")
    check_batch(f"{_count(len(images), 'image')} {'and' if pairwise else 'x'} {_count(len(questions), 'question')}",
                len(questions) if pairwise else len(images) * len(questions))
    pairs = list(enumerate(questions)) if pairwise else [(i, q) for i in range(len(images)) for q in questions]
    return images, questions, pairs


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def check_output_type(output_type: object, latent: bool = True) -> None:
    """One of `OUTPUT_TYPES` (diffusers' names; "latent" where codes alone can be returned)."""
    allowed = OUTPUT_TYPES if latent else OUTPUT_TYPES[:-1]
    if output_type not in allowed:
        raise InputError(f"output_type must be one of {', '.join(map(repr, allowed))}, got {output_type!r}")


def check_codes(codes, codebook_size: int, grid: tuple[int, int] | None = None) -> tuple[int, int]:
    """The (h, w) grid of image codes [B, h*w] to decode; what is not codes of the codebook in such a grid (token
    ids, an empty batch, a grid of another size) is an InputError."""
    valid = (isinstance(codes, torch.Tensor) and not codes.is_complex() and not codes.is_meta
             and (codes.numel() == 0 or 0 <= codes.min() <= codes.max() < codebook_size))
    if not valid:
        raise InputError(f"codes must be a tensor of image codes in [0, {codebook_size}) (not token ids)")
    if codes.dim() != 2 or 0 in codes.shape:
        raise InputError(f"codes must be [images, h*w] with at least one of each, got {list(codes.shape)}")
    n = codes.shape[1]
    if grid is None and math.isqrt(n) ** 2 != n:
        raise InputError(f"{n} codes do not form a square grid: pass grid=(h, w)")
    fits = (isinstance(grid, (tuple, list)) and len(grid) == 2
            and all(is_number(v, integer=True) and v > 0 for v in grid) and grid[0] * grid[1] == n)
    if grid is not None and not fits:
        raise InputError(f"grid must be (h, w) with h * w = {n} codes, got {grid!r}")
    check_batch(f"{codes.shape[0]} images", codes.shape[0])
    return tuple(grid) if grid is not None else (math.isqrt(n),) * 2


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
