"""Masked-token modelling of image tokens for t2i training (the official `mask_or_random_replace_tokens`).

Per image: t ~ U(0, 1), mask ratio p = schedule(t) (clipped below at `min_masking_rate`), then
k = max(1, round(N * p)) positions chosen uniformly at random are replaced by the mask token; only those
positions are supervised. The random draws are the official ones, in the official order
(`rand(B)` then `rand(B, N)`), so a seeded global RNG or generator reproduces the official batches.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from ..prompting.sequences import IGNORE_INDEX  # label of positions that do not contribute to the loss

if TYPE_CHECKING:
    from ..prompting.interleaved import InterleavedRow


def mask_image_tokens(image_ids: torch.Tensor, mask_id: int, schedule: Callable[[torch.Tensor], torch.Tensor],
                      min_masking_rate: float = 0.0, generator: torch.Generator | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask a random subset of each row of `image_ids` [B, N] (token ids, image offset included).

    Returns (input_ids, labels, mask_prob): input_ids has `mask_id` at the masked positions, labels holds the
    original id there and IGNORE_INDEX elsewhere, mask_prob [B] is the sampled masking ratio per row.
    With generator=None the global RNG is used, exactly as the official training script does.
    """
    batch, n = image_ids.shape
    device = image_ids.device
    timesteps = torch.rand(batch, device=device, generator=generator)
    mask_prob = schedule(timesteps).clip(min_masking_rate)
    num_masked = (n * mask_prob).round().clamp(min=1)
    # The argsort of i.i.d. uniforms is a random permutation; its entries < k mark a random k-subset.
    ranks = torch.rand(batch, n, device=device, generator=generator).argsort(dim=-1)
    mask = ranks < num_masked.unsqueeze(-1)
    input_ids = torch.where(mask, torch.tensor(mask_id, device=device), image_ids)
    labels = torch.where(mask, image_ids, IGNORE_INDEX)
    return input_ids, labels, mask_prob


def mask_interleaved_images(row: "InterleavedRow", mask_id: int, schedule: Callable[[torch.Tensor], torch.Tensor],
                            num_image_tokens: int, min_masking_rate: float = 0.0,
                            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked-token corruption of every image of a row (each with its own ratio, `mask_image_tokens`).

    Returns (input ids [L] with mask ids on the corrupted codes, image labels [L]: the original id where a
    code was masked, IGNORE_INDEX elsewhere; the image loss is unshifted: `cross_entropy(logits, labels)`).
    """
    ids = row.ids.clone()
    labels = torch.full_like(ids, IGNORE_INDEX)
    count = int(row.is_image.sum())
    if count:
        if count % num_image_tokens:
            raise ValueError(f"{count} image positions are not a whole number of {num_image_tokens}-token images")
        images = ids[row.is_image].view(-1, num_image_tokens)
        masked, image_labels, _ = mask_image_tokens(images, mask_id, schedule, min_masking_rate, generator)
        ids[row.is_image] = masked.flatten()
        labels[row.is_image] = image_labels.flatten()
    return ids, labels
