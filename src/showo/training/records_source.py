"""Training batches drawn from your own records (`showo.data.records`), for fine-tuning.

Each objective cycles through its records in epochs, each epoch a fresh permutation drawn from (seed, objective,
epoch): row i of objective k at step s is draw `s * rows_k + i` of that cycle. So, as with the world's batches, a
step's rows depend on (seed, step, row) alone: any number of processes builds the same global batch, and a
resumed run reads the same data it would have read. Images are encoded once, up front, by the frozen image
tokenizer.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.records import Record, load_image
from ..errors import ConfigError, InputError
from ..prompting.sequences import mmu_question_text
from ..tokenizers.magvit import MagvitV2
from ..tokenizers.text import TextTokenizer
from .batch import Part, cat_parts, lm_part, local_rows, mmu_answer_part, row_generator, t2i_part
from .config import MixConfig

ENCODE_BATCH = 32


class RecordBatchSource:
    def __init__(self, records: list[Record], tokenizer: TextTokenizer, magvit: MagvitV2, mix: MixConfig,
                 max_text_len: int, num_image_tokens: int, seed: int = 0):
        self.tok, self.vocab, self.mix, self.t, self.seed = tokenizer, tokenizer.vocab, mix, max_text_len, seed
        self.seq_len = max_text_len + num_image_tokens + 3  # the t2i row length; lm rows are cut to it
        if mix.story:
            raise ConfigError("mix.story must be 0: records have no stories (interleaved rows come from the world)")
        if mix.mmu_questions != 1 or mix.mmu_qtype_weights:
            raise ConfigError("mix.mmu_questions and mix.mmu_qtype_weights are for world data; leave them unset")
        self.pools = {kind: [r for r in records if r.kind == kind] for kind in ("t2i", "mmu", "lm")}
        for kind, pool in self.pools.items():
            if getattr(mix, kind) and not pool:
                raise ConfigError(f"mix.{kind} asks for {getattr(mix, kind)} rows a step but the data has no "
                                  f"{kind} records; set mix.{kind}: 0")
        self.text = {r: self._text_ids(r) for r in records}
        self.codes = self._encode(magvit.eval(), [r for r in records if r.image is not None], num_image_tokens)
        self._perms: dict[tuple[str, int], torch.Tensor] = {}

    def _text_ids(self, r: Record) -> tuple[list[int], ...]:
        if r.kind == "t2i":  # markup spelt in a record is refused, as in a prompt: it would be learnt as words
            return (self.tok.encode_text(r.caption, f"{r.where}: 'caption'"),)
        if r.kind == "lm":
            return (self.tok.encode_text(r.text, f"{r.where}: 'text'"),)
        question = self.tok.encode_text(mmu_question_text(r.question), f"{r.where}: 'question'")
        answer = self.tok.encode_text(" " + r.answer, f"{r.where}: 'answer'")
        if len(question) + len(answer) + 2 > self.t:  # bos + question + answer + eos must fit the text region
            raise InputError(f"{r.where}: question and answer take {len(question) + len(answer) + 2} tokens, "
                             f"more than the model's text region ({self.t}): the answer would be cut")
        return question, answer

    @torch.no_grad()
    def _encode(self, vq: MagvitV2, records: list[Record], n: int) -> dict[Path, torch.Tensor]:
        """The codes of each image file (once, however many records name it)."""
        resolution = vq.config.resolution
        device = next(vq.parameters()).device
        named: dict[Path, Record] = {}
        for r in records:
            named.setdefault(r.image, r)  # the first record naming it, for messages
        first = list(named.values())
        out: dict[Path, torch.Tensor] = {}
        for i in range(0, len(first), ENCODE_BATCH):
            chunk = first[i:i + ENCODE_BATCH]
            codes = vq.get_code(torch.stack([load_image(r, resolution) for r in chunk]).to(device)).cpu()
            if codes.shape[1] != n:
                raise ConfigError(f"the image tokenizer gives {codes.shape[1]} codes an image, the model expects {n}")
            out.update((r.image, c) for r, c in zip(chunk, codes))
        return out

    def truncated(self) -> dict[str, int]:
        """How many captions and texts are longer than the model takes (cut, as the official training does)."""
        return {"t2i": sum(len(self.text[r][0]) + 3 > self.t + 1 for r in self.pools["t2i"]),
                "lm": sum(len(self.text[r][0]) + 2 > self.seq_len for r in self.pools["lm"])}

    def _draw(self, kind: str, draw: int) -> Record:
        pool = self.pools[kind]
        epoch, at = divmod(draw, len(pool))
        key = (kind, epoch)
        if key not in self._perms:
            self._perms = {k: v for k, v in self._perms.items() if k[0] != kind}  # keep one epoch per objective
            self._perms[key] = torch.randperm(len(pool), generator=row_generator(self.seed, epoch, kind, -1))
        return pool[int(self._perms[key][at])]

    def _rows(self, kind: str, step: int, rank: int, world_size: int) -> list[tuple[int, Record]]:
        count = getattr(self.mix, kind)
        return [(i, self._draw(kind, step * count + i)) for i in local_rows(count, rank, world_size)]

    def build(self, kind: str, rows: list[tuple[int, Record]], step: int) -> Part:
        """The part of `rows` ((global row index, record) pairs) of objective `kind` at `step`."""
        if kind == "t2i":
            return cat_parts([t2i_part(self.vocab, [self.text[r][0]], self.codes[r.image][None], self.t, self.mix,
                                       row_generator(self.seed, step, "t2i", i))[0] for i, r in rows])
        if kind == "lm":
            return cat_parts([lm_part(self.vocab, [self.text[r][0]], self.seq_len) for _, r in rows])
        return cat_parts([mmu_answer_part(self.vocab, self.codes[r.image][None], *self.text[r], self.t)
                          for _, r in rows])

    def parts(self, step: int, rank: int, world_size: int) -> list[Part]:
        return [self.build(kind, rows, step) for kind in ("t2i", "lm", "mmu")
                if (rows := self._rows(kind, step, rank, world_size))]

    def every_record(self, rows_per_part: int = 16) -> list[Part]:
        """Every record once, in file order, a part per `rows_per_part` of one objective; the same parts at every
        call (masking draws of step 0): a validation set."""
        return [self.build(kind, list(enumerate(pool[i:i + rows_per_part], start=i)), 0)
                for kind, pool in self.pools.items() for i in range(0, len(pool), rows_per_part)]
