"""Inference-only linear layers whose float32 weights are laid out once, up front, for oneDNN (CPU).

Why: `nn.Linear` in float32 on CPU goes to MKL's GEMM, which is tuned for one row or for many. Batched decoding
multiplies 2-16 rows at a time, and there the product costs about 3x the one-row cost although it reads the same
weights (measured on this project's 2-core machine: 9.0 ms for 8 rows against 3.0 ms for one, 2048 -> 8192).
oneDNN with the weight reordered ahead of time runs the 8 rows in 4.7 ms and the one row in 3.2-3.5 ms. End
to end at Phi-1.5's full depth, 8 answers in one batch took 1.36-1.47x less time; single answers gained nothing
(0.76-1.01x over three runs; docs/benchmarks). torch exposes this only through private ops
(`torch.ops.mkldnn._reorder_linear_weight` / `_linear_pointwise`), so `packing_available` checks them before use
and the dense `nn.Linear` stays the default. Results differ from MKL's in the last bits (different summation
order, ~1e-6 relative), which is why packing is opt-in and the golden tests run unpacked.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError


@lru_cache(maxsize=1)
def packing_available() -> bool:
    """True when this torch build can pre-pack float32 linear weights for oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        w = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), 1)
        y = torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), w, None, "none", [], "")
    except (AttributeError, RuntimeError):
        return False
    return bool(torch.equal(y, torch.full((1, 2), 2.0)))


# A layout chosen for a few rows is slow on thousands (a batched prefill): 2344 rows x 2048 -> 8192 took 268 ms
# in one product against 212 ms for MKL's dense GEMM, and 228 ms in products of at most 512 rows (chunks of
# 256: 241 ms, of 64: 257 ms). Rows are independent: the chunked products agree with the whole one.
PREFILL_CHUNK = 512


class PackedLinear(nn.Module):
    """`nn.Linear` for float32 CPU inference with the weight in oneDNN's blocked layout (no dense copy kept).

    `row_groups`: slices of output rows packed as separate blocks, so `forward(x, rows=group)` computes only that
    group (the image codebook of the LM head during image generation). The groups must cover every row, in order.
    The packed weights are not parameters: the layer cannot be trained, cast, moved or saved.
    """

    def __init__(self, linear: nn.Linear, batch_hint: int = 8, row_groups: Sequence[slice] = ()):
        super().__init__()
        w, b = linear.weight.detach(), linear.bias
        if w.dtype != torch.float32 or w.device.type != "cpu":
            raise ConfigError(f"packed weights need float32 on the CPU, got {w.dtype} on {w.device}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        groups = list(row_groups) or [slice(0, self.out_features)]
        ends = [0] + [g.stop for g in groups]
        if [g.start for g in groups] != ends[:-1] or ends[-1] != self.out_features:
            raise ValueError(f"row groups must cover rows 0..{self.out_features} in order, got {groups}")
        self.groups = [(g, torch.ops.mkldnn._reorder_linear_weight(w[g], batch_hint),  # rows: contiguous
                        None if b is None else b.detach()[g].contiguous()) for g in groups]

    def forward(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        if x.dtype != torch.float32:
            raise ConfigError(f"packed weights are float32; got {x.dtype} activations (pack after choosing the dtype)")
        flat = x.reshape(-1, self.in_features)
        parts = [(g, w, b) for g, w, b in self.groups if rows is None or g == rows]
        if not parts:
            raise ValueError(f"rows {rows} is not one of this layer's packed row groups "
                             f"{[g for g, _, _ in self.groups]}")
        out = [self._product(flat, w, b) for _, w, b in parts]
        y = out[0] if len(out) == 1 else torch.cat(out, dim=-1)
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def _product(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if x.shape[0] <= PREFILL_CHUNK:
            return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
        return torch.cat([torch.ops.mkldnn._linear_pointwise(c, w, b, "none", [], "")
                          for c in x.split(PREFILL_CHUNK)])

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        raise ConfigError("packed weights are for inference only and cannot be saved: save the model before "
                          "packing it")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, groups={len(self.groups)}"


def pack_linears(module: nn.Module, batch_hint: int = 8, row_groups: dict[str, Sequence[slice]] | None = None) -> int:
    """Replace every `nn.Linear` under `module` by a `PackedLinear` (in place); returns how many were packed.
    `row_groups` maps qualified names (e.g. `showo.lm_head`) to that layer's row groups."""
    if not packing_available():
        raise ConfigError("this torch build cannot pack weights for oneDNN (torch.backends.mkldnn is unavailable)")
    row_groups = row_groups or {}
    # names, not modules: holding the dense layers until the end would keep every dense weight alive (peak
    # memory twice the weights); replaced one by one, each is freed as soon as its packed copy exists
    names = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, PackedLinear(getattr(parent, child), batch_hint, row_groups.get(name, ())))
    return len(names)
