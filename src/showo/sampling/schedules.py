"""Mask schedules: the fraction of image tokens still masked at time t in [0, 1] (1 at t=0, ~0 at t=1).

Each schedule computes exactly what the official `models/sampling.py` computes (same float32 operations in the
same order), because the MaskGIT sampler floors `N * schedule(t)` and one ulp can change the token count.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch

from ..errors import ConfigError
from ..fields import is_number

Schedule = Callable[[torch.Tensor], torch.Tensor]

_CLIP_MIN = 1e-6


def cosine_schedule(t: torch.Tensor) -> torch.Tensor:
    """cos(pi/2 * t), computed as the official `cos(t * pi * 0.5)` (not clipped: slightly negative at t=1)."""
    return torch.cos(t * math.pi * 0.5)


def linear_schedule(t: torch.Tensor) -> torch.Tensor:
    """1 - t, clipped to [1e-6, 1]."""
    return (1 - t).clamp(min=_CLIP_MIN, max=1.0)


def pow_schedule(t: torch.Tensor, exponent: float) -> torch.Tensor:
    """1 - t**exponent, clipped to [1e-6, 1] (the official "pow{K}" schedules)."""
    return (1.0 - t**exponent).clamp(min=_CLIP_MIN, max=1.0)


def sigmoid_schedule(t: torch.Tensor, start: float = -3, end: float = 3, tau: float = 1.0,
                     clip_min: float = 1e-6) -> torch.Tensor:
    """Sigmoid ramp rescaled to 1 at t=0 and 0 at t=1, clipped to [clip_min, 1]."""
    # The end points are float32 scalars built from Python floats, as in the official code.
    v_start = torch.sigmoid(torch.tensor(start / tau))
    v_end = torch.sigmoid(torch.tensor(end / tau))
    out = torch.sigmoid((t * (end - start) + start) / tau)
    return torch.clip((v_end - out) / (v_end - v_start), clip_min, 1.0)


def _number(name: str, key: str, value: object) -> float:
    if not is_number(value) or not math.isfinite(value):
        raise ConfigError(f"mask schedule {name!r}: {key} must be a finite number, got {value!r}")
    return value


def get_mask_schedule(name: str, **params: float) -> Schedule:
    """The schedule called `name`: "cosine", "linear", "pow{K}" (e.g. "pow2", "pow0.5") or "sigmoid"
    (params start, end, tau, clip_min). Raises ConfigError for unknown names or bad parameters."""
    if not isinstance(name, str):
        raise ConfigError(f"mask schedule name must be a string, got {name!r}")
    if name == "sigmoid":
        allowed = ("start", "end", "tau", "clip_min")
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ConfigError(f"mask schedule 'sigmoid': unknown parameter(s) {', '.join(unknown)} "
                              f"(allowed: {', '.join(allowed)})")
        values = {k: _number(name, k, v) for k, v in params.items()}
        start, end = values.get("start", -3), values.get("end", 3)
        tau, clip_min = values.get("tau", 1.0), values.get("clip_min", _CLIP_MIN)
        if tau <= 0:
            raise ConfigError(f"mask schedule 'sigmoid': tau must be > 0, got {tau!r}")
        if start >= end:
            raise ConfigError(f"mask schedule 'sigmoid': start must be < end, got start={start!r}, end={end!r}")
        if not 0 <= clip_min < 1:
            raise ConfigError(f"mask schedule 'sigmoid': clip_min must be in [0, 1), got {clip_min!r}")
        return partial(sigmoid_schedule, **params)
    if params:
        raise ConfigError(f"mask schedule {name!r} takes no parameters, got {', '.join(sorted(params))}")
    if name == "cosine":
        return cosine_schedule
    if name == "linear":
        return linear_schedule
    if name.startswith("pow"):
        try:
            exponent = float(name[3:])
        except ValueError:
            exponent = float("nan")
        if not math.isfinite(exponent) or exponent <= 0:
            raise ConfigError(f"mask schedule {name!r}: expected 'pow' followed by a positive number, e.g. 'pow2'")
        return partial(pow_schedule, exponent=exponent)
    raise ConfigError(f"unknown mask schedule {name!r} (expected cosine, linear, pow<K> or sigmoid)")


def mask_count(step: int, num_steps: int, num_tokens: int, schedule: Schedule,
               num_unknown: int | None = None) -> int:
    """Tokens left masked after MaskGIT step `step` (0-based) of `num_steps`, as the official sampler counts:
    `floor(N * schedule(tensor((step+1)/S)))` in float32, then at most `num_unknown - 1` (when given: the number
    of still-masked tokens before the step) and at least 1."""
    if num_steps < 1 or not 0 <= step < num_steps:
        raise ConfigError(f"mask_count: need 0 <= step < num_steps, got step={step}, num_steps={num_steps}")
    ratio = schedule(torch.tensor((step + 1) / num_steps))
    count = int((num_tokens * ratio).floor().item())
    if num_unknown is not None:
        count = min(num_unknown - 1, count)
    return max(1, count)
