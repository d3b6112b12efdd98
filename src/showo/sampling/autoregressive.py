"""Autoregressive text decoding (understanding, captioning, language modelling) with a KV cache.

Prompts of different lengths are left-padded into one batch; padding is invisible to every row and position
ids skip it, so each row decodes as it would alone. A prefix that prompts share (the image of several questions
about one image) is computed once per group of prompts and its keys and values copied to their rows; the
padding then sits between that prefix and each row's own tokens. `use_cache=False` re-runs the whole sequence at
every token and grows the mask the way the official `mmu_generate` does (the reference algorithm).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..prompting.masks import pad_after_prefix
from .decode_step import StaticDecodeStep
from .filters import apply_top_k, apply_top_p, require_finite


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


# Warming up and capturing the decode step's CUDA graph costs about 2.4 tokens of kernel-by-kernel decoding, and
# the graph pays from 4-6 tokens on (Phi-1.5 at full depth on an H200: answers of 2 / 4 / 6 tokens took
# 94 / 104 / 101 ms with the graph, 60 / 81 / 129 ms without; docs/benchmarks/h200-mmu.json), so by default it is
# used only for answers allowed this many tokens.
GRAPH_MIN_NEW_TOKENS = 5


def long_enough_for_static_step(use_cache: bool, max_new_tokens: int) -> bool:
    """Whether an answer pays for setting up the fixed-shape decode step (a graph's capture, a compile's variant)."""
    return use_cache and max_new_tokens >= GRAPH_MIN_NEW_TOKENS


def uses_cuda_graph(device: torch.device, use_cache: bool, max_new_tokens: int) -> bool:
    """`generate_text`'s default for `cuda_graph`."""
    return device.type == "cuda" and long_enough_for_static_step(use_cache, max_new_tokens)

# A shared prefix is prefilled in its own pass, which reads every weight once more: below this many positions
# that costs about what sharing saves (an estimate from the full-depth timings, not measured at this size).
MIN_SHARED_PREFIX = 16


def shared_prefix(seqs: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> tuple[int, list[int]]:
    """`(n, group)`: prompts whose first n positions are the same (ids or embeddings, and mask) form a group whose
    prefix is computed once; `group[i]` numbers prompt i's group. Every prompt shares its first n positions
    with another (several questions about each of several images), no position among them attends past them,
    and every prompt keeps at least one position of its own. `(0, one group per prompt)` when fewer than
    `MIN_SHARED_PREFIX` positions would be shared."""
    b, n = len(seqs), min(s.shape[0] for s in seqs) - 1
    alone = (0, list(range(b)))
    if b < 2 or n < MIN_SHARED_PREFIX:
        return alone
    seqs, masks = [s.cpu() for s in seqs], [m.cpu().bool() for m in masks]
    common = torch.zeros(b, b, dtype=torch.long)  # how many leading positions two prompts share
    for i in range(b):
        for j in range(i + 1, b):
            same = seqs[i][:n] == seqs[j][:n]
            differ = torch.nonzero(~(same.all(dim=-1) if same.dim() > 1 else same))
            k = int(differ[0]) if len(differ) else n
            bad = torch.nonzero(masks[i][:k, :k] != masks[j][:k, :k])  # a difference at (row, col) rules out k > both
            common[i, j] = common[j, i] = min(k, int(bad.max(dim=1).values.min())) if len(bad) else k
    n = int(common.max(dim=1).values.min())
    if n < MIN_SHARED_PREFIX:
        return alone
    # the prefix [0, n) is self-contained when none of its rows reaches a column >= n
    reach = torch.stack([(m[:n] * torch.arange(m.shape[1])).amax(dim=1) for m in masks]).amax(dim=0)
    ok = torch.nonzero(reach.cummax(dim=0).values < torch.arange(1, n + 1))
    n = int(ok[-1]) + 1 if len(ok) else 0
    group: list[int] = []
    for i in range(b):  # sharing n positions is an equivalence: join the first earlier prompt that does
        group.append(next((group[j] for j in range(i) if common[i, j] >= n), max(group, default=-1) + 1))
    return (n, group) if n >= MIN_SHARED_PREFIX and max(group) + 1 < b else alone


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
    cuda_graph: bool | None = None,
    compiled: bool = False,
) -> list[list[int]]:
    """Continue each prompt; returns the new ids per prompt (ending with `eos_id` when it was produced).

    prompts: 1-D id tensors, or `prompt_embeds`: [L_i, H] embeddings (the CLIP path); one of them.
    prompt_masks: per-prompt boolean [L_i, L_i] omni-attention masks (True = may attend); default causal.
    on_token(step, ids [B], finished [B]) is called after every generated token (for streaming).
    cuda_graph: decode each token after the first by replaying one CUDA graph over the whole cache
    (`StaticDecodeStep`, captured anew in every call); None = when the model is on a GPU, `use_cache` is on and
    `max_new_tokens` is at least `GRAPH_MIN_NEW_TOKENS`. Attention then spans the whole cache, so tokens equal
    the kernel-by-kernel path's up to float rounding (a near tie can go the other way, likelier in bf16). On
    the CPU, True runs the same fixed-shape step without a graph (slower; it exists so that path can be checked
    off a GPU).
    compiled: run that fixed-shape step under torch.compile (it implies `cuda_graph` when that is None). The first
    call in a process compiles it, and so does the first call with a new model size or dtype (seconds to tens
    of seconds each); past torch.compile's limit of variants it warns and decodes uncompiled. On an H200 at
    full size (fp32, 100 tokens) it decoded 1.34-1.44x faster than the plain graph, 11.7x the official algorithm,
    after 34-36 s of compiling and first answer; on the CPU it gains about 1.1x (the matrix products, which it
    leaves alone, dominate). Off by default because of that first wait (`ShowoPipeline.compile_decoding`).
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
    shared, group = shared_prefix(seqs, prompt_masks) if use_cache else (0, list(range(b)))
    # row i: the shared prefix, then length - n_i pads, then the rest of prompt i (left padding when shared = 0)
    mask, positions, slots = pad_after_prefix([m.to(device) for m in prompt_masks], shared)
    visible = torch.ones(b, length + max_new_tokens, dtype=torch.bool, device=device)  # what new tokens see
    visible[:, :length] = False
    for i, slot in enumerate(slots):
        visible[i, slot] = True
    if prompts is not None:
        tokens = torch.zeros(b, length, dtype=torch.long, device=device)
        for i, s in enumerate(seqs):
            tokens[i, slots[i]] = s.to(device)
        embeds = model.embed(tokens)
    else:
        embeds = torch.zeros(b, length, seqs[0].shape[-1], dtype=model.dtype, device=device)
        for i, s in enumerate(seqs):
            embeds[i, slots[i]] = s.to(device, model.dtype)

    cache = model.new_cache(b, length + max_new_tokens) if use_cache else None
    if cuda_graph is None:
        cuda_graph = compiled or uses_cuda_graph(device, use_cache, max_new_tokens)
    if cuda_graph and not use_cache:
        raise ValueError("cuda_graph decodes over the KV cache: it needs use_cache=True")
    if compiled and not cuda_graph:
        raise ValueError("compiled compiles the fixed-shape step of cuda_graph: it cannot go with cuda_graph=False")
    static = (StaticDecodeStep(model, cache, visible, graph=device.type == "cuda", compiled=compiled)
              if cuda_graph else None)
    x, start = embeds, 0
    if shared:  # one row per group: its first prompt
        first = torch.tensor([group.index(g) for g in range(max(group) + 1)], device=device)
        prefix = model.new_cache(len(first), shared)
        model(input_embeddings=x[first, :shared], attention_mask=mask[first, :, :shared, :shared],
              position_ids=positions[first, :shared], cache=prefix, start=0, logits_slice=slice(-1, None))
        cache.copy_prefix(prefix, shared, torch.tensor(group, device=device))
        x, mask, positions, start = x[:, shared:], mask[:, :, shared:], positions[:, shared:], shared
    out: list[list[int]] = [[] for _ in range(b)]
    finished = torch.zeros(b, dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        if static is not None and step > 0:
            logits = static(x, positions, start)[:, None]
        elif cache is not None:
            logits = model(input_embeddings=x, attention_mask=mask, position_ids=positions, cache=cache, start=start,
                           logits_slice=slice(-1, None))
        else:
            logits = model(input_embeddings=x, attention_mask=mask, position_ids=positions, logits_slice=slice(-1, None))
        if step == 0:
            require_finite(logits[:, -1])
        new = next_token(logits[:, -1], temperature, top_k, top_p, generator)
        for i, (token, done) in enumerate(zip(new.tolist(), finished.tolist())):
            if not done:
                out[i].append(token)
        if eos_id is not None:
            finished |= new == eos_id
        if on_token is not None:
            on_token(step, new, finished.clone())
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        new_pos = positions[:, -1:] + 1
        if cache is not None:
            start += x.shape[1]
            x = new[:, None] if static is not None else model.embed(new[:, None])  # the static step embeds ids
            positions, mask = new_pos, visible[:, None, None, :start + 1]
        else:
            x = torch.cat([x, model.embed(new[:, None])], dim=1)
            positions = torch.cat([positions, new_pos], dim=1)
            mask = _grow(mask)
    return out
