"""The value types of `showo`'s options: each turns the text of one option into a number or name, or raises
argparse's ArgumentTypeError with a message naming the problem (reported as one line by `parser.Parser`)."""
from __future__ import annotations

import argparse
import math
import re
from typing import Callable, TypeVar

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


def device_name(text: str) -> str:
    value = text.strip().lower()
    if value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps, got {text!r}")
