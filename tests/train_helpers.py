"""A tiny synthetic task for trainer tests: image codes are a function of the text, so losses can fall."""
from __future__ import annotations

import torch

from showo.training.batch import cat_parts, local_rows, lm_part, mmu_part, row_generator, t2i_part
from showo.training.config import MixConfig


class SyntheticSource:
    def __init__(self, vocab, max_text_len: int, num_tokens: int, mix: MixConfig, seed: int = 0):
        self.vocab, self.t, self.n, self.mix, self.seed = vocab, max_text_len, num_tokens, mix, seed

    def _row(self, step: int, kind: str, index: int):
        g = row_generator(self.seed, step, kind, index)
        words = torch.randint(97, 101, (int(torch.randint(2, 5, (1,), generator=g)),), generator=g).tolist()
        codes = torch.tensor([[(sum(words) * (j + 1)) % self.vocab.codebook_size for j in range(self.n)]])
        if kind == "t2i":
            return t2i_part(self.vocab, [words], codes, self.t, self.mix, generator=g)[0]
        if kind == "mmu":
            return mmu_part(self.vocab, codes, [words], self.t)
        return lm_part(self.vocab, [words * 3], self.t + self.n + 3)

    def parts(self, step: int, rank: int, world_size: int):
        out = []
        for kind in ("t2i", "lm", "mmu"):
            rows = [self._row(step, kind, i) for i in local_rows(getattr(self.mix, kind), rank, world_size)]
            if rows:
                out.append(cat_parts(rows))
        return out


def tiny_model(seed: int = 0):
    from showo.tiny import tiny_random_pipeline

    pipe = tiny_random_pipeline(seed=seed, hidden=32, layers=2, heads=2, max_seq_length=8, grid=2)
    return pipe.model, pipe.tokenizer.vocab


def tiny_trainer(tmp, steps: int, seed: int = 0, **kw):
    """A Trainer of the tiny model on the synthetic task (t2i 4, lm 2, mmu 2 rows); `kw` goes to TrainConfig."""
    from showo.training.config import OptimConfig, TrainConfig
    from showo.training.trainer import Trainer

    model, vocab = tiny_model(seed)
    mix = MixConfig(t2i=4, lm=2, mmu=2)
    cfg = TrainConfig(output_dir=str(tmp), max_steps=steps, mix=mix, save_every=kw.pop("save_every", steps),
                      optim=OptimConfig(lr=kw.pop("lr", 3e-3), warmup_steps=1), **kw)
    return Trainer(model, SyntheticSource(vocab, 8, 4, mix), cfg)
