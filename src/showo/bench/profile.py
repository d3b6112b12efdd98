"""Where one workload's time goes, operation by operation: torch.profiler over ours or the official algorithm,
on the benchmark's model (`showo bench --profile mmu t2i`). On a GPU it also counts kernels and their device
time: a profile like this found the decode attention kernel spending 1 ms of a token's 3.7."""
from __future__ import annotations

from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from . import WORKLOADS
from .harness import Bench


def _workloads(bench: Bench, what: str) -> tuple[Callable, Callable]:
    """(ours, official) on the same random prompt. Ours is launched kernel by kernel: a replayed CUDA graph would
    hide which operation each kernel belongs to."""
    cfg = bench.cfg
    if what == "mmu":
        return bench.mmu_fns(cfg.answer_tokens, cuda_graph=False)
    return bench.t2i_fns(1, cfg.image_tokens[0], steps=2, cuda_graph=False)


def profile_workloads(bench: Bench, what: str, official: bool = False, rows: int = 15) -> list[str]:
    """For ours (and with `official` the official algorithm, on the same prompt): a one-line summary (kernel count
    and device time on a GPU) and the table of the costliest operations."""
    if what not in WORKLOADS:
        raise ValueError(f"what must be one of {WORKLOADS}, got {what!r}")
    ours, reference = _workloads(bench, what)
    cuda = bench.device.type == "cuda"
    runs = [("ours, no CUDA graph" if cuda else "ours", ours)] + ([("official", reference)] if official else [])
    return [_profile(bench, fn, f"{what} ({who})", rows) for who, fn in runs]


def _profile(bench: Bench, fn: Callable, head: str, rows: int) -> str:
    cuda = bench.device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(bench.device)) if cuda else (lambda: None)
    fn()  # warm-up: allocations and kernel selection stay out of the profile
    sync()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        fn()
        sync()
    if cuda:
        device = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        head += f": {len(device)} kernels and copies, {sum(e.device_time for e in device) / 1e3:.1f} ms of device time"
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    return head + "\n" + prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)
