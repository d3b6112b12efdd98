"""The value types of `showo`'s options: each turns the text of one option into a number or name, or raises
argparse's ArgumentTypeError with a message naming the problem (reported as one line by `parser.Parser`)."""
from __future__ import annotations

import argparse
import math
import re
from typing import Callable, TypeVar

from ..limits import MAX_IMAGES, MAX_SCALE, MAX_STEPS, MIN_TEMPERATURE

N = TypeVar("N", int, float)


def _number(text: str, cast: Callable[[str], N], ok: Callable[[N], bool], unparsed: str, rejected: str) -> N:
    """`cast(text)` if it parses and passes `ok`; else "must be `unparsed`" (text that is no number) or "must be
    `rejected`" (a number out of range)."""
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {unparsed}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rejected}, got {text if cast is float else value}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer", "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: 0 <= v < 2 ** 63, "an integer >= 0", "an integer in [0, 2**63)")


def non_negative_float(text: str) -> float:
    return _number(text, float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0", "a finite number >= 0")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: math.isfinite(v) and v > 0, "a number > 0", "a finite number > 0")


def probability(text: str) -> float:
    return _number(text, float, lambda v: 0 < v <= 1, "a number in (0, 1]", "a number in (0, 1]")


def port_number(text: str) -> int:
    return _number(text, int, lambda v: 0 <= v <= 65535, "a port number", "a port number in [0, 65535]")


def wait_ms(text: str) -> float:
    """A wait in milliseconds, up to 10 s."""
    return _number(text, float, lambda v: 0 <= v <= 10_000, "a number of milliseconds", "a number in [0, 10000]")


def count_up_to(limit: int) -> Callable[[str], int]:
    """The type of a positive integer option bounded by `limit` (one of `showo.limits`, which the pipeline holds
    too): checked here, while parsing, under the option's own name rather than after the model has loaded."""
    def parse(text: str) -> int:
        return _number(text, int, lambda v: 1 <= v <= limit, "a positive integer", f"an integer in [1, {limit}]")

    return parse


steps_count = count_up_to(MAX_STEPS)
image_count = count_up_to(MAX_IMAGES)


def scale(text: str) -> float:
    """A guidance scale or image temperature."""
    return _number(text, float, lambda v: 0 <= v <= MAX_SCALE, "a number >= 0", f"a number in [0, {MAX_SCALE:g}]")


def text_temperature(text: str) -> float:
    """0 (greedy), or a temperature that keeps divided logits finite."""
    return _number(text, float, lambda v: v == 0 or MIN_TEMPERATURE <= v <= MAX_SCALE, "a number >= 0",
                   f"0 (greedy) or a number in [{MIN_TEMPERATURE:g}, {MAX_SCALE:g}]")


def device_name(text: str) -> str:
    value = text.strip().lower()
    if value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps, got {text!r}")


def path_arg(text: str) -> str:
    """argparse type of every path option: an empty one would silently mean the current directory (or, for an
    optional file, be taken as not given)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return text
