"""A preallocated key/value cache (gpt-fast style): one buffer per layer, written at explicit positions.

Writing at explicit positions (rather than appending) is what lets image generation compute the text prompt
once and then rewrite the image slots in place at every denoising step.
"""
from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer for positions `[0, max_len)` of a batch."""

    def __init__(self, num_layers: int, batch: int, num_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        # Separate tensors per layer, not one [layers, ...] buffer: torch.compile turns an in-place write into a
        # view of a bigger input into copies of that whole input (measured on the compiled decode step: every
        # layer's cache copied at every token), and a write into a whole tensor stays one write.
        shape = (batch, num_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.max_len = max_len

    def update(self, layer: int, start: int | torch.Tensor, k: torch.Tensor,
               v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store `k, v` ([B, H, q, D]) at positions `[start, start+q)`; return keys/values of `[0, start+q)`.

        A tensor `start` (a 0-d device index) keeps every shape fixed, as a CUDA graph needs: the write goes
        through `index_copy_` and the whole buffer `[0, max_len)` comes back (the caller masks what is not
        yet written). It is not bounds-checked, which would read the index back to the host."""
        if isinstance(start, torch.Tensor):
            index = start + torch.arange(k.shape[2], device=start.device)
            self.k[layer].index_copy_(2, index, k)
            self.v[layer].index_copy_(2, index, v)
            return self.k[layer], self.v[layer]
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: position {end} > capacity {self.max_len}")
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def copy_prefix(self, other: "KVCache", length: int, source_rows: torch.Tensor) -> None:
        """Fill positions `[0, length)` of row i with those of `other`'s row `source_rows[i]` (prompt prefixes
        computed once for several rows)."""
        for mine, theirs in zip(self.k + self.v, other.k + other.v):
            mine[:, :, :length] = theirs[source_rows, :, :length]
