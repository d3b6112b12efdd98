"""Capturing a fixed-shape model call once as a CUDA graph and replaying it.

At small batches a forward pass on a GPU is hundreds of small kernels, and launching them from Python can cost
as much as running them (the GPU then waits for the host). A CUDA graph records the kernels of one call and
replays them with one launch (gpt-fast's remedy). A graph fixes every shape and address, so the call must read
its inputs from buffers that the caller refills before each replay, and its output is overwritten by the next.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import InputError

WARMUP_RUNS = 1  # runs on the capture stream first (lazy initialisations, e.g. of cuBLAS, must not be captured)


def capture(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Warm `fn` up and capture it on a side stream of `device`; returns the graph and the tensor its replays
    write. `fn` runs `WARMUP_RUNS` times first, so it must be safe to repeat (each run writing what the captured
    one writes). Captured with `capture_begin` rather than `torch.cuda.graph`, which empties the allocator's
    caches before every capture (once per generation here)."""
    with torch.cuda.device(device):  # the capture stream must be on the model's GPU
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                fn()
            side.synchronize()
            graph = torch.cuda.CUDAGraph()
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                out = fn()
            finally:
                graph.capture_end()
        torch.cuda.current_stream().wait_stream(side)
    return graph, out


class StaticCall:
    """`fn(buffer)` where `buffer` is one fixed tensor shaped like `example`: each call copies its argument into
    the buffer and runs `fn` on it. With `graph` (a CUDA device) the first call captures `fn` (`capture`) and
    every call replays it; the returned tensor is then overwritten by the next call. Without, it runs `fn`
    directly: the same path, checkable off a GPU."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, graph: bool):
        if graph and example.device.type != "cuda":
            raise InputError(f"CUDA graphs need a CUDA device, the model is on {example.device}")
        self.fn, self.use_graph = fn, graph
        self.buffer = torch.empty_like(example)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._out: torch.Tensor | None = None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.buffer.copy_(x)
        if not self.use_graph:
            return self.fn(self.buffer)
        if self._graph is None:
            self._graph, self._out = capture(lambda: self.fn(self.buffer), self.buffer.device)
        self._graph.replay()
        return self._out
