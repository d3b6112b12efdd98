"""Noise and logit filters used by the samplers.

The first group reproduces the official `models/sampling.py` helpers bit for bit, including the random draws
(one `uniform_` of the input's shape and dtype on the given generator), so seeded generators give the official
masks and samples. `apply_top_k` / `apply_top_p` are the clean helpers the autoregressive decoder uses.
"""
from __future__ import annotations

import math

import torch

from ..errors import InputError, NonFiniteScores
from ..fields import is_number

_EPS = 1e-20


def require_finite(scores: torch.Tensor) -> None:
    """Refuse NaN or infinite scores (damaged weights, a dtype that overflows): sampling would fail on them with
    torch's own error and greedy decoding would pick garbage. The samplers call it on their first scores only."""
    if not bool(torch.isfinite(scores).all()):
        raise NonFiniteScores()


def log(t: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """log(t) with t clamped below at `eps` (so log(0) is finite, ~-46.05)."""
    return torch.log(t.clamp(min=eps))


def gumbel_noise(t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise shaped like `t`: -log(-log(u)), u ~ U(0, 1) drawn with one
    `uniform_(0, 1, generator)` on a tensor like `t` (both logs clamped at 1e-20)."""
    u = torch.zeros_like(t).uniform_(0, 1, generator=generator)
    return -log(-log(u))


def gumbel_sample(t: torch.Tensor, temperature: float = 1.0, dim: int = -1,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample indices along `dim` via the Gumbel-max trick on logits `t / max(temperature, 1e-10)`."""
    return ((t / max(temperature, 1e-10)) + gumbel_noise(t, generator=generator)).argmax(dim=dim)


def top_k(logits: torch.Tensor, thres: float = 0.9) -> torch.Tensor:
    """Keep the `ceil((1 - thres) * V)` largest logits of the last dim, -inf elsewhere (official variant;
    k is computed in Python floats exactly as there, e.g. thres=0.9, V=40 keeps 4)."""
    k = math.ceil((1 - thres) * logits.shape[-1])
    values, indices = logits.topk(k, dim=-1)
    return torch.full_like(logits, float("-inf")).scatter(-1, indices, values)


def top_k_top_p_filtering(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0,
                          filter_value: float = -float("inf"), min_tokens_to_keep: int = 1) -> torch.Tensor:
    """The official (HF-style) top-k then nucleus filter over the last dim; returns a new tensor.

    Faithful quirks: top-k keeps ties with the k-th value; top-p removes a sorted token when the cumulative
    probability *before* it exceeds `top_p` (strictly); with `min_tokens_to_keep > 1` at least
    `min_tokens_to_keep + 1` tokens survive the top-p step (the official off-by-one).
    """
    logits = logits.clone()  # the official function writes into its argument; we do not
    if top_k > 0:
        k = min(max(top_k, min_tokens_to_keep), logits.size(-1))
        kth = torch.topk(logits, k)[0][..., -1, None]
        logits[logits < kth] = filter_value
    if top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(logits, descending=True)
        cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cumulative > top_p
        if min_tokens_to_keep > 1:
            remove[..., :min_tokens_to_keep] = False
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        logits[remove.scatter(-1, sorted_indices, remove)] = filter_value
    return logits


def mask_by_random_topk(mask_len: torch.Tensor | int, probs: torch.Tensor, temperature: float | torch.Tensor = 1.0,
                        generator: torch.Generator | None = None, keep: torch.Tensor | None = None) -> torch.Tensor:
    """MaskGIT re-masking: True for the `mask_len` least confident positions of each row of `probs` [B, N].

    confidence = log(probs) + temperature * gumbel noise (one `uniform_` draw of probs' shape, even when
    temperature is 0); a position is masked when its confidence is below the row's `mask_len`-th smallest
    (0-based), so exactly `mask_len[b]` positions are masked when confidences are distinct.
    mask_len: [B, 1] (any numeric dtype) or an int; values must lie in [0, N - 1].
    keep: [B, N] positions never masked, whatever the noise (MaskGIT's known tokens: the official code gives them
    the largest float as probability, which Gumbel noise at a high temperature can outweigh).
    """
    confidence = log(probs) + temperature * gumbel_noise(probs, generator=generator)
    if keep is not None:
        confidence = confidence.masked_fill(keep, float("inf"))
    if not torch.is_tensor(mask_len):
        mask_len = torch.full((probs.shape[0], 1), int(mask_len), device=probs.device)
    cut = torch.sort(confidence, dim=-1).values.gather(1, mask_len.long())
    return confidence < cut


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the k-th largest of its row (last dim) to -inf; ties with the k-th value stay.

    Works on [..., V]; k >= V is a no-op. Same rule as the official `mmu_generate` top-k.
    """
    if not is_number(k, integer=True) or k < 1:
        raise InputError(f"top_k must be a positive integer, got {k!r}")
    if k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter over the last dim: keep the most probable tokens of each row up to and including the
    first one at which the cumulative probability reaches `p` (so the kept mass is >= p and at least one
    token survives); the rest become -inf. p = 1 is a no-op."""
    if not is_number(p) or not 0 < p <= 1:
        raise InputError(f"top_p must be in (0, 1], got {p!r}")
    if p >= 1:
        return logits.clone()
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
    # A token goes when the tokens ranked before it already hold mass >= p; the first one always stays.
    remove = torch.zeros_like(cumulative, dtype=torch.bool)
    remove[..., 1:] = cumulative[..., :-1] >= p
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
