"""Our interleaved text-and-image layout (mixed-modality generation); the official code never released one.

One row is

    [<lvg>, bos, text..., <soi>, N image ids, <eoi>, text..., <soi>, N image ids, <eoi>, ..., eos]

(any number of text and image segments in any order; image ids are codes + `vocab.image_offset`). Its
omni-attention mask is causal, plus every `<soi> .. <eoi>` block bidirectional within itself: exactly the
official `create_attention_mask_lvg` (`masks.lvg_mask`) on an unpadded row. So text sees all earlier text and
every earlier image, an image sees the text and images before it and the whole of itself, and nothing sees
the future outside its own block. The `<lvg>` task token is the one reserved for this by the official
vocabulary (its embedding was never trained by the released checkpoints).

Training targets (`interleaved_sequence`): text positions are next-token targets (shifted loss on
`text_labels`), image codes are masked-token targets (unshifted loss at the positions of `is_image`, after
`training.masking.mask_interleaved_images`). `<eoi>` is no text target: the row of the last image code before it
belongs to the image loss, and the sampler writes `<eoi>` itself. Batches are left padded with `interleaved_batch`.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from ..errors import InputError
from .masks import causal_mask, left_pad_ids, pad_left, positions_left_padded
from .sequences import IGNORE_INDEX
from .vocab import Vocabulary

Segment = Sequence[int] | torch.Tensor  # text: a list of token ids (no bos); image: a 1-D tensor of N codes


class InterleavedRow(NamedTuple):
    """One interleaved row: `ids` [L], `is_image` [L] (True on image-code positions, not on `<soi>`/`<eoi>`),
    `text_labels` [L] (the id where the position is a text target, IGNORE_INDEX elsewhere; unshifted, so the
    loss is `cross_entropy(logits[:-1], text_labels[1:])`)."""

    ids: torch.Tensor
    is_image: torch.Tensor
    text_labels: torch.Tensor


def interleaved_sequence(vocab: Vocabulary, segments: Sequence[Segment], add_eos: bool = True) -> InterleavedRow:
    """Build `[<lvg>, bos, ...segments..., eos]`: each text segment as its ids, each image (a 1-D tensor of
    codes 0..codebook_size-1) as `<soi>, code ids, <eoi>`."""
    ids, image = [vocab.lvg, vocab.bos], [False, False]
    for seg in segments:
        if isinstance(seg, torch.Tensor):
            if seg.dim() != 1 or not seg.numel():
                raise InputError(f"an image segment must be a 1-D tensor of codes, got shape {tuple(seg.shape)}")
            if int(seg.min()) < 0 or int(seg.max()) >= vocab.codebook_size:
                raise InputError(f"image codes must lie in [0, {vocab.codebook_size}), got "
                                 f"[{int(seg.min())}, {int(seg.max())}]")
            ids += [vocab.soi, *vocab.codes_to_ids(seg.long()).tolist(), vocab.eoi]
            image += [False] + [True] * seg.numel() + [False]
        else:
            text = [int(t) for t in seg]
            if any(t < 0 or t >= vocab.text_size for t in text):
                raise InputError(f"text segments must hold text token ids below {vocab.text_size}")
            ids += text
            image += [False] * len(text)
    if add_eos:
        ids.append(vocab.eos)
        image.append(False)
    ids_t = torch.tensor(ids, dtype=torch.long)
    is_image = torch.tensor(image, dtype=torch.bool)
    target = ~is_image & (ids_t != vocab.eoi)
    target[0] = False  # <lvg> opens the row; nothing predicts it
    return InterleavedRow(ids_t, is_image, torch.where(target, ids_t, IGNORE_INDEX))


def _blocks(ids: torch.Tensor, vocab: Vocabulary) -> list[tuple[int, int]]:
    """(soi, eoi) positions of the image blocks of a 1-D row; raises on unpaired or nested delimiters."""
    blocks, start = [], None
    for pos in ((ids == vocab.soi) | (ids == vocab.eoi)).nonzero().flatten().tolist():
        if int(ids[pos]) == vocab.soi:
            if start is not None:
                raise InputError(f"<soi> at {pos} opens an image inside the image opened at {start}")
            start = pos
        else:
            if start is None:
                raise InputError(f"<eoi> at {pos} closes no image")
            blocks.append((start, pos))
            start = None
    if start is not None:
        raise InputError(f"<soi> at {start} is never closed by <eoi>")
    return blocks


def interleaved_mask(ids: torch.Tensor, vocab: Vocabulary, first_row: int = 0) -> torch.Tensor:
    """The [L, L] boolean mask (True = may attend) of one unpadded interleaved row [L]; with `first_row`, only
    its rows from there on, [L - first_row, L] (decoding: the rows of the positions being run)."""
    if ids.dim() != 1:
        raise InputError(f"interleaved_mask takes one row [L], got shape {tuple(ids.shape)}")
    mask = causal_mask(ids.shape[0], ids.device, first_row)
    for s, e in _blocks(ids, vocab):
        if e >= first_row:
            mask[max(s, first_row) - first_row:e + 1 - first_row, s:e + 1] = True
    return mask


class InterleavedBatch(NamedTuple):
    """Left-padded rows: `ids` [B, L], `mask` [B, 1, L, L] bool, `positions` [B, L] (padding skipped)."""

    ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor


def interleaved_batch(rows: Sequence[torch.Tensor], vocab: Vocabulary, length: int | None = None) -> InterleavedBatch:
    """Left-pad rows [L_i] with `[PAD]` into one batch; pads are invisible to every real row (`pad_left`)."""
    ids = left_pad_ids(list(rows), vocab.pad, length)
    mask = pad_left([interleaved_mask(r, vocab) for r in rows], ids.shape[1])
    positions = positions_left_padded([r.shape[0] for r in rows], ids.shape[1], ids.device)
    return InterleavedBatch(ids, mask, positions)
