"""Training batches drawn from the procedural world (`showo.data`): the recipe of the embedded model.

Row i of objective k at step s is world sample `seed * 10**12 + s * rows_k + i` of the train split: it depends on
(seed, step, row) only, so any number of processes builds the same global batch and a resumed run sees the same data.
Understanding rows supervise the answer only (the official captioning data also supervised the question
prefix); the question uses the official inference prompt `USER: \\n{question} ASSISTANT:` with a bos.
"""
from __future__ import annotations

import random

import torch

from ..data.dataset import WorldStream
from ..data.language import captions
from ..data.world import WorldConfig
from ..errors import ConfigError
from ..prompting.interleaved import InterleavedRow, interleaved_mask, interleaved_sequence
from ..prompting.masks import causal_mask
from ..prompting.sequences import IGNORE_INDEX, mmu_question_text
from ..sampling.schedules import get_mask_schedule
from ..tokenizers.magvit import MagvitV2
from ..tokenizers.text import TextTokenizer
from .batch import (Part, cat_parts, lm_part, local_rows, mmu_answer_part, mmu_branch_part, round_up,
                    row_generator, shift_left, t2i_part)
from .config import MixConfig
from .masking import mask_interleaved_images


SCENES_PER_SEED = 10**12  # far more than any run reads: runs with different seeds never share a scene


class WorldBatchSource:
    def __init__(self, tokenizer: TextTokenizer, magvit: MagvitV2, mix: MixConfig, max_text_len: int,
                 world: WorldConfig | None = None, seed: int = 0):
        self.tok, self.vq, self.mix, self.t, self.seed = tokenizer, magvit.eval(), mix, max_text_len, seed
        self.vocab = tokenizer.vocab
        world = world or WorldConfig()
        if world.image_size != magvit.config.resolution:  # the model's image-token count follows the tokenizer's
            raise ConfigError(f"the world's images are {world.image_size} px but the image tokenizer's resolution "
                              f"is {magvit.config.resolution}")
        self.streams = {k: WorldStream.for_split("train", world, kind=k) for k in ("t2i", "lm", "story")}
        self.streams["mmu"] = WorldStream.for_split("train", world, kind="mmu", caption_fraction=mix.caption_fraction,
                                                   qtype_weights=mix.mmu_qtype_weights)
        side = world.image_size // magvit.config.downsample_factor
        self.n = side * side
        self.seq_len = max_text_len + self.n + 3

    @torch.no_grad()
    def _codes(self, images: torch.Tensor) -> torch.Tensor:
        return self.vq.get_code(images)

    def _samples(self, kind: str, step: int, rank: int, world_size: int) -> list[tuple[int, dict]]:
        """The scenes of a step; the seed picks a disjoint stretch of the stream (seed 0 starts at its beginning)."""
        count = getattr(self.mix, kind)
        start = self.seed * SCENES_PER_SEED + step * count
        return [(i, self.streams[kind].sample(start + i)) for i in local_rows(count, rank, world_size)]

    def _t2i(self, step, rank, world_size) -> list[Part]:
        rows = self._samples("t2i", step, rank, world_size)
        if not rows:
            return []
        codes = self._codes(torch.stack([s["image"] for _, s in rows]))
        return [cat_parts([t2i_part(self.vocab, [self.tok.encode(s["prompt"])], codes[j:j + 1], self.t, self.mix,
                                    row_generator(self.seed, step, "t2i", i))[0]
                           for j, (i, s) in enumerate(rows)])]

    def _qa_ids(self, question: str, answer: str, qtype: str, index: int, seed: int) -> tuple[list[int], list[int]]:
        """Token ids of a question about the scene of mmu sample `index` (the official prompt) and of its answer; a
        caption answer is always the complete description (the stream also gives partial ones)."""
        if qtype == "caption":
            answer = captions(self.streams["mmu"].scene(index), random.Random(seed))[0]
        return self.tok.encode(mmu_question_text(question)), self.tok.encode(" " + answer)

    def _mmu(self, step, rank, world_size) -> list[Part]:
        """One question per image, or `mix.mmu_questions` as branches after the shared image prefix
        (`mmu_branch_part`: each branch computes exactly the one-question row it replaces)."""
        rows = self._samples("mmu", step, rank, world_size)
        if not rows:
            return []
        codes = self._codes(torch.stack([s["image"] for _, s in rows]))
        if self.mix.mmu_questions > 1:
            asked = [self.streams["mmu"].questions(s["index"], self.mix.mmu_questions) for _, s in rows]
            qa = [[self._qa_ids(*q, s["index"], (step * 7919 + i) * 64 + b) for b, q in enumerate(qs)]
                  for (i, s), qs in zip(rows, asked)]
            return [mmu_branch_part(self.vocab, codes, qa, self.t)]
        return [cat_parts([mmu_answer_part(self.vocab, codes[j:j + 1], *self._qa_ids(
            s["question"], s["answer"], s["qtype"], s["index"], step * 7919 + i), self.t)
            for j, (i, s) in enumerate(rows)])]

    def _lm(self, step, rank, world_size) -> list[Part]:
        rows = self._samples("lm", step, rank, world_size)
        return [cat_parts([lm_part(self.vocab, [self.tok.encode(s["text"])], self.seq_len) for _, s in rows])] if rows else []

    def _story_row(self, step: int, index: int, sample: dict) -> InterleavedRow:
        """A story's interleaved row; with probability `mix.story_dropout_prob` its null instead: one of its
        keyframes alone, `[<lvg>, bos, <soi>, codes, <eoi>, eos]` without text targets. That is the context
        guided story generation contrasts with (`pipelines.interleaved`), learnt as t2i learns its null prompt."""
        codes = self._codes(sample["images"])
        if self.mix.story_dropout_prob > 0:
            g = row_generator(self.seed, step, "story_null", index)
            if float(torch.rand((), generator=g)) < self.mix.story_dropout_prob:
                row = interleaved_sequence(self.vocab, [codes[int(torch.randint(len(codes), (), generator=g))]])
                return row._replace(text_labels=torch.full_like(row.text_labels, IGNORE_INDEX))
        segments = []
        for k, sentence in enumerate(sample["sentences"]):
            segments += [self.tok.encode((" " if k else "") + sentence), codes[k]]
        return interleaved_sequence(self.vocab, segments)

    def _story(self, step, rank, world_size) -> list[Part]:
        """Interleaved rows, right padded to a common length (a multiple of 32): pads come after the content,
        so causal attention keeps them invisible, and they are never targets."""
        rows = self._samples("story", step, rank, world_size)
        if not rows:
            return []
        schedule = get_mask_schedule(self.mix.mask_schedule)
        built = []
        for i, s in rows:
            row = self._story_row(step, i, s)
            ids, here = mask_interleaved_images(row, self.vocab.mask, schedule, self.n, self.mix.min_masking_rate,
                                                row_generator(self.seed, step, "story", i))
            built.append((row, ids, here))
        length = round_up(max(ids.shape[0] for _, ids, _ in built), 32)
        parts = []
        for row, ids, here in built:
            n, pad = ids.shape[0], length - ids.shape[0]
            mask = causal_mask(length)
            mask[:n, :n] = interleaved_mask(row.ids, self.vocab)
            fill = lambda t, v: torch.cat([t, torch.full((pad,), v, dtype=t.dtype)])[None]  # noqa: E731
            parts.append(Part("story", fill(ids, self.vocab.pad), mask[None, None], here=fill(here, IGNORE_INDEX),
                              next=shift_left(fill(row.text_labels, IGNORE_INDEX))))
        return [cat_parts(parts)]

    def parts(self, step: int, rank: int, world_size: int) -> list[Part]:
        return [*self._t2i(step, rank, world_size), *self._lm(step, rank, world_size),
                *self._mmu(step, rank, world_size), *self._story(step, rank, world_size)]
