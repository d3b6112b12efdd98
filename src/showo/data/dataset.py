"""Infinite seeded sample streams of the world, for training and evaluation.

Sample `i` of a stream depends only on (seed, split, kind, i), so a trainer resumes from a position and ranks
or DataLoader workers take disjoint indices. Seed convention: `split_seed(split)` hashes the split name;
since the split name is also hashed into every sample's seed, two splits never share a random stream even
with the same seed. On top of that, 'train' and 'eval' scenes come from disjoint shares of object layouts
(`world.layout_split`), and 'heldout' scenes always contain a colour-shape pair that training never shows.
"""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import ConfigError
from .language import captions, check_qtype_weights, lm_text, qa_pairs, story, t2i_prompt
from .world import Scene, WorldConfig, render, sample_scene

KINDS: tuple[str, ...] = ("t2i", "mmu", "lm", "story")
SPLITS: tuple[str, ...] = ("train", "eval", "heldout")
CAPTION_QUESTIONS: tuple[str, ...] = ("Describe the image.", "What is in the image?", "Describe this picture.")


def split_seed(split: str) -> int:
    """The conventional seed of a split name: 63 bits of sha256('showo-world/<split>')."""
    return int.from_bytes(hashlib.sha256(f"showo-world/{split}".encode()).digest()[:8], "big") >> 1


def image_tensor(image: Image.Image) -> torch.Tensor:
    """float [3, H, W] in [-1, 1] of an RGB image (the range the image tokenizer expects)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).div(127.5).sub(1.0).contiguous()


class WorldStream(IterableDataset):
    """Samples of one kind from one split, indexed from 0 without end.

    kind 't2i': {'image' [3,H,W] in [-1,1], 'prompt'}; 'mmu': {'image', 'question', 'answer', 'qtype'}
    (qtype 'caption' for a `caption_fraction` share, else a QA pair with its qtype drawn uniformly, or in
    proportion to `qtype_weights`, a weight per qtype, 1 for those not named);
    'lm': {'text'}; 'story': {'images' [K,3,H,W], 'sentences' (K strings)}. Every sample has 'index'.
    Iterating yields positions `position, position+1, ...` of this rank's shard (global index
    `position * world_size + rank`), split further across DataLoader workers; without workers the position
    advances as samples are yielded, so `state_dict()` resumes exactly.
    """

    def __init__(self, seed: int, config: WorldConfig | None = None, kind: str = "t2i", split: str = "train",
                 rank: int = 0, world_size: int = 1, caption_fraction: float = 0.25, position: int = 0,
                 qtype_weights: dict[str, float] | None = None):
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.seed, self.config, self.kind, self.split = int(seed), config or WorldConfig(), kind, split
        self.rank, self.world_size, self.caption_fraction, self.position = rank, world_size, caption_fraction, position
        self.heldout = split == "heldout"
        if self.heldout and not self.config.heldout_pairs:
            raise ConfigError("this world holds no colour-shape pair out (heldout_pairs is empty): it has no "
                              "'heldout' split")
        self.layout = None if self.heldout else split
        self.qtype_weights = check_qtype_weights(qtype_weights or {})

    @classmethod
    def for_split(cls, split: str, config: WorldConfig | None = None, kind: str = "t2i", **kwargs) -> WorldStream:
        """The stream of a split under the seed convention (`split_seed(split)`)."""
        return cls(split_seed(split), config, kind, split, **kwargs)

    def rng(self, index: int) -> random.Random:
        """The random stream of one sample."""
        key = f"{self.seed}/{self.split}/{self.kind}/{index}".encode()
        return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))

    def scene(self, index: int) -> Scene:
        """The scene behind sample `index` of a 't2i' or 'mmu' stream (it is the first thing the sample draws)."""
        return sample_scene(self.rng(index), self.config, self.heldout, self.layout)

    def sample(self, index: int) -> dict:
        """Sample `index` (any non-negative int; deterministic)."""
        rng, config = self.rng(index), self.config
        if self.kind == "lm":
            return {"text": lm_text(rng, config, self.heldout, self.layout), "index": index}
        if self.kind == "story":
            frames = story(rng, config, self.heldout, self.layout)
            images = torch.stack([image_tensor(render(scene, config)) for scene, _ in frames])
            return {"images": images, "sentences": [sentence for _, sentence in frames], "index": index}
        scene = sample_scene(rng, config, self.heldout, self.layout)
        image = image_tensor(render(scene, config))
        if self.kind == "t2i":
            return {"image": image, "prompt": t2i_prompt(scene, rng), "index": index}
        question, answer, qtype = self._question(scene, rng)
        return {"image": image, "question": question, "answer": answer, "qtype": qtype, "index": index}

    def _question(self, scene: Scene, rng: random.Random) -> tuple[str, str, str]:
        """(question, answer, qtype) about a scene: a caption request for a `caption_fraction` share, else a QA
        pair of a uniformly drawn qtype."""
        if rng.random() < self.caption_fraction:
            texts = captions(scene, rng)
            answer = texts[0] if rng.random() < 0.5 else rng.choice(texts)
            return rng.choice(CAPTION_QUESTIONS), answer, "caption"
        pairs = qa_pairs(scene, rng, self.config, self.heldout)
        qtypes = sorted({t for _, _, t in pairs})
        if self.qtype_weights:
            qtype = rng.choices(qtypes, [self.qtype_weights.get(t, 1.0) for t in qtypes])[0]
        else:  # the draw every recipe before `qtype_weights` made: keeps their batches identical
            qtype = rng.choice(qtypes)
        question, answer, _ = rng.choice([p for p in pairs if p[2] == qtype])
        return question, answer, qtype

    def questions(self, index: int, count: int) -> list[tuple[str, str, str]]:
        """`count` (question, answer, qtype) about the scene of 'mmu' sample `index`, the first the sample's own,
        each drawn as that one is (several questions about one image: `mix.mmu_questions`)."""
        if self.kind != "mmu":
            raise ConfigError(f"questions come from an 'mmu' stream, not {self.kind!r}")
        rng = self.rng(index)
        scene = sample_scene(rng, self.config, self.heldout, self.layout)
        return [self._question(scene, rng) for _ in range(count)]

    def global_index(self, position: int) -> int:
        """The sample index of a position in this rank's shard."""
        return position * self.world_size + self.rank

    def __iter__(self):
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        position = self.position
        while True:
            if position % workers == worker:
                sample = self.sample(self.global_index(position))
                if info is None:
                    self.position = position + 1
                yield sample
            position += 1

    def state_dict(self) -> dict:
        """Where the stream stands. With W DataLoader workers the consumed positions form a prefix after any
        multiple of W batches: resume with position = samples consumed by this rank."""
        return {"seed": self.seed, "split": self.split, "kind": self.kind, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        if (state["seed"], state["split"], state["kind"]) != (self.seed, self.split, self.kind):
            raise ConfigError(f"state is for stream {state['seed']}/{state['split']}/{state['kind']}, "
                              f"not {self.seed}/{self.split}/{self.kind}")
        self.position = int(state["position"])
