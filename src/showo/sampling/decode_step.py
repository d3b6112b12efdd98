"""One decoding step with fixed shapes, replayed as a CUDA graph on a GPU.

At batch 1 a token of cached decoding is a few hundred small kernels, and on a GPU launching them costs more
than running them (Phi-1.5 width on an H200: 12-27 ms a token on five machines; 0.5% of the fp32 matmul peak
measured on the first). Capturing the step once as a CUDA graph and replaying it per token removes the
launches (gpt-fast's remedy); a graph needs every shape and address fixed, so the step attends over the whole
preallocated cache, masks the positions not yet written, and reads its inputs from buffers the caller fills.
With `compiled` the step is also run through torch.compile, which fuses its small kernels into fewer (what
gpt-fast adds on top of the graph); the graph then replays the compiled kernels.
"""
from __future__ import annotations

import functools
import warnings

import torch
import torch._dynamo.exc

from ..errors import InputError
from ..backbone import KVCache
from .graphs import capture


def _step(model: torch.nn.Module, ids: torch.Tensor, visible: torch.Tensor, columns: torch.Tensor,
          positions: torch.Tensor, cache: KVCache, start: torch.Tensor) -> torch.Tensor:
    """The step itself: logits [B, V] of `ids` [B, 1] attending to the cache positions `visible` up to `start`."""
    mask = visible & (columns <= start)
    return model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, start=start)[:, -1]


@functools.cache
def _compiled_step():
    """`_step` under torch.compile, made once per process and reused by every later call. A call compiles again
    (seconds) for each new model size or dtype, and once for a second cache length or batch size (those sizes then
    stay symbolic); torch.compile keeps a limited number of such variants (8 by default)."""
    return torch.compile(_step, fullgraph=True)


# Raised by a compiled function once its variants are used up (where this torch defines it; otherwise nothing is
# caught: which torch versions raise it, and what older ones do instead, was not checked).
RECOMPILE_LIMIT_HIT = getattr(torch._dynamo.exc, "FailOnRecompileLimitHit", ())


class StaticDecodeStep:
    """`step(ids [B], positions [B, 1], start)` -> float32 logits [B, V] of one new token per row; its keys and
    values are written into `cache` at position `start`. `visible` [B, max_len] says which cache positions new
    tokens may see (positions after `start` are masked on top). Attention runs over the whole cache, so logits
    equal the growing cache's up to float rounding.

    With `graph` the first call warms up and captures a CUDA graph (a new one per step object: one per
    `generate_text` call) and every call replays it; the returned logits are then overwritten by the next
    call. With `compiled` the step runs under torch.compile (`_compiled_step`: when it compiles, and what
    happens past its limit of variants)."""

    def __init__(self, model: torch.nn.Module, cache: KVCache, visible: torch.Tensor, graph: bool,
                 compiled: bool = False):
        if graph and visible.device.type != "cuda":
            raise InputError(f"CUDA graphs need a CUDA device, the model is on {visible.device}")
        device, b = visible.device, visible.shape[0]
        self.model, self.cache, self.use_graph = model, cache, graph
        self._run = _compiled_step() if compiled else _step
        self.visible = visible[:, None, None, :cache.max_len]
        self.columns = torch.arange(cache.max_len, device=device)
        self.ids = torch.zeros(b, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(b, 1, dtype=torch.long, device=device)
        self.start = torch.zeros((), dtype=torch.long, device=device)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._logits: torch.Tensor | None = None

    def _forward(self) -> torch.Tensor:
        args = (self.model, self.ids, self.visible, self.columns, self.positions, self.cache, self.start)
        try:
            return self._run(*args)
        except RECOMPILE_LIMIT_HIT:  # met on the first (warm-up) run, before any capture: decode uncompiled
            warnings.warn("torch.compile's limit of compiled variants is used up in this process (too many model "
                          "sizes or dtypes): decoding without compile", RuntimeWarning, stacklevel=2)
            self._run = _step
            return self._run(*args)

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, start: int) -> torch.Tensor:
        if not 0 <= start < self.cache.max_len:  # the device-side write is not bounds-checked
            raise InputError(f"KV cache overflow: position {start} outside capacity {self.cache.max_len}")
        self.ids.copy_(ids.view(-1, 1))
        self.positions.copy_(positions)
        self.start.fill_(start)
        if not self.use_graph:
            return self._forward()
        if self._graph is None:
            self._capture()
        self._graph.replay()
        return self._logits

    def _capture(self) -> None:
        """Every run writes the same keys and values at `start` as the call that triggers it, so the warm-up run
        of `capture` changes nothing."""
        self._graph, self._logits = capture(self._forward, self.ids.device)
