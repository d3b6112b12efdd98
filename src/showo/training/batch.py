"""Training batches: the objectives' rows as token sequences, omni-attention masks and targets.

A `Part` is rows of one objective sharing one sequence length. Targets come in two kinds: `here` (masked
image tokens predicted at their own position, unshifted, as the official t2i loss) and `next` (next-token
prediction, already shifted: `next[:, i]` is what position i must predict). Interleaved rows use both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..prompting.masks import branches_after_prefix, lm_mask, mmu_mask, t2i_mask
from ..prompting.sequences import IGNORE_INDEX, lm_sequence, mmu_sequence, t2i_sequence
from ..prompting.vocab import Vocabulary
from ..sampling.schedules import get_mask_schedule
from .config import MixConfig
from .masking import mask_image_tokens


@dataclass
class Part:
    name: str
    ids: torch.Tensor  # [B, L]
    mask: torch.Tensor  # [B, 1, L, L] bool, True = may attend
    here: torch.Tensor | None = None  # [B, L] targets at their own position
    next: torch.Tensor | None = None  # [B, L] targets of the following position
    positions: torch.Tensor | None = None  # [B, L] position ids (None: 0..L-1)

    def to(self, device) -> "Part":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Part(self.name, move(self.ids), move(self.mask), move(self.here), move(self.next),
                    move(self.positions))

    def position_ids(self) -> torch.Tensor:
        if self.positions is not None:
            return self.positions
        return torch.arange(self.ids.shape[1], device=self.ids.device).expand_as(self.ids)

    def num_targets(self) -> int:
        return sum(int((t != IGNORE_INDEX).sum()) for t in (self.here, self.next) if t is not None)


def shift_left(labels: torch.Tensor) -> torch.Tensor:
    """Next-token targets from unshifted labels: position i predicts labels[i + 1]; the last predicts nothing."""
    out = torch.full_like(labels, IGNORE_INDEX)
    out[:, :-1] = labels[:, 1:]
    return out


def t2i_part(vocab: Vocabulary, text_ids: Sequence[Sequence[int]], codes: torch.Tensor, max_text_len: int,
             mix: MixConfig, generator: torch.Generator | None = None) -> tuple[Part, torch.Tensor]:
    """Masked image modelling rows (with condition dropout); also returns the sampled mask ratios [B]."""
    image_in, image_labels, ratio = mask_image_tokens(vocab.codes_to_ids(codes), vocab.mask,
                                                      get_mask_schedule(mix.mask_schedule), mix.min_masking_rate,
                                                      generator)
    ids, labels = t2i_sequence(vocab, text_ids, image_in, image_labels, max_text_len,
                               cond_dropout_prob=mix.cond_dropout_prob, generator=generator)
    here = labels.clone()
    here[:, : max_text_len + 1] = IGNORE_INDEX  # the official t2i loss starts at <soi>
    return Part("t2i", ids, t2i_mask(ids, vocab, rm_pad_in_image=True), here=here), ratio


def lm_part(vocab: Vocabulary, text_ids: Sequence[Sequence[int]], max_len: int) -> Part:
    ids, labels = lm_sequence(vocab, text_ids, max_len)
    return Part("lm", ids, lm_mask(ids, vocab), next=shift_left(labels))


def mmu_part(vocab: Vocabulary, codes: torch.Tensor, text_ids: Sequence[Sequence[int]], max_text_len: int) -> Part:
    """Understanding rows `[<mmu>, <soi>, image, <eoi>, bos, text, eos, pads]`; text targets only."""
    ids, labels = mmu_sequence(vocab, vocab.codes_to_ids(codes), text_ids, max_text_len)
    return Part("mmu", ids, mmu_mask(ids, vocab, per_row=True), next=shift_left(labels))


def mmu_answer_part(vocab: Vocabulary, codes: torch.Tensor, question: Sequence[int], answer: Sequence[int],
                    max_text_len: int) -> Part:
    """The understanding row `mmu_part` builds from `question + answer` ([1, N] codes), supervising the answer and
    eos only (the official captioning data also supervised the question prefix)."""
    part = mmu_part(vocab, codes, [[*question, *answer]], max_text_len)
    # ids: [<mmu>, <soi>, N codes, <eoi>, bos, question, answer, eos]; the last question token sits at
    # N + 3 + len(question) and predicts the first answer token
    part.next[:, :codes.shape[-1] + 3 + len(question)] = IGNORE_INDEX
    return part


def mmu_branch_part(vocab: Vocabulary, codes: torch.Tensor,
                    qa_ids: Sequence[Sequence[tuple[Sequence[int], Sequence[int]]]], max_text_len: int,
                    multiple: int = 32) -> Part:
    """Understanding rows asking several questions about each image ([B, N] codes, `qa_ids[b]` the (question,
    answer) pairs of image b): `[<mmu>, <soi>, image, <eoi>, bos]` once, then per pair a branch `question, answer,
    eos` (`branches_after_prefix`). Each branch is cut from the one-question row `mmu_answer_part` builds (the same
    tokens and targets) and sees the image and itself only, at the positions it has there, so it computes exactly
    that row. Rows are right padded to a common length, a multiple of `multiple` (pads are never read)."""
    built = []
    for image, qa in zip(codes, qa_ids):
        if not qa or any(len(q) == 0 for q, _ in qa):
            raise ValueError("mmu_branch_part needs at least one (question, answer) pair per image, each with a "
                             "question")
        singles = [mmu_answer_part(vocab, image[None], q, a, max_text_len) for q, a in qa]
        p = image.numel() + 4  # the shared prefix [<mmu>, <soi>, image, <eoi>, bos]
        lengths = [int((one.ids[0, p:] != vocab.pad).sum()) for one in singles]
        ids = torch.cat([singles[0].ids[0, :p], *(one.ids[0, p:p + n] for one, n in zip(singles, lengths))])
        nxt = torch.cat([torch.full((p,), IGNORE_INDEX), *(one.next[0, p:p + n] for one, n in zip(singles, lengths))])
        built.append((ids, nxt, singles[0].mask[0, 0, :p, :p], lengths))
    length = round_up(max(ids.shape[0] for ids, *_ in built), multiple)
    parts = []
    for ids, nxt, prefix_mask, lengths in built:
        mask, positions = branches_after_prefix(prefix_mask, lengths, length)
        pad = length - ids.shape[0]
        parts.append(Part("mmu", F.pad(ids, (0, pad), value=vocab.pad)[None], mask[None, None],
                          next=F.pad(nxt, (0, pad), value=IGNORE_INDEX)[None], positions=positions[None]))
    return cat_parts(parts)


def group_by_length(parts: Sequence[Part]) -> list[list[Part]]:
    """Non-empty parts grouped by sequence length: each group is one forward pass (the official t2i|lm|mmu
    batch is one group because all three share the t2i length)."""
    groups: dict[int, list[Part]] = {}
    for p in parts:
        if p.ids.shape[0]:
            groups.setdefault(p.ids.shape[1], []).append(p)
    return list(groups.values())


def cat_parts(parts: Sequence[Part]) -> Part:
    """Rows of one objective built separately (e.g. one per row, each with its own seed), as one part."""
    if len({p.name for p in parts}) != 1 or len({p.ids.shape[1] for p in parts}) != 1:
        raise ValueError("cat_parts needs parts of one objective and one length")

    def cat(attr: str) -> torch.Tensor | None:
        ts = [getattr(p, attr) for p in parts]
        return None if all(t is None for t in ts) else torch.cat(
            [t if t is not None else torch.full_like(p.ids, IGNORE_INDEX) for t, p in zip(ts, parts)])

    positions = None if all(p.positions is None for p in parts) else torch.cat([p.position_ids() for p in parts])
    return Part(parts[0].name, cat("ids"), cat("mask"), cat("here"), cat("next"), positions)


def row_generator(seed: int, step: int, kind: str, index: int) -> torch.Generator:
    """A generator determined by (seed, step, objective, global row index) alone: the rows of a step are the
    same whether one process or many build them, and resuming at a step needs no saved random state."""
    salt = {"t2i": 1, "lm": 2, "mmu": 3, "story": 4, "story_null": 5}.get(kind, 9)
    key = ((seed * 1_000_003 + step) * 10 + salt) * 1_000_033 + index
    return torch.Generator().manual_seed(key % 2 ** 63)  # the same key below 2**63; large seeds fit


def local_rows(global_rows: int, rank: int, world_size: int) -> range:
    """The global row indices a rank builds: a contiguous block (ranks get equal shares when divisible)."""
    per, extra = divmod(global_rows, world_size)
    start = rank * per + min(rank, extra)
    return range(start, start + per + (1 if rank < extra else 0))


def group_inputs(group: Sequence[Part]) -> tuple[torch.Tensor, ...]:
    """(ids, mask, here, next, position ids) of a same-length group, rows in order; missing targets are all
    ignored."""
    none = lambda t, p: torch.full_like(p.ids, IGNORE_INDEX) if t is None else t  # noqa: E731
    return (torch.cat([p.ids for p in group]), torch.cat([p.mask for p in group]),
            torch.cat([none(p.here, p) for p in group]), torch.cat([none(p.next, p) for p in group]),
            torch.cat([p.position_ids() for p in group]))


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def round_up_selection(select: torch.Tensor, multiple: int) -> torch.Tensor:
    """`select` ([B, L] bool) with its first unselected positions added until the count is a multiple of
    `multiple` (or everything is selected)."""
    count = int(select.sum())
    extra = min(round_up(count, multiple), select.numel()) - count
    if extra <= 0:
        return select
    flat = select.flatten().clone()
    flat[(~flat).nonzero()[:extra, 0]] = True
    return flat.view_as(select)


def unread_positions(mask: torch.Tensor, targeted: torch.Tensor) -> torch.Tensor:
    """[B, L] True where a position's output is never used: it carries no target and no position that is
    used attends to it (padding, the last token of a text row). mask: [B, 1, L, L] bool (True = may attend);
    targeted: [B, L] bool. Starts from every untargeted position and keeps those read by a kept one, until
    nothing changes (dropping is exact: kept positions only ever attend kept positions)."""
    attends = mask[:, 0]
    unread = ~targeted
    while True:
        read = (attends & ~unread[:, :, None]).any(dim=1)  # keys that some kept query attends
        still = unread & ~read
        if torch.equal(still, unread):
            return unread
        unread = still


def drop_unread(ids: torch.Tensor, mask: torch.Tensor, targets: Sequence[torch.Tensor],
                positions: torch.Tensor | None = None, multiple: int = 8):
    """The rows without the positions no loss depends on (`unread_positions`): each row's kept positions move
    to the front, in order, and the columns past the longest row's (rounded up to `multiple`, so that few
    distinct shapes reach the kernels) are cut. Returns (ids, mask, targets, position_ids); the kept positions
    keep their position ids (`positions`, default 0..L-1) for RoPE, so they compute exactly what they did. The
    official loop pads every row to the full length; this skips that work (about 10% of the embedded recipe's
    positions, more where prompt lengths vary widely)."""
    b, length = ids.shape
    targeted = torch.zeros_like(ids, dtype=torch.bool)
    for t in targets:
        targeted |= t != IGNORE_INDEX
    unread = unread_positions(mask, targeted)
    longest = max(1, int((~unread).sum(dim=1).max()))  # rows without any target still make a valid forward
    keep = min(length, round_up(longest, multiple))
    order = torch.sort(unread.to(torch.int8), dim=1, stable=True).indices[:, :keep]  # kept first, in order
    rows = torch.arange(b, device=ids.device)[:, None]
    mask = mask[:, 0][rows[:, :, None], order[:, :, None], order[:, None, :]]
    # rows shorter than the longest end in unread positions: let each see itself so none attends nothing
    # (their outputs are never used, but a fully masked row would give NaN and NaN * 0 is NaN)
    mask = mask | (torch.eye(keep, dtype=torch.bool, device=ids.device) & unread[rows, order][:, :, None])
    positions = order if positions is None else positions[rows, order]
    return ids[rows, order], mask[:, None], [t[rows, order] for t in targets], positions
