"""Lookup-free quantizer (LFQ) of MAGVIT-v2: every latent channel is one bit, the code is the bits MSB first.

A latent vector z [C] maps to z_q = sign(z) with 0 -> -1, and to the code sum_c 2^(C-1-c) * [z_c > 0], so channel 0
is the most significant bit. The codebook (2^C x C, entries +-1) is a persistent buffer, as in the official weights.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


class LFQOutput(NamedTuple):
    """What `LookupFreeQuantizer.forward` returns (the official dict's `z`, `quantizer_loss`, `entropy_loss`, `indices`)."""

    z_q: torch.Tensor  # [B, C, h, w], +-1 values with straight-through gradients to z
    quantizer_loss: torch.Tensor  # scalar, commitment loss x commit_loss_multiplier
    entropy_loss: torch.Tensor  # scalar, (sample entropy - entropy of the mean distribution) x entropy_multiplier
    indices: torch.Tensor  # [B, 1, h, w] int64 codes


def code_bits(codebook_dim: int) -> torch.Tensor:
    """[2^C, C] int64: row i holds the bits of i, most significant first."""
    shifts = torch.arange(codebook_dim - 1, -1, -1, dtype=torch.long)
    return (torch.arange(2 ** codebook_dim, dtype=torch.long)[:, None] >> shifts) & 1


class LookupFreeQuantizer(nn.Module):
    """Sign quantizer with the official MAGVIT-v2 losses (weight-compatible buffers `embedding`, `power_vals`)."""

    def __init__(self, codebook_dim: int, beta: float = 0.25, entropy_multiplier: float = 0.1,
                 commit_loss_multiplier: float = 0.1):
        super().__init__()
        if not 1 <= codebook_dim <= 24:
            raise InputError(f"codebook_dim must be in 1..24, got {codebook_dim}")
        self.codebook_dim = codebook_dim
        self.codebook_size = 2 ** codebook_dim
        self.beta = beta
        self.entropy_multiplier = entropy_multiplier
        self.commit_loss_multiplier = commit_loss_multiplier
        self.register_buffer("embedding", code_bits(codebook_dim).float() * 2 - 1)
        self.register_buffer("power_vals", 2 ** torch.arange(codebook_dim - 1, -1, -1, dtype=torch.long))

    def forward(self, z: torch.Tensor) -> LFQOutput:
        """Quantize z [B, C, h, w]; losses are differentiable (training), z_q uses the straight-through estimator."""
        if z.dim() != 4 or z.shape[1] != self.codebook_dim:
            raise InputError(f"LFQ expects [B, {self.codebook_dim}, h, w], got {tuple(z.shape)}")
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.codebook_dim)  # [N, C]
        hard = torch.where(flat > 0, 1.0, -1.0).to(flat.dtype)
        z_q = flat + (hard - flat).detach()

        # Each channel is a 2-way categorical with logits [-(z-1)^2, -(z+1)^2] (closeness to +1 and to -1).
        logits = torch.stack([-(flat - 1).pow(2), -(flat + 1).pow(2)], dim=-1)  # [N, C, 2]
        log_p = F.log_softmax(logits, dim=-1)
        p = log_p.exp()
        sample_entropy = -(p * log_p).sum(-1).mean()
        mean_p = p.mean(0)  # [C, 2]: the batch-average distribution of each bit
        mean_entropy = -(mean_p * mean_p.clamp_min(torch.finfo(mean_p.dtype).tiny).log()).sum(-1).mean()

        commit = ((z_q.detach() - flat) ** 2).mean() + self.beta * ((z_q - flat.detach()) ** 2).mean()

        z_q = z_q.reshape(z.shape[0], z.shape[2], z.shape[3], self.codebook_dim).permute(0, 3, 1, 2).contiguous()
        return LFQOutput(
            z_q=z_q,
            quantizer_loss=commit * self.commit_loss_multiplier,
            entropy_loss=(sample_entropy - mean_entropy) * self.entropy_multiplier,
            indices=self.get_indices(z_q),
        )

    def get_indices(self, z_q: torch.Tensor) -> torch.Tensor:
        """Codes [B, 1, h, w] of quantized (or raw) latents [B, C, h, w]: bit c = z_c > 0, channel 0 = MSB."""
        bits = (z_q > 0).long()
        return (bits * self.power_vals.view(1, -1, 1, 1)).sum(1, keepdim=True)

    def vectors_to_codes(self, vectors: torch.Tensor) -> torch.Tensor:
        """Codes [...] of channel-last vectors [..., C] (sign of each entry, > 0 -> bit 1)."""
        if vectors.shape[-1] != self.codebook_dim:
            raise InputError(f"expected vectors [..., {self.codebook_dim}], got {tuple(vectors.shape)}")
        return ((vectors > 0).long() * self.power_vals).sum(-1)

    def codes_to_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """Channel-last +-1 vectors [..., C] of integer codes [...] (a codebook lookup)."""
        self.check_codes(codes)
        return self.embedding[codes.long()]

    def check_codes(self, codes: torch.Tensor) -> None:
        """Raise InputError for non-integer codes or codes outside 0..2^C-1 (an index error on GPU is opaque)."""
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise InputError(f"codes must be integers, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise InputError(f"codes must lie in 0..{self.codebook_size - 1}, got {int(codes.min())}..{int(codes.max())}")

    def get_codebook_entry(self, indices: torch.Tensor, shape: tuple[int, int] | None = None) -> torch.Tensor:
        """Latents [B, C, h, w] of raster-order codes [B, h*w]; shape None means a square grid."""
        if indices.dim() != 2:
            raise InputError(f"codes must be [B, h*w], got {tuple(indices.shape)}")
        b, n = indices.shape
        h, w = grid_shape(n, shape)
        return self.codes_to_vectors(indices).view(b, h, w, self.codebook_dim).permute(0, 3, 1, 2).contiguous()


def grid_shape(n: int, shape: tuple[int, int] | None) -> tuple[int, int]:
    """(h, w) of a raster of n codes: `shape` if it fits, else the square root of n."""
    if shape is None:
        side = math.isqrt(n)
        if side * side != n:
            raise InputError(f"{n} codes do not form a square grid; pass shape=(h, w)")
        return side, side
    h, w = (int(s) for s in shape)
    if h <= 0 or w <= 0 or h * w != n:
        raise InputError(f"shape {tuple(shape)} does not hold {n} codes")
    return h, w
