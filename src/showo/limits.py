"""Bounds of the numbers users pass (steps, image counts, guidance scales, temperatures) and the checks that hold
them, with the check of a callback's signature: one home for the sampling, pipeline and command-line checks (the
command line applies them while parsing).

Torch-free, so that `showo --help` and every usage error answer without loading torch.
"""
from __future__ import annotations

import inspect

from .errors import InputError
from .fields import is_number


# More MaskGIT steps than this only wait longer (the official demos use 18-50; each step unmasks >= 1 token).
MAX_STEPS = 1000


def check_steps(steps) -> None:
    check_positive("num_inference_steps", steps)
    if steps > MAX_STEPS:
        raise InputError(f"num_inference_steps must be at most {MAX_STEPS}, got {steps}")


# Images one call may make (rows of one batch): far above what fits in memory at Show-o's size, and low
# enough that a typo (10**12) is an error, not a process killed for memory.
MAX_IMAGES = 4096


def check_image_count(name: str, value, per: int = 1) -> None:
    """A positive image count whose batch (`value` x `per`, e.g. per prompt) stays within MAX_IMAGES."""
    check_positive(name, value)
    if value * per > MAX_IMAGES:
        raise InputError(f"{name} asks for {value * per} images in one call; at most {MAX_IMAGES} (call again "
                         "for more)")


# Pixels of one decoded image at most (4096 x 4096): the image tokenizer's decoder holds activations of about 128
# channels per pixel, so a larger canvas (an extrapolation grown without end) fails for memory after all the work.
MAX_OUTPUT_PIXELS = 4096 * 4096


def check_output_size(height: int, width: int) -> None:
    if height * width > MAX_OUTPUT_PIXELS:
        raise InputError(f"the image would be {width}x{height} pixels, over the {MAX_OUTPUT_PIXELS:,}-pixel limit of "
                         "one decoded image")


def check_batch(what: str, count: int) -> None:
    """At most MAX_IMAGES rows in one call of the text tasks too (`what`: "3000 images x 2 questions")."""
    if count > MAX_IMAGES:
        raise InputError(f"{what} asks for {count} rows in one call; at most {MAX_IMAGES} (call again for more)")


def check_positive(name: str, value) -> None:
    if not is_number(value, integer=True) or value <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


# Upper bound of guidance scales and temperatures: far above any useful value (the official demos use 1.75-5
# and 1), and low enough that scaled logits stay finite in float32 and float16.
MAX_SCALE = 100.0
# Smallest non-zero text temperature: logits divided by less overflow float32 (0 means greedy).
MIN_TEMPERATURE = 1e-4


def check_scale(name: str, value, limit: float = MAX_SCALE) -> None:
    """A guidance scale or temperature: a number in [0, limit]."""
    if not is_number(value) or not 0 <= value <= limit:
        raise InputError(f"{name} must be a number in [0, {limit:g}], got {value!r}")


def check_text_sampling(max_new_tokens, temperature, top_k=None, top_p=None,
                        temperature_name: str = "temperature") -> None:
    """The shared validation of autoregressive sampling options."""
    check_positive("max_new_tokens", max_new_tokens)
    check_scale(temperature_name, temperature)
    if 0 < temperature < MIN_TEMPERATURE:
        raise InputError(f"{temperature_name} must be 0 (greedy) or at least {MIN_TEMPERATURE:g}, got {temperature!r}")
    if top_k is not None:
        check_positive("top_k", top_k)
    if top_p is not None and (not is_number(top_p) or not 0 < top_p <= 1):
        raise InputError(f"top_p must be in (0, 1], got {top_p!r}")


def check_callback(name: str, callback, arguments: str) -> None:
    """A callable that can take `arguments` ("step, ids, finished"), refused before any work otherwise (a wrong
    signature failed at the first step, after the prompt pass). One without a readable signature (a builtin)
    is taken as given."""
    if callback is None:
        return
    if not callable(callback):
        raise InputError(f"{name} must be callable, got {type(callback).__name__}")
    try:
        signature = inspect.signature(callback)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*arguments.split(", "))
    except TypeError:
        raise InputError(f"{name} is called as {name}({arguments}); its signature {signature} does not take "
                         "that") from None
