"""The joint training objective of Show-o (spec §8.3)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..prompting.sequences import IGNORE_INDEX


@dataclass
class ShowoLosses:
    t2i: torch.Tensor
    lm: torch.Tensor
    mmu: torch.Tensor

    def total(self, t2i_coeff: float = 1.0, lm_coeff: float = 0.1, mmu_coeff: float = 1.0) -> torch.Tensor:
        return t2i_coeff * self.t2i + lm_coeff * self.lm + mmu_coeff * self.mmu


def showo_losses(logits: torch.Tensor, labels: torch.Tensor, batch_size_t2i: int, batch_size_lm: int,
                 batch_size_mmu: int, text_len: int) -> ShowoLosses:
    """Losses of a batch laid out as [t2i rows, lm rows, mmu rows], over the full vocabulary.

    t2i: masked-token prediction, *unshifted*, on positions >= `text_len` (= max_seq_length + 1: <soi>, the
    image tokens and <eoi>). lm and mmu: next-token prediction (shifted). An empty group gives a zero loss
    (the official code would silently take the whole batch for `-0:`).
    """
    v = logits.shape[-1]

    def ce(lg: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
        if lb.numel() == 0 or not (lb != IGNORE_INDEX).any():
            return lg.sum() * 0.0
        return F.cross_entropy(lg.reshape(-1, v), lb.reshape(-1), ignore_index=IGNORE_INDEX)

    a, b = batch_size_t2i, batch_size_t2i + batch_size_lm
    c = b + batch_size_mmu
    return ShowoLosses(
        t2i=ce(logits[:a, text_len:], labels[:a, text_len:]),
        lm=ce(logits[a:b, :-1], labels[a:b, 1:]),
        mmu=ce(logits[b:c, :-1], labels[b:c, 1:]),
    )
