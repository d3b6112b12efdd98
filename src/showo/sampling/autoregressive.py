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

from ..errors import InputError
from ..fields import is_number
from ..hardware import check_generator
from ..limits import check_callback, check_text_sampling
from ..prompting.masks import causal_mask, pad_after_prefix
from .decode_step import StaticDecodeStep
from .filters import apply_top_k, apply_top_p, require_finite


# on_token(step, ids [B], finished [B]): each new token of every row as it is drawn
TokenCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


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


TOKEN_ARGUMENTS = "step, ids, finished"  # how `on_token` is called

# A shared prefix is prefilled in its own pass, which reads every weight once more: below this many positions
# that costs about what sharing saves (an estimate from the full-depth timings, not measured at this size).
MIN_SHARED_PREFIX = 16


def shared_prefix(seqs: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> tuple[int, list[int]]:
    """`(n, group)`: prompts whose first n positions are the same (ids or embeddings, and mask) form a group whose
    prefix is computed once; `group[i]` numbers prompt i's group. Every prompt shares its first n positions
    with another (several questions about each of several images), no position among them attends past them,
    and every prompt keeps at least one position of its own. `(0, one group per prompt)` when fewer than
    `MIN_SHARED_PREFIX` positions would be shared.

    Near-linear in the number of prompts (comparing every pair took minutes for a few thousand): prompts are
    sorted by their positions' keys, so the longest prefix a prompt shares with any other is the one it shares
    with a neighbour in that order, and a group is a run of neighbours."""
    b, n = len(seqs), min(s.shape[0] for s in seqs) - 1
    alone = (0, list(range(b)))
    if b < 2 or n < MIN_SHARED_PREFIX:
        return alone
    seqs, masks = [s[:n].cpu() for s in seqs], [m.cpu().bool() for m in masks]
    keys = _position_keys(seqs, [m[:n, :n] for m in masks])
    order = sorted(range(b), key=lambda i: keys[i].tolist())
    differ = keys[order[1:]] != keys[order[:-1]]  # [b - 1, n]: neighbours in sorted order
    lcp = torch.where(differ.any(dim=1), differ.int().argmax(dim=1), torch.tensor(n)).tolist()
    for k, (i, j) in zip(lcp, zip(order, order[1:])):  # the keys are hashes: confirm each neighbour's prefix
        if k and not (torch.equal(seqs[i][:k], seqs[j][:k]) and torch.equal(masks[i][:k, :k], masks[j][:k, :k])):
            return alone  # a hash collision: do not share (never seen; it would only cost speed)
    best = [max(([lcp[r - 1]] if r else []) + ([lcp[r]] if r < b - 1 else [])) for r in range(b)]
    n = min(best)
    if n < MIN_SHARED_PREFIX:
        return alone
    # the prefix [0, n) is self-contained when none of its rows reaches a column >= n
    reach = torch.stack([(m[:n] * torch.arange(m.shape[1])).amax(dim=1) for m in masks]).amax(dim=0)
    ok = torch.nonzero(reach.cummax(dim=0).values < torch.arange(1, n + 1))
    n = int(ok[-1]) + 1 if len(ok) else 0
    run = [0]  # a run of sorted neighbours sharing n positions is a group
    for k in lcp:
        run.append(run[-1] + (k < n))
    by_run: dict[int, int] = {}
    group = [0] * b
    for r, i in sorted(zip(run, order), key=lambda t: t[1]):  # numbered in the prompts' order
        group[i] = by_run.setdefault(r, len(by_run))
    return (n, group) if n >= MIN_SHARED_PREFIX and len(by_run) < b else alone


def _position_keys(seqs: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
    """[b, n] int64: a hash of what two prompts must agree on at position p for their first p + 1 positions to
    match: the token (or embedding), row p of the mask up to p, and column p above row p (together, the rows
    and columns up to p are the mask's leading p + 1 square)."""
    b, n = len(seqs), seqs[0].shape[0]
    tokens = torch.stack(seqs)
    if tokens.dim() > 2:  # embeddings: number the distinct vectors
        tokens = torch.unique(tokens.flatten(0, 1), dim=0, return_inverse=True)[1].view(b, n)
    tokens = tokens.long() - tokens.min()
    g = torch.Generator().manual_seed(0)
    # integer weights below 2**20: every sum stays an integer below 2**53, exact in float64 in any order
    w_row, w_col = (torch.randint(1, 2 ** 20, (n,), generator=g, dtype=torch.float64) for _ in range(2))
    upper = torch.ones(n, n, dtype=torch.bool).triu(1)
    keys = torch.stack([m.tril().double() @ w_row + w_col @ (m & upper).double() for m in masks]).long()
    return keys * (int(tokens.max()) + 1) + tokens


def _check_prompts(model: torch.nn.Module, prompts, prompt_embeds) -> list[torch.Tensor]:
    """`generate_text`'s prompts as a list, each checked (one-line InputErrors, not index errors mid-decoding)."""
    if (prompts is None) == (prompt_embeds is None):
        raise InputError("give exactly one of prompts or prompt_embeds")
    name = "prompts" if prompts is not None else "prompt_embeds"
    seqs = prompts if prompts is not None else prompt_embeds
    if not isinstance(seqs, (list, tuple)) or not seqs or not all(isinstance(s, torch.Tensor) for s in seqs):
        raise InputError(f"{name} must be a non-empty list of tensors")
    config = getattr(model, "config", None)
    if prompts is not None:
        vocab = getattr(config, "vocab_size", None)
        for s in seqs:
            if s.dim() != 1 or not s.numel() or s.is_floating_point() or s.is_complex() or s.dtype == torch.bool:
                raise InputError(f"prompts must be non-empty 1-D tensors of token ids, got {s.dtype} {list(s.shape)}")
            if int(s.min()) < 0 or vocab is not None and int(s.max()) >= vocab:
                raise InputError(f"prompt ids must lie in [0, {vocab}), got {int(s.min())}..{int(s.max())}")
    else:
        hidden = getattr(getattr(config, "llm", None), "hidden_size", None)
        for s in seqs:
            if s.dim() != 2 or not s.shape[0] or not s.is_floating_point() or hidden and s.shape[1] != hidden:
                raise InputError(f"prompt_embeds must be non-empty [L, {hidden or 'H'}] float tensors, got "
                                 f"{s.dtype} {list(s.shape)}")
    return list(seqs)


def _check_masks(masks, lengths: list[int]) -> None:
    if not isinstance(masks, (list, tuple)) or len(masks) != len(lengths):
        raise InputError(f"prompt_masks must be a list of one [L, L] mask per prompt ({len(lengths)})")
    for m, n in zip(masks, lengths):
        if not isinstance(m, torch.Tensor) or tuple(m.shape) != (n, n):
            raise InputError(f"each prompt mask must be a [L, L] tensor for its prompt's L, got "
                             f"{list(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__} for L = {n}")
        if m.dtype != torch.bool:  # an additive mask (0 = attend) read as "non-zero may attend" is inverted
            raise InputError(f"prompt masks must be boolean (True = may attend), got {m.dtype}")


def _max_positions(model: torch.nn.Module) -> int | None:
    return getattr(getattr(getattr(model, "config", None), "llm", None), "max_position_embeddings", None)


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
    on_token: TokenCallback | None = None,
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
    check_text_sampling(max_new_tokens, temperature, top_k, top_p)
    check_callback("on_token", on_token, TOKEN_ARGUMENTS)
    check_generator(generator, model.device)
    if eos_id is not None and not is_number(eos_id, integer=True):
        raise InputError(f"eos_id must be a token id or None, got {eos_id!r}")
    if not isinstance(use_cache, bool):
        raise InputError(f"use_cache must be True or False, got {use_cache!r}")
    seqs = _check_prompts(model, prompts, prompt_embeds)
    lengths = [s.shape[0] for s in seqs]
    if prompt_masks is None:
        prompt_masks = [causal_mask(n) for n in lengths]
    _check_masks(prompt_masks, lengths)
    if (limit := _max_positions(model)) is not None and max(lengths) + max_new_tokens > limit:
        raise InputError(f"a prompt of {max(lengths)} positions + max_new_tokens {max_new_tokens} exceeds the "
                         f"model's {limit} positions")
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
            tokens[i, slots[i]] = s.to(device=device, dtype=torch.long)  # int32 ids (numpy, tokenizers) too
        embeds = model.embed(tokens)
    else:
        embeds = torch.zeros(b, length, seqs[0].shape[-1], dtype=model.dtype, device=device)
        for i, s in enumerate(seqs):
            embeds[i, slots[i]] = s.to(device, model.dtype)

    cache = model.new_cache(b, length + max_new_tokens) if use_cache else None
    if cuda_graph is None:
        cuda_graph = compiled or uses_cuda_graph(device, use_cache, max_new_tokens)
    if cuda_graph and not use_cache:
        raise InputError("cuda_graph decodes over the KV cache: it needs use_cache=True")
    if compiled and not cuda_graph:
        raise InputError("compiled compiles the fixed-shape step of cuda_graph: it cannot go with cuda_graph=False")
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
            on_token(step, new.clone(), finished.clone())  # copies: editing them must not change the decoding
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
