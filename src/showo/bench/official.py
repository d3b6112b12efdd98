"""The official inference algorithms, re-created for benchmarking (spec §6.1, §6.5): full recompute of the
whole sequence at every generated token and every image step, float additive masks, logits over every
position and the whole vocabulary, understanding at batch 1. The golden tests check they reproduce the
official tokens, so speed-ups measured against them are against the real algorithm.
"""
from __future__ import annotations

import torch

from ..prompting.masks import to_additive
from ..sampling.maskgit import maskgit_step
from ..sampling.schedules import get_mask_schedule


@torch.no_grad()
def official_mmu_generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                          eot_token: int | None = None) -> list[int]:
    """Greedy `mmu_generate` (top_k=1): batch 1, the full sequence re-run for every token, mask grown by a
    blocked column and a copy of the last row. `attention_mask`: additive float [1, 1, L, L]."""
    ids, mask, out = input_ids, attention_mask[0, 0], []
    blocked = torch.finfo(torch.float32).min
    for _ in range(max_new_tokens):
        logits = model(ids, attention_mask=mask[None, None])
        grown = torch.full((mask.shape[0] + 1, mask.shape[1] + 1), blocked, device=mask.device)
        grown[:-1, :-1] = mask
        grown[-1, :-1] = mask[-1]
        grown[-1, -1] = 0
        mask = grown
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]], device=ids.device)], dim=1)
        if eot_token is not None and nxt == eot_token:
            break
    return out


@torch.no_grad()
def official_t2i_generate(model, input_ids: torch.Tensor, uncond_input_ids: torch.Tensor | None,
                          attention_mask: torch.Tensor, vocab, num_image_tokens: int, timesteps: int,
                          guidance_scale: float, temperature: float = 1.0, generator: torch.Generator | None = None,
                          schedule: str = "cosine") -> torch.Tensor:
    """`t2i_generate`: every step runs the whole padded sequence (cond and uncond concatenated when guided)
    and computes the logits of every position over the whole vocabulary, then slices the image codes."""
    n, mask_id, offset = num_image_tokens, vocab.mask, vocab.image_offset
    schedule_fn = get_mask_schedule(schedule)
    ids = input_ids.clone()
    text_len = ids.shape[1] - n - 2
    additive = to_additive(attention_mask) if attention_mask.dtype == torch.bool else attention_mask
    cur = ids[:, -(n + 1):-1].clone()
    cur = torch.where(cur == mask_id, mask_id, cur - offset)
    guided = uncond_input_ids is not None and guidance_scale > 0
    uncond_prefix = uncond_input_ids[:, : text_len + 1] if guided else None
    sampled = cur
    for step in range(timesteps):
        if guided:
            uncond = torch.cat([uncond_prefix, ids[:, text_len + 1:]], dim=1)
            cond_logits, uncond_logits = model(torch.cat([ids, uncond]), attention_mask=additive).chunk(2)
            logits = (1 + guidance_scale) * cond_logits - guidance_scale * uncond_logits
        else:
            logits = model(ids, attention_mask=additive)
        # every position's logits were computed (above); the image slots are then sampled as the official code
        codebook_logits = logits[:, -(n + 1):-1, offset:mask_id]
        sampled, masking, _, temperature, _ = maskgit_step(codebook_logits, cur, vocab, step, timesteps, temperature,
                                                           schedule_fn, generator)
        ids[:, -(n + 1):-1] = torch.where(masking, mask_id, sampled + offset)
        cur = torch.where(masking, mask_id, sampled)
    return sampled
