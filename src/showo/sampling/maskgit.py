"""MaskGIT parallel decoding of image tokens ("discrete diffusion"), as the official `t2i_generate` does it.

Every step predicts all masked slots, samples them, then re-masks the least confident ones so that the
number of masked slots follows the mask schedule. The random draws (one multinomial over all slots, then
one uniform per slot for the Gumbel noise) are made in the official order, so a seeded `torch.Generator`
reproduces the official image tokens.

Fast path (`reuse_prefix=True`, the default): the text prompt never attends to image tokens, so its keys and
values are computed once per generation and cached; each step only runs `<soi>`, the image slots and `<eoi>`.
The result equals the full recompute (`reuse_prefix=False`, the official algorithm) up to float rounding;
the golden tests check both give the official tokens. That per-step forward has fixed shapes, so on a GPU it can
be captured once as a CUDA graph and replayed at every step (`cuda_graph`; by default where launching a step's
kernels costs more than running them): the same kernels, launched once.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from ..errors import InputError
from ..fields import is_number
from ..hardware import check_generator
from ..limits import check_callback, check_scale, check_steps
from ..prompting.masks import t2i_mask
from ..prompting.vocab import Vocabulary
from .filters import mask_by_random_topk, require_finite
from .graphs import StaticCall
from .schedules import get_mask_schedule

# Capturing the image step's CUDA graph costs about one more step (a warm-up run, then the capture), and a replay
# saves only the host's time to launch the step's kernels, so the graph pays when the GPU runs a step faster than
# the host launches it. Measured on an H100 (16 guided steps, 256 image tokens; docs/benchmarks):
# - fp32, the embedded model (15M parameters, 2 x 66 positions a step): 2.6x faster with the graph (0.079 against
#   0.204 s, decoding included);
# - fp32 at Phi-1.5 size (1.45B parameters), batch 1: 0.94x, the GPU's matrix products taking most of each 53 ms
#   step; it lost at each step count measured (1, 2, 3, 4, 6, 8 and 16);
# - bf16 at Phi-1.5 size: 2.89x at batch 1 (0.174 against 0.503 s), 1.20x at batch 4 (0.390 against 0.469 s).
# Hence the default: at least GRAPH_MIN_STEPS steps; in bf16 or fp16 always, in fp32 when a step's work
# (positions x parameters) is under GRAPH_MAX_STEP_WORK, set between the two fp32 points (2e9 and 7.5e11) at about
# a quarter of the Phi-1.5 step. The fp32 crossover is an estimate, not measured.
GRAPH_MIN_STEPS = 4
GRAPH_MAX_STEP_WORK = 2e11


def step_work(model: torch.nn.Module, rows: int, positions: int) -> float:
    """A step's work as the graph's default weighs it: `rows` sequences of `positions` image-block positions times
    the model's parameter count (about the multiply-adds of its weight products)."""
    return rows * positions * sum(p.numel() for p in model.parameters())


def uses_image_graph(model: torch.nn.Module, rows: int, positions: int, reuse_prefix: bool,
                     num_inference_steps: int) -> bool:
    """`maskgit_generate`'s default for `cuda_graph`: `rows` sequences of `positions` image-block positions a step."""
    weights = next(model.parameters())
    if weights.device.type != "cuda" or not reuse_prefix or num_inference_steps < GRAPH_MIN_STEPS:
        return False
    return weights.dtype in (torch.bfloat16, torch.float16) or step_work(model, rows, positions) < GRAPH_MAX_STEP_WORK


STEP_ARGUMENTS = "step"  # how `callback` is called: with one MaskGITStep


@dataclass
class MaskGITStep:
    """What one step saw and decided; passed to the progress callback."""

    step: int
    num_steps: int
    input_ids: torch.Tensor  # [B, L] the conditional sequence fed to the model at this step
    codes: torch.Tensor  # [B, N] codes sampled at this step (known slots kept)
    masking: torch.Tensor  # [B, N] True where the slot is re-masked for the next step
    mask_len: torch.Tensor  # [B, 1] number of re-masked slots
    temperature: float  # Gumbel temperature used for re-masking
    selected_probs: torch.Tensor  # [B, N] confidence of each sampled code (float32 max for known slots)


@torch.no_grad()
def maskgit_generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    vocab: Vocabulary,
    num_image_tokens: int,
    uncond_input_ids: torch.Tensor | None = None,
    num_inference_steps: int = 18,
    guidance_scale: float = 0.0,
    temperature: float = 1.0,
    schedule: str | Callable[[torch.Tensor], torch.Tensor] = "cosine",
    generator: torch.Generator | None = None,
    reuse_prefix: bool = True,
    callback: Callable[[MaskGITStep], None] | None = None,
    attention_mask: torch.Tensor | None = None,
    cuda_graph: bool | None = None,
) -> torch.Tensor:
    """Fill the masked image slots of t2i-layout sequences; return all N codes per row ([B, N], 0..K-1).

    input_ids: [B, L] `[pads, <t2i>, bos, text, eos, <soi>, N image ids (mask id where unknown), <eoi>]`.
    uncond_input_ids: the same layout built on an empty prompt; used when `guidance_scale > 0` with the
    official formula `(1 + g) * cond - g * uncond` (the unconditional branch sees the current image tokens).
    The image block must be the last N + 2 positions; everything before it is the cacheable prefix, which
    must not attend to the image block. attention_mask: boolean [B (2B with guidance), 1, L, L]; default the
    official t2i omni-attention mask of the sequences (other layouts, e.g. interleaved text and images,
    pass their own).
    cuda_graph: run each step's forward of the image block over the cached prompt by replaying one CUDA graph
    (captured anew in every call); None = when the model is on a GPU, `reuse_prefix` is on, there are at least
    `GRAPH_MIN_STEPS` steps, and the model is bf16/fp16 or its fp32 step small (`uses_image_graph`).
    The graph replays the kernels the step would launch, so the tokens are the same. On the CPU, True runs the
    same fixed-buffer path without a graph (it exists so that path can be checked off a GPU).
    """
    _check_arguments(input_ids, uncond_input_ids, vocab, num_image_tokens, num_inference_steps, guidance_scale,
                     temperature, generator, callback)
    if cuda_graph and not reuse_prefix:
        raise InputError("cuda_graph replays the image block over the cached prompt: it needs reuse_prefix=True")
    schedule_fn = get_mask_schedule(schedule) if isinstance(schedule, str) else schedule
    n, mask_id, offset = num_image_tokens, vocab.mask, vocab.image_offset
    ids = input_ids.clone()
    b, length = ids.shape
    img = slice(length - n - 1, length - 1)
    prefix = length - n - 2  # text region: everything before <soi>
    guided = uncond_input_ids is not None and guidance_scale > 0
    rows = torch.cat([ids, uncond_input_ids]) if guided else ids
    if cuda_graph is None:
        cuda_graph = uses_image_graph(model, rows.shape[0], n + 2, reuse_prefix, num_inference_steps)
    mask = t2i_mask(rows, vocab, rm_pad_in_image=True) if attention_mask is None else attention_mask
    if mask.shape != (rows.shape[0], 1, length, length):
        raise InputError(f"attention_mask must be [{rows.shape[0]}, 1, {length}, {length}], got {tuple(mask.shape)}")

    codebook = slice(offset, mask_id)  # only codes are ever sampled: skip the LM head's other 50k rows
    cached_forward: Callable[[torch.Tensor], torch.Tensor] | None = None  # the image block over the cached prompt
    if reuse_prefix:
        cache = model.new_cache(rows.shape[0], length)
        model(rows[:, :prefix], attention_mask=mask[:, :, :prefix, :prefix], cache=cache, start=0,
              logits_slice=slice(0, 0))
        cached_forward = partial(model, attention_mask=mask[:, :, prefix:], cache=cache, start=prefix,
                                 logits_slice=slice(1, n + 1), vocab_slice=codebook)
        if cuda_graph:
            cached_forward = StaticCall(cached_forward, rows[:, prefix:], graph=ids.device.type == "cuda")

    def image_logits(current: torch.Tensor) -> torch.Tensor:
        batch = torch.cat([current, current]) if guided else current
        if cached_forward is None:
            full = torch.cat([rows[:, :prefix], batch[:, prefix:]], dim=1) if guided else batch
            return model(full, attention_mask=mask, logits_slice=img, vocab_slice=codebook)
        return cached_forward(batch[:, prefix:])

    codes = torch.where(ids[:, img] == mask_id, mask_id, ids[:, img] - offset)
    sampled = codes
    for step in range(num_inference_steps):
        logits = image_logits(ids)
        if guided:
            cond, uncond = logits.chunk(2)
            logits = (1 + guidance_scale) * cond - guidance_scale * uncond
        if step == 0:
            require_finite(logits)
        sampled, masking, mask_len, temperature, selected = maskgit_step(
            logits, codes, vocab, step, num_inference_steps, temperature, schedule_fn, generator)
        if callback is not None:
            # copies: a callback that edits what it is shown must not change the decoding
            callback(MaskGITStep(step, num_inference_steps, ids.clone(), sampled.clone(), masking.clone(),
                                 mask_len.long().clone(), temperature, selected.clone()))
        ids[:, img] = torch.where(masking, mask_id, sampled + offset)
        codes = torch.where(masking, mask_id, sampled)
    return sampled


def _check_arguments(input_ids, uncond_input_ids, vocab: Vocabulary, n, steps, guidance, temperature, generator,
                     callback) -> None:
    """One-line InputErrors before any model work: a misplaced image block was decoded from the wrong slots, a
    guidance scale without the unconditional rows was silently ignored, and the rest failed deep inside."""
    check_steps(steps)
    check_scale("guidance_scale", guidance)
    check_scale("temperature", temperature)
    check_callback("callback", callback, STEP_ARGUMENTS)
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        raise InputError("input_ids must be a [B, L] tensor of token ids")
    check_generator(generator, input_ids.device)
    if not is_number(n, integer=True) or not 1 <= n <= input_ids.shape[1] - 2:
        raise InputError(f"num_image_tokens must be an integer in [1, L - 2], got {n!r}")
    if guidance > 0 and uncond_input_ids is None:
        raise InputError("guidance_scale > 0 needs uncond_input_ids (the same layout on an empty prompt)")
    for name, rows in (("input_ids", input_ids), ("uncond_input_ids", uncond_input_ids)):
        if rows is None:
            continue
        if not isinstance(rows, torch.Tensor) or rows.shape[1:] != input_ids.shape[1:] or rows.is_floating_point():
            raise InputError(f"{name} must be token ids shaped like input_ids {list(input_ids.shape)}")
        if int(rows.min()) < 0 or int(rows.max()) >= vocab.size:
            raise InputError(f"{name} must lie in [0, {vocab.size})")
        if not (bool((rows[:, -n - 2] == vocab.soi).all()) and bool((rows[:, -1] == vocab.eoi).all())):
            raise InputError(f"{name} must end with the image block <soi>, {n} image ids, <eoi>")


def maskgit_step(logits: torch.Tensor, codes: torch.Tensor, vocab: Vocabulary, step: int, num_steps: int,
                 temperature: float, schedule_fn: Callable[[torch.Tensor], torch.Tensor],
                 generator: torch.Generator | None = None):
    """One official decoding step on the (guided) codebook logits of the image slots [B, N, K]
    (vocabulary entries `vocab.image_offset` to `vocab.mask`).

    `codes` [B, N] holds known codes and `vocab.mask` where unknown. Returns (sampled codes [B, N], re-masked
    slots [B, N], mask_len [B, 1], the compounded temperature, confidences [B, N]). Random draws, in the
    official order: one multinomial over every slot, then one uniform per slot for the Gumbel noise.
    """
    b, n = codes.shape
    probs = logits.softmax(dim=-1)
    sampled = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).view(b, n)
    unknown = codes == vocab.mask
    sampled = torch.where(unknown, sampled, codes)
    ratio = (step + 1) / num_steps
    # float32 on the host, as the official code; kept there as a Python number so the step copies nothing to the GPU
    limit = float((n * schedule_fn(torch.tensor(ratio))).floor())
    selected = probs.gather(-1, sampled[..., None]).squeeze(-1)
    selected = torch.where(unknown, selected, torch.finfo(selected.dtype).max)
    # the official max(1, min(unknown - 1, limit)), float32 as there
    mask_len = (unknown.sum(dim=-1, keepdim=True) - 1).float().clamp(max=limit).clamp(min=1)
    temperature = temperature * (1.0 - ratio)  # official quirk: compounds over the steps (spec §6.1)
    masking = mask_by_random_topk(mask_len, selected, temperature, generator=generator, keep=~unknown)
    return sampled, masking, mask_len, temperature, selected
