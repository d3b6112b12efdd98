"""Timing side by side: run variants alternately after a warm-up, keep the best time of each, and compare their
outputs before a ratio means anything (machines are noisy: only ratios from one run are compared)."""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch


@dataclass
class Comparison:
    name: str
    ours_s: float
    reference_s: float
    agree: bool
    detail: dict = field(default_factory=dict)
    outputs: tuple = field(default=(), repr=False)  # the last (ours, reference) outputs; not serialised

    @property
    def ratio(self) -> float:
        return self.reference_s / self.ours_s if self.ours_s > 0 else float("inf")


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall time of `fn()` and its output; CUDA work queued by `fn` is waited for (kernels run asynchronously)."""
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def alternate(variants: dict[str, Callable], repeats: int,
              warmup: Sequence[Callable] = ()) -> dict[str, tuple[float, list]]:
    """Run the `warmup` callables (short versions of the variants: a whole run takes minutes at full depth;
    none where an earlier comparison ran the same code paths), then every variant in turn, `repeats` times;
    name -> (best time, the least disturbed by other load; the output of every repeat)."""
    for fn in warmup:
        fn()
    runs: dict[str, list[tuple[float, object]]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            runs[name].append(timed(fn))
    return {name: (min(t for t, _ in r), [out for _, out in r]) for name, r in runs.items()}


def side_by_side(name: str, ours: Callable, reference: Callable, repeats: int, same=lambda a, b: a == b,
                 detail: dict | None = None, warmup: Sequence[Callable] = ()) -> Comparison:
    """`alternate` ours and the reference; they agree when `same(ours output, reference output)`."""
    r = alternate({"ours": ours, "reference": reference}, repeats, warmup)
    (t_ours, outs_a), (t_ref, outs_b) = r["ours"], r["reference"]
    agree = all(bool(same(a, b)) for a, b in zip(outs_a, outs_b))
    return Comparison(name, t_ours, t_ref, agree, detail or {}, (outs_a[-1], outs_b[-1]))


def peak_rss_bytes() -> int:
    """Peak resident memory of this process image so far. Linux's VmHWM, because `ru_maxrss` survives
    fork + exec and would report the parent's peak in a fresh benchmark process."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux, bytes on macOS


def as_dict(c: Comparison) -> dict:
    return {"name": c.name, "ours_s": c.ours_s, "reference_s": c.reference_s, "agree": c.agree, "detail": c.detail,
            "ratio": c.ratio if c.agree else None}
