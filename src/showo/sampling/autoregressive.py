"""Autoregressive text decoding (understanding, captioning, language modelling) with a KV cache.

Prompts of different lengths are left-padded into one batch; padding is invisible to every row and position
ids skip it, so each row decodes exactly as it would alone. `use_cache=False` re-runs the whole sequence at
every token and grows the mask the way the official `mmu_generate` does (the reference algorithm).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..prompting.masks import pad_left, positions_left_padded
from .filters import apply_top_k, apply_top_p


def next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """One id per row of `logits` [B, V]. temperature 0 = greedy (no random draw); otherwise the official
    recipe: divide by the temperature, keep the top-k (and top-p) logits, softmax, `torch.multinomial`."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        logits = apply_top_k(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = apply_top_p(logits, top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)[:, 0]


def _grow(mask: torch.Tensor) -> torch.Tensor:
    """Official mask growth: old rows do not see the new token; the new row copies the last row plus itself."""
    b, _, q, k = mask.shape
    out = torch.zeros(b, 1, q + 1, k + 1, dtype=torch.bool, device=mask.device)
    out[:, :, :q, :k] = mask
    out[:, :, q, :k] = mask[:, :, -1]
    out[:, :, q, k] = True
    return out


@torch.no_grad()
def generate_text(
    model: torch.nn.Module,
    prompts: Sequence[torch.Tensor] | None = None,
    prompt_masks: Sequence[torch.Tensor] | None = None,
    prompt_embeds: Sequence[torch.Tensor] | None = None,
    max_new_tokens: int = 100,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    on_token: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> list[list[int]]:
    """Continue each prompt; returns the new ids per prompt (ending with `eos_id` when it was produced).

    prompts: 1-D id tensors, or `prompt_embeds`: [L_i, H] embeddings (the CLIP path); one of them.
    prompt_masks: per-prompt boolean [L_i, L_i] omni-attention masks (True = may attend); default causal.
    on_token(step, ids [B], finished [B]) is called after every generated token (for streaming).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if (prompts is None) == (prompt_embeds is None):
        raise ValueError("give exactly one of prompts or prompt_embeds")
    seqs = list(prompts) if prompts is not None else list(prompt_embeds)
    lengths = [s.shape[0] for s in seqs]
    if prompt_masks is None:
        prompt_masks = [torch.ones(n, n, dtype=torch.bool).tril() for n in lengths]
    b, length, device = len(seqs), max(lengths), model.device
    mask = pad_left([m.to(device) for m in prompt_masks])  # [B, 1, L, L]
    positions = positions_left_padded(lengths, length).to(device)
    if prompts is not None:
        tokens = torch.zeros(b, length, dtype=torch.long, device=device)
        for i, s in enumerate(seqs):
            tokens[i, length - lengths[i]:] = s.to(device)
        embeds = model.embed(tokens)
    else:
        embeds = torch.zeros(b, length, seqs[0].shape[-1], dtype=model.dtype, device=device)
        for i, s in enumerate(seqs):
            embeds[i, length - lengths[i]:] = s.to(device, model.dtype)

    visible = torch.zeros(b, length + max_new_tokens, dtype=torch.bool, device=device)
    for i, n in enumerate(lengths):
        visible[i, length - n:length] = True
    visible[:, length:] = True
    cache = model.new_cache(b, length + max_new_tokens) if use_cache else None
    out: list[list[int]] = [[] for _ in range(b)]
    finished = torch.zeros(b, dtype=torch.bool, device=device)
    x, start = embeds, 0
    for step in range(max_new_tokens):
        if cache is not None:
            logits = model(input_embeddings=x, attention_mask=mask, position_ids=positions, cache=cache, start=start,
                           logits_slice=slice(-1, None))
        else:
            logits = model(input_embeddings=x, attention_mask=mask, position_ids=positions, logits_slice=slice(-1, None))
        new = next_token(logits[:, -1], temperature, top_k, top_p, generator)
        for i in range(b):
            if not finished[i]:
                out[i].append(int(new[i]))
        if eos_id is not None:
            finished |= new == eos_id
        if on_token is not None:
            on_token(step, new, finished.clone())
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        new_embed = model.embed(new[:, None])
        new_pos = positions[:, -1:] + 1
        if cache is not None:
            start += x.shape[1]
            x, positions = new_embed, new_pos
            mask = visible[:, None, None, :start + 1]
        else:
            x = torch.cat([x, new_embed], dim=1)
            positions = torch.cat([positions, new_pos], dim=1)
            mask = _grow(mask)
    return out
