"""Mixed-modality generation: text written token by token, images filled in place by MaskGIT.

The row follows our interleaved layout and mask (`showo.prompting.interleaved`):
`[<lvg>, bos, prompt..., text..., <soi>, N image ids, <eoi>, text..., eos]`. The loop:

* text: one token at a time with a KV cache, sampled (`next_token`) among the text ids and `<soi>` only (an
  image code, `<eoi>` or a task token written as text would break the layout);
* `<soi>`: N mask ids and `<eoi>` are appended and filled by `maskgit_generate` with the interleaved mask of
  the whole row (the prefix before `<soi>` never sees the block, so MaskGIT's prefix cache is valid); then
  `<soi>`, the finished codes and `<eoi>` are run through the text cache (the block bidirectional within
  itself), so the text that follows attends to the image exactly as a full forward would;
* `force_sentence_end(text)`: when given and the text since the last image (the prompt counts) ends a
  sentence, the next token is `<soi>` instead of a sampled one: an image after every sentence;
* stop: `eos` (kept as the last id); a `<soi>` requested when `max_images` images exist already (dropped);
  or `max_new_tokens` text tokens (forced `<soi>` included; an image being started is always finished).

Classifier-free guidance (`guidance_scale > 0`) contrasts the row with `[<lvg>, bos, <soi>, block, <eoi>]`
(left padded, pads invisible): the analogue of Show-o's t2i null condition `[<t2i>, bos, eos]`, so guidance
pushes the image towards everything before it (text and earlier images). Off by default: the released
checkpoints were never trained on interleaved rows, so no null condition of this layout was learnt. Training
learns it when `mix.story_dropout_prob > 0` (a story row replaced by one of its keyframes alone).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import InputError
from ..fields import is_number
from ..limits import check_scale, check_steps, check_text_sampling
from ..prompting.interleaved import interleaved_batch, interleaved_mask
from ..prompting.vocab import Vocabulary
from ..sampling.autoregressive import TokenCallback, next_token
from ..sampling.filters import require_finite
from ..sampling.maskgit import MaskGITStep, maskgit_generate
from .inputs import check_prompt

SENTENCE_END = (".", "!", "?")


@dataclass
class InterleavedResult:
    """The whole row (`ids`, prompt included), where each image block starts (`<soi>` positions) and why the
    loop stopped ("eos", "max_images" or "max_new_tokens")."""

    ids: list[int]
    image_starts: list[int]
    prompt_length: int
    stop_reason: str


def ends_sentence(text: str) -> bool:
    """True when `text` (trailing whitespace ignored) ends with '.', '!' or '?'."""
    return text.rstrip().endswith(SENTENCE_END)


def row_capacity(prompt_ids: list[int], max_new_tokens: int, max_images: int, num_image_tokens: int) -> int:
    """Positions the longest row can take: `[<lvg>, bos, prompt]`, every text token (each `<soi>` among them) and
    every image's N codes and `<eoi>`, plus one spare (the model's limit and the KV cache's size)."""
    return 2 + len(prompt_ids) + max_new_tokens + max_images * (num_image_tokens + 1) + 1


def check_mixed(prompt: str, max_images: int, max_new_tokens: int, num_inference_steps: int, guidance_scale: float,
                text_temperature: float, image_temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Validate the user arguments of `ShowoPipeline.mixed` (InputError, one line)."""
    check_prompt(prompt)
    if not is_number(max_images, integer=True) or max_images < 0:
        raise InputError(f"max_images must be an integer >= 0, got {max_images!r}")
    check_text_sampling(max_new_tokens, text_temperature, top_k, top_p, temperature_name="text_temperature")
    check_steps(num_inference_steps)
    check_scale("guidance_scale", guidance_scale)
    check_scale("image_temperature", image_temperature)


def _forward(model: torch.nn.Module, ids: list[int], start: int, cache, vocab: Vocabulary) -> torch.Tensor:
    """Run positions `[start, len(ids))` through the cache; logits [1, V] of the last one."""
    row = torch.tensor(ids, dtype=torch.long, device=model.device)
    mask = interleaved_mask(row, vocab, first_row=start)[None, None]
    return model(row[None, start:], attention_mask=mask, cache=cache, start=start, logits_slice=slice(-1, None))[:, -1]


def _fill_image(model: torch.nn.Module, vocab: Vocabulary, ids: list[int], n: int, steps: int, guidance: float,
                temperature: float, schedule: str, generator, callback) -> torch.Tensor:
    """Codes [N] for the all-mask block that ends `ids`."""
    row = torch.tensor(ids, dtype=torch.long, device=model.device)
    uncond, mask = None, interleaved_mask(row, vocab)[None, None]
    if guidance > 0:
        null = torch.cat([row.new_tensor([vocab.lvg, vocab.bos]), row[-(n + 2):]])
        batch = interleaved_batch([row, null], vocab)
        uncond, mask = batch.ids[1:], batch.mask
    return maskgit_generate(model, row[None], vocab, n, uncond_input_ids=uncond, num_inference_steps=steps,
                            guidance_scale=guidance, temperature=temperature, schedule=schedule,
                            generator=generator, callback=callback, attention_mask=mask)[0]


@torch.no_grad()
def generate_interleaved(
    model: torch.nn.Module,
    vocab: Vocabulary,
    prompt_ids: list[int],
    num_image_tokens: int,
    max_images: int = 4,
    max_new_tokens: int = 200,
    num_inference_steps: int = 16,
    guidance_scale: float = 0.0,
    text_temperature: float = 0.0,
    image_temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    schedule: str = "cosine",
    generator: torch.Generator | None = None,
    on_token: TokenCallback | None = None,
    callback: Callable[[MaskGITStep], None] | None = None,
    force_sentence_end: Callable[[list[int]], bool] | None = None,
) -> InterleavedResult:
    """Continue `[<lvg>, bos, prompt_ids]` with text and images (see the module docstring)."""
    n = num_image_tokens
    ids = [vocab.lvg, vocab.bos, *prompt_ids]
    prompt_length = len(ids)
    cache = model.new_cache(1, row_capacity(prompt_ids, max_new_tokens, max_images, n))
    allowed = torch.zeros(vocab.size, dtype=torch.bool, device=model.device)
    allowed[:vocab.text_size] = True
    allowed[vocab.soi] = True
    logits = _forward(model, ids, 0, cache, vocab)
    require_finite(logits)
    segment, starts, reason = list(prompt_ids), [], "max_new_tokens"
    for step in range(max_new_tokens):
        if force_sentence_end is not None and segment and len(starts) < max_images and force_sentence_end(segment):
            token = vocab.soi
        else:
            scores = logits.masked_fill(~allowed, float("-inf"))
            token = int(next_token(scores, text_temperature, top_k, top_p, generator)[0])
        refused = token == vocab.soi and len(starts) >= max_images
        if on_token is not None:
            on_token(step, torch.tensor([token]), torch.tensor([token == vocab.eos or refused]))
        if refused:
            reason = "max_images"
            break
        ids.append(token)
        if token == vocab.eos:
            reason = "eos"
            break
        if token == vocab.soi:
            start = len(ids) - 1
            ids += [vocab.mask] * n + [vocab.eoi]
            codes = _fill_image(model, vocab, ids, n, num_inference_steps, guidance_scale, image_temperature,
                                schedule, generator, callback)
            ids[start + 1:start + 1 + n] = vocab.codes_to_ids(codes).tolist()
            starts.append(start)
            segment = []
        else:
            start = len(ids) - 1
            segment.append(token)
        if step < max_new_tokens - 1:
            logits = _forward(model, ids, start, cache, vocab)
    return InterleavedResult(ids, starts, prompt_length, reason)


def split_segments(result: InterleavedResult, vocab: Vocabulary, num_image_tokens: int) -> list[list[int] | torch.Tensor]:
    """The generated part of a row as alternating text id lists and image code tensors [N] (empty text and
    the closing eos dropped)."""
    out: list[list[int] | torch.Tensor] = []
    text: list[int] = []
    pos, starts = result.prompt_length, set(result.image_starts)
    while pos < len(result.ids):
        if pos in starts:
            if text:
                out.append(text)
                text = []
            out.append(vocab.ids_to_codes(torch.tensor(result.ids[pos + 1:pos + 1 + num_image_tokens])))
            pos += num_image_tokens + 2
            continue
        if result.ids[pos] != vocab.eos:
            text.append(result.ids[pos])
        pos += 1
    if text:
        out.append(text)
    return out
