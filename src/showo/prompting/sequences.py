"""Token sequences in exactly the official Show-o layouts (`UniversalPrompting` and the inference scripts).

Data flows text -> ids -> sequence: callers tokenize with `TextTokenizer.encode`/`encode_batch` (no BOS) and pass
the id lists here together with image token ids (codes already shifted by `vocab.image_offset`, or `vocab.mask`).
Every special id comes from the `Vocabulary`; nothing here knows a numeric id.

`max_text_len` is the config's `dataset.preprocessing.max_seq_length` (T); the left-padded text region of the
t2i-style layouts is T + 1 long (one slot for the task token), the text part of the MMU layout is T long.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from ..errors import InputError
from ..fields import is_number
from .vocab import Vocabulary

IGNORE_INDEX = -100

# inference_mmu.py's CLIP-ViT system prompt (28 phi-1.5 tokens, no BOS); `mmu_clip_prompt_ids` takes its ids.
SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
SYSTEM_PROMPT_LEN_PHI = 28  # asserted by the official script for the phi-1.5 tokenizer
CLIP_NUM_IMAGE_TOKENS = 576  # CLIP ViT-L/14-336 patches; hard-coded by the official mask builder

TextIds = Sequence[Sequence[int]]


class PromptBatch(NamedTuple):
    """A built batch: `ids` [B, L] and `labels` [B, L] (unshifted, `IGNORE_INDEX` where not supervised)."""

    ids: torch.Tensor
    labels: torch.Tensor


# ----------------------------------------------------------------------------------------------- helpers


def _with_bos(vocab: Vocabulary, ids: Sequence[int]) -> list[int]:
    """The official BOS rule: empty -> [bos]; prepend bos unless the list already starts with it."""
    ids = _whole(ids)
    if not ids:
        return [vocab.bos]
    return ids if ids[0] == vocab.bos else [vocab.bos, *ids]


def _whole(ids: Sequence[int]) -> list[int]:
    """Text ids as ints; a fraction is refused (1.7 was taken as token 1)."""
    if bad := [i for i in ids if int(i) != i]:
        raise InputError(f"text ids must be whole numbers, got {bad[0]!r}")
    return [int(i) for i in ids]


def _check_batch(text_ids: TextIds, visual_ids: torch.Tensor, name: str) -> int:
    if visual_ids.dim() != 2:
        raise InputError(f"{name} must be [B, N] token ids, got shape {tuple(visual_ids.shape)}")
    if len(text_ids) != visual_ids.shape[0]:
        raise InputError(f"{len(text_ids)} texts but {visual_ids.shape[0]} rows of {name}")
    return len(text_ids)


def _check_visual_ids(vocab: Vocabulary, ids: torch.Tensor, name: str) -> None:
    """Image/video positions must hold image-code ids (code + offset) or the mask token."""
    if ids.numel() and (int(ids.min()) < vocab.image_offset or int(ids.max()) > vocab.mask):
        raise InputError(
            f"{name} must be image token ids in [{vocab.image_offset}, {vocab.mask}] (codes + image_offset or the "
            f"mask token), got values in [{int(ids.min())}, {int(ids.max())}]")


def _check_max_text_len(max_text_len: int) -> None:
    if not is_number(max_text_len, integer=True) or max_text_len < 2:
        raise InputError(f"max_text_len must be >= 2, got {max_text_len}")


def dropout_mask(batch_size: int, cond_dropout_prob: float, dropout_draw: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Which rows lose their caption: `draw < p`, with `draw = torch.rand(B)` unless given (official RNG order)."""
    if dropout_draw is None:
        dropout_draw = torch.rand(batch_size, generator=generator)
    if dropout_draw.shape != (batch_size,):
        raise InputError(f"dropout_draw must have shape ({batch_size},), got {tuple(dropout_draw.shape)}")
    return dropout_draw < cond_dropout_prob


def text_condition(vocab: Vocabulary, ids: Sequence[int], task: int, max_text_len: int, drop: bool = False) -> list[int]:
    """The T+1 text region of the t2i-style layouts: `[pad.., task, bos, text.., eos]`, left padded.

    A dropped condition is `[task, bos, eos]`; too long a text keeps its first T ids and ends with eos.
    """
    x = [task, vocab.bos, vocab.eos] if drop else [task, *_with_bos(vocab, ids), vocab.eos]
    region = max_text_len + 1
    if len(x) <= region:
        return [vocab.pad] * (region - len(x)) + x
    return x[:region - 1] + [vocab.eos]


def _visual_rows(vocab: Vocabulary, text_ids: TextIds, visual_ids: torch.Tensor, max_text_len: int,
                 task: int, start: int, end: int, drop: torch.Tensor | None) -> torch.Tensor:
    """`[text region (T+1), start, visual ids (N), end]` per row; `drop` [B] bool selects null conditions."""
    b = _check_batch(text_ids, visual_ids, "visual_ids")
    _check_max_text_len(max_text_len)
    _check_visual_ids(vocab, visual_ids, "visual_ids")
    text = torch.tensor([text_condition(vocab, text_ids[i], task, max_text_len, bool(drop[i]) if drop is not None else False)
                         for i in range(b)], dtype=torch.long, device=visual_ids.device).reshape(b, max_text_len + 1)
    col = torch.ones(b, 1, dtype=torch.long, device=visual_ids.device)
    return torch.cat([text, col * start, visual_ids.long(), col * end], dim=1)


def _visual_labels(vocab: Vocabulary, ids: torch.Tensor, visual_labels: torch.Tensor, n: int) -> torch.Tensor:
    """Labels of a t2i-style training row: the ids themselves with the visual part replaced by the MTP labels,
    then every `[PAD]` value -> ignore (the official replaces by value, after concatenation)."""
    if visual_labels.shape != (ids.shape[0], n):
        raise InputError(f"visual labels must have shape {(ids.shape[0], n)}, got {tuple(visual_labels.shape)}")
    labels = ids.clone()
    labels[:, -n - 1:-1] = visual_labels.to(ids)
    return labels.masked_fill(labels == vocab.pad, IGNORE_INDEX)


def _training(vocab: Vocabulary, text_ids: TextIds, visual_ids: torch.Tensor, visual_labels: torch.Tensor,
              max_text_len: int, task: int, start: int, end: int, cond_dropout_prob: float,
              dropout_draw: torch.Tensor | None, generator: torch.Generator | None, extra_draw: bool) -> PromptBatch:
    b = _check_batch(text_ids, visual_ids, "visual_ids")
    drew = dropout_draw is None
    drop = dropout_mask(b, cond_dropout_prob, dropout_draw, generator)
    if drew and extra_draw:
        torch.rand(b, generator=generator)  # the official lvg builder draws a second, unused rand(B)
    ids = _visual_rows(vocab, text_ids, visual_ids, max_text_len, task, start, end, drop)
    return PromptBatch(ids, _visual_labels(vocab, ids, visual_labels, visual_ids.shape[1]))


# ----------------------------------------------------------------------------------------- text-to-image


def t2i_sequence(vocab: Vocabulary, text_ids: TextIds, image_ids: torch.Tensor, image_labels: torch.Tensor,
                 max_text_len: int, *, cond_dropout_prob: float = 0.1, dropout_draw: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> PromptBatch:
    """t2i training rows `[pad.., <t2i>, bos, text.., eos, <soi>, image (N), <eoi>]`, length T + N + 3.

    Condition dropout: row i is dropped when `draw[i] < cond_dropout_prob`; `draw` is `dropout_draw` if given,
    else one `torch.rand(B, generator=generator)` (the official call, made before any row is built).
    Labels: the ids with pads ignored, `image_labels` (MTP targets: id where masked, -100 elsewhere) over the
    image, and real targets at `<soi>`/`<eoi>` (the official t2i loss counts them).
    """
    return _training(vocab, text_ids, image_ids, image_labels, max_text_len, vocab.t2i, vocab.soi, vocab.eoi,
                     cond_dropout_prob, dropout_draw, generator, extra_draw=False)


def t2i_gen_sequence(vocab: Vocabulary, text_ids: TextIds, image_ids: torch.Tensor, max_text_len: int) -> torch.Tensor:
    """t2i generation / inpainting / extrapolation rows (same layout as training, no dropout, no labels).

    The classifier-free-guidance prompt is this builder on empty texts (`[[]] * B`).
    """
    return _visual_rows(vocab, text_ids, image_ids, max_text_len, vocab.t2i, vocab.soi, vocab.eoi, None)


def t2v_sequence(vocab: Vocabulary, text_ids: TextIds, video_ids: torch.Tensor, video_labels: torch.Tensor,
                 max_text_len: int, *, cond_dropout_prob: float = 0.1, dropout_draw: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> PromptBatch:
    """Text-to-video training rows: the t2i layout with `<t2v>`, `<sov>`, `<eov>` (one rand(B) draw)."""
    return _training(vocab, text_ids, video_ids, video_labels, max_text_len, vocab.t2v, vocab.sov, vocab.eov,
                     cond_dropout_prob, dropout_draw, generator, extra_draw=False)


def t2v_gen_sequence(vocab: Vocabulary, text_ids: TextIds, video_ids: torch.Tensor, max_text_len: int) -> torch.Tensor:
    """Text-to-video generation rows (`<t2v>`, `<sov>`, `<eov>`; no RNG)."""
    return _visual_rows(vocab, text_ids, video_ids, max_text_len, vocab.t2v, vocab.sov, vocab.eov, None)


def lvg_sequence(vocab: Vocabulary, text_ids: TextIds, image_ids: torch.Tensor, image_labels: torch.Tensor,
                 max_text_len: int, *, cond_dropout_prob: float = 0.1, dropout_draw: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, draw_unused: bool = True) -> PromptBatch:
    """The official 'lvg' training rows: identical to t2i (uses `<t2i>`, `<soi>`, `<eoi>`).

    The official builder draws a second rand(B) it never uses; `draw_unused` reproduces that RNG consumption
    (only when the dropout draw itself is taken from the RNG, i.e. `dropout_draw is None`).
    """
    return _training(vocab, text_ids, image_ids, image_labels, max_text_len, vocab.t2i, vocab.soi, vocab.eoi,
                     cond_dropout_prob, dropout_draw, generator, extra_draw=draw_unused)


def lvg_gen_sequence(vocab: Vocabulary, text_ids: TextIds, image_ids: torch.Tensor, max_text_len: int) -> torch.Tensor:
    """The official 'lvg_gen' rows (identical to `t2i_gen_sequence`)."""
    return t2i_gen_sequence(vocab, text_ids, image_ids, max_text_len)


# --------------------------------------------------------------------------------------------- language


def lm_sequence(vocab: Vocabulary, text_ids: TextIds, max_len: int, *,
                text_max_tokens: int | None = None) -> PromptBatch:
    """Language-modelling rows `[bos, text.., eos, pad..]`, right padded to `max_len`.

    Too long a row is cut to `max_len` with no trailing eos. `max_len` is the t2i sequence length of the same
    batch in training. The official tokenizes with `truncation=True` (phi-1.5: 2048 tokens): pass
    `text_max_tokens` to cut the raw text ids the same way (matters only when `max_len` > 2049).
    Labels are the ids with pads ignored (unshifted).
    """
    if max_len < 1:
        raise InputError(f"max_len must be >= 1, got {max_len}")
    if text_max_tokens is not None and (not is_number(text_max_tokens, integer=True) or text_max_tokens < 1):
        raise InputError(f"text_max_tokens must be a positive integer or None, got {text_max_tokens!r}")  # -1 cut one
    ids, labels = [], []
    for t in text_ids:
        t = list(t)[:text_max_tokens] if text_max_tokens is not None else list(t)
        x = [*_with_bos(vocab, t), vocab.eos][:max_len]
        n_pad = max_len - len(x)
        ids.append(x + [vocab.pad] * n_pad)
        labels.append(x + [IGNORE_INDEX] * n_pad)
    return PromptBatch(torch.tensor(ids, dtype=torch.long).reshape(-1, max_len),
                       torch.tensor(labels, dtype=torch.long).reshape(-1, max_len))


# ------------------------------------------------------------------------------------------ understanding


def mmu_sequence(vocab: Vocabulary, image_ids: torch.Tensor, text_ids: TextIds, max_text_len: int) -> PromptBatch:
    """Captioning training rows `[<mmu>, <soi>, image (N), <eoi>, bos, text.., eos, pad..]`, length N + 3 + T.

    The text part is right padded to T (too long: first T-1 ids + eos). Labels ignore the first N + 3 positions
    and the pads; bos, text and eos are supervised.
    """
    b = _check_batch(text_ids, image_ids, "image_ids")
    _check_max_text_len(max_text_len)
    _check_visual_ids(vocab, image_ids, "image_ids")
    rows = []
    for t in text_ids:
        y = [*_with_bos(vocab, t), vocab.eos]
        y = y + [vocab.pad] * (max_text_len - len(y)) if len(y) <= max_text_len else y[:max_text_len - 1] + [vocab.eos]
        rows.append(y)
    text = torch.tensor(rows, dtype=torch.long, device=image_ids.device).reshape(b, max_text_len)
    col = torch.ones(b, 1, dtype=torch.long, device=image_ids.device)
    ids = torch.cat([col * vocab.mmu, col * vocab.soi, image_ids.long(), col * vocab.eoi, text], dim=1)
    labels = ids.clone()
    labels[:, :image_ids.shape[1] + 3] = IGNORE_INDEX
    return PromptBatch(ids, labels.masked_fill(labels == vocab.pad, IGNORE_INDEX))


def mmu_question_text(question: str) -> str:
    """The question text of the VQ understanding prompt (inference_mmu.py, `w_clip_vit=False`)."""
    return "USER: \n" + question + " ASSISTANT:"


def mmu_prompt_ids(vocab: Vocabulary, image_ids: torch.Tensor, question_ids: Sequence[int]) -> torch.Tensor:
    """VQ understanding prompt `[<mmu>, <soi>, image (N), <eoi>, bos] + question ids`, batch 1, [1, L].

    `question_ids` = tokens of `mmu_question_text(question)` (no BOS); the explicit bos matches captioning
    training. Mask: `mmu_mask`.
    """
    image_ids = image_ids.reshape(1, -1) if image_ids.dim() == 1 else image_ids
    if image_ids.dim() != 2 or image_ids.shape[0] != 1:
        raise InputError(f"image_ids must be [N] or [1, N] (the official path is batch 1), got {tuple(image_ids.shape)}")
    _check_visual_ids(vocab, image_ids, "image_ids")
    dev = image_ids.device
    head = torch.tensor([[vocab.mmu, vocab.soi]], dtype=torch.long, device=dev)
    tail = torch.tensor([[vocab.eoi, vocab.bos, *_whole(question_ids)]], dtype=torch.long, device=dev)
    return torch.cat([head, image_ids.long(), tail], dim=1)


def clip_question_text(question: str) -> str:
    """The question text of the CLIP-ViT understanding prompt: the `phi1.5` conversation template with
    `(USER, question), (ASSISTANT, None)`, stripped -> `'USER: {question} ASSISTANT:'`."""
    user = "USER: " + question + " " if question else "USER:"
    return (" " + user + "ASSISTANT:").strip()


def clip_image_slot(system_len: int) -> int:
    """Where the CLIP image embeddings go: they are inserted before position `2 + S` (the `<eoi>` id) of the ids
    of `mmu_clip_prompt_ids`, i.e. `emb = cat(E[:, :2+S], image_embeddings, E[:, 2+S:])`."""
    return 2 + system_len


def mmu_clip_prompt_ids(vocab: Vocabulary, system_ids: Sequence[int], question_ids: Sequence[int]) -> torch.Tensor:
    """CLIP-ViT understanding ids `[<mmu>] + system ids (S) + [<soi>, <eoi>] + question ids`, [1, 1+S+2+Q].

    `system_ids` = tokens of `SYSTEM_PROMPT` (S = 28 with phi-1.5), `question_ids` = tokens of
    `clip_question_text(question)`, both without BOS. The 576 image embeddings are spliced in at
    `clip_image_slot(S)`, giving an embedding sequence of length 1 + S + 1 + 576 + 1 + Q; mask: `mmu_clip_mask`.
    """
    ids = [vocab.mmu, *_whole(system_ids), vocab.soi, vocab.eoi, *_whole(question_ids)]
    return torch.tensor([ids], dtype=torch.long)
