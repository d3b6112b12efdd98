"""The evaluation cases: which scenes, prompts and questions each task is scored on, and the shared types.

Everything here is world logic only (no model), so tests can build the same cases a run scores and check
oracles against them. Cases come from `WorldStream(task_seed(seed, task), world, kind, split)`: the split name
is hashed into every sample's random stream, so no evaluation scene shares a stream with training (which
uses split 'train'), and 'eval' layouts are disjoint from 'train' ones (`world.layout_split`). Each task gets
its own stream seed, so tasks do not score the same scenes. Case `i` depends only on (seed, task, split, i).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from PIL import Image

from ..data.dataset import WorldStream
from ..data.language import qa_pairs, story, t2i_prompt
from ..data.world import (Scene, SceneObject, WorldConfig, admissible, cell_of, has_heldout, ordered, render,
                          sample_scene)

SPLIT_KEYS: dict[str, str] = {"seen": "eval", "heldout": "heldout"}  # JSON key -> world split
MAX_DRAWS = 200  # stream indices tried per requested case before giving up (cases are rejection-sampled)


@dataclass
class SampleRecord:
    """One scored sample, for the report: a row of images with labels, the text in and out, the verdict."""

    index: int
    images: list[Image.Image]
    labels: list[str]
    prompt: str
    output: str
    correct: bool
    details: dict = field(default_factory=dict)


@dataclass
class TaskResult:
    """Metrics of one task on one split (every value a number, a bool fraction, or None when undefined)."""

    task: str
    split: str
    metrics: dict[str, float | int | None]
    records: list[SampleRecord]


def mean(values) -> float | None:
    """The mean of numbers/bools (None entries skipped); None when nothing is left (a metric undefined here)."""
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


def task_seed(seed: int, task: str) -> int:
    """The world-stream seed of a task in a run with `seed`."""
    return int.from_bytes(hashlib.sha256(f"showo-eval/{seed}/{task}".encode()).digest()[:8], "big") >> 1


def call_seed(seed: int, task: str, split: str, index: int) -> int:
    """The generation seed of one pipeline call (31 bits)."""
    key = f"showo-eval/{seed}/{task}/{split}/{index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") >> 1


def stream(seed: int, task: str, world: WorldConfig, split: str, kind: str = "t2i") -> WorldStream:
    return WorldStream(task_seed(seed, task), world, kind, split)


def to_world_size(image: Image.Image, world: WorldConfig) -> Image.Image:
    """A generated image at the world's native size (bicubic), the size the scene parser is calibrated for."""
    side = world.image_size
    return image if image.size == (side, side) else image.resize((side, side), Image.BICUBIC)


def _draws(s: WorldStream, samples: int):
    """(index, rng after the scene draw, scene) of consecutive stream samples, at most MAX_DRAWS per case."""
    for index in range(MAX_DRAWS * max(1, samples)):
        rng = s.rng(index)
        yield index, rng, sample_scene(rng, s.config, s.heldout, s.layout)


@dataclass
class SceneCase:
    """A scene with a prompt (t2i, caption, tokenizer) or its questions (VQA: (question, answer, qtype))."""

    index: int
    scene: Scene
    prompt: str
    questions: list[tuple[str, str, str]] = field(default_factory=list)


def scene_cases(world: WorldConfig, split: str, seed: int, samples: int, task: str) -> list[SceneCase]:
    """The first `samples` scenes of the task's stream with their t2i prompt and their QA pairs."""
    s = stream(seed, task, world, split)
    out = []
    for index, rng, scene in _draws(s, samples):
        if len(out) == samples:
            break
        prompt = t2i_prompt(scene, rng)
        out.append(SceneCase(index, scene, prompt, qa_pairs(scene, rng, world, s.heldout)))
    return out


@dataclass
class InpaintCase:
    """Replace `scene.objects[target]` by `new` (same place and size, another colour-shape pair): `edited` is
    the scene the prompt describes; `box` the token-aligned mask rectangle (world pixels, x1/y1 exclusive)."""

    index: int
    scene: Scene
    edited: Scene
    target: int
    new: SceneObject
    prompt: str
    box: tuple[int, int, int, int]


def token_box(obj: SceneObject, world: WorldConfig, grid: int) -> tuple[int, int, int, int]:
    """The object's bounding box grown to whole tokens of a `grid`-sided code grid, in world pixels."""
    cell = world.image_size / grid
    x0, y0, x1, y1 = obj.bbox
    lo = lambda v: int(max(0, v) // cell)  # noqa: E731
    hi = lambda v: min(grid, -int(-min(world.image_size, v) // cell))  # noqa: E731
    return (round(lo(x0) * cell), round(lo(y0) * cell), round(hi(x1) * cell), round(hi(y1) * cell))


def inpaint_cases(world: WorldConfig, split: str, seed: int, samples: int, grid: int) -> list[InpaintCase]:
    """Scenes with one object replaced. Seen: the new pair is a training pair and the edited scene keeps to the
    'eval' layouts; held-out: the new pair is a held-out pair (a combination never seen in training)."""
    s = stream(seed, "inpaint", world, split)
    pool = world.heldout_pairs if s.heldout else world.train_pairs
    out = []
    for index, rng, scene in _draws(s, samples):
        if len(out) == samples:
            break
        options = [(k, c, sh) for k, o in enumerate(scene.objects) for c, sh in pool if (c, sh) != (o.colour, o.shape)]
        rng.shuffle(options)
        for k, colour, shape in options:
            new = replace(scene.objects[k], colour=colour, shape=shape)
            edited = Scene(scene.background, ordered([o for j, o in enumerate(scene.objects) if j != k] + [new]),
                           scene.gradient, scene.image_size)
            if admissible(edited, world, s.heldout, s.layout):
                out.append(InpaintCase(index, scene, edited, k, new, t2i_prompt(edited, rng),
                                       token_box(new, world, grid)))
                break
    return out


@dataclass
class ExtrapolateCase:
    """Extrapolation to the right by `new_tokens` token columns. `window` is the square scene the model's last
    window should show (objects in its left and right columns only); `source` is the input image's scene:
    the window's left-column objects shifted right by `shift` world pixels (so its right part is the
    window's left part); the window's right-column objects (`fresh`) must appear in the new strip."""

    index: int
    window: Scene
    source: Scene
    fresh: Scene
    prompt: str
    shift: float
    new_tokens: int


def extrapolate_cases(world: WorldConfig, split: str, seed: int, samples: int, grid: int) -> list[ExtrapolateCase]:
    """Window scenes built from stream scenes by dropping their centre column; at least one object must be
    new (right column), and the window must obey the split's rules (layout share; held-out: a held-out pair,
    and among the new objects)."""
    s = stream(seed, "extrapolate", world, split)
    new_tokens = grid // 2
    shift = world.image_size * new_tokens / grid
    out = []
    for index, rng, scene in _draws(s, samples):
        if len(out) == samples:
            break
        kept = [o for o in scene.objects if o.col != 1]
        if not any(o.col == 2 for o in kept):
            continue
        window = Scene(scene.background, ordered(kept), scene.gradient, scene.image_size)
        if not admissible(window, world, s.heldout, s.layout):
            continue
        moved = [replace(o, cx=o.cx + shift, col=cell_of(o.cx + shift, o.cy, world.image_size)[0])
                 for o in kept if o.col == 0]
        source = Scene(scene.background, ordered(moved), scene.gradient, scene.image_size)
        fresh = Scene(scene.background, ordered([o for o in kept if o.col == 2]), scene.gradient, scene.image_size)
        if s.heldout and not has_heldout(fresh, world):  # held-out: the never-seen pair must be drawn new
            continue
        out.append(ExtrapolateCase(index, window, source, fresh, t2i_prompt(window, rng), shift, new_tokens))
    return out


@dataclass
class StoryCase:
    """A story: keyframe scenes and their sentences."""

    index: int
    scenes: list[Scene]
    sentences: list[str]


def story_cases(world: WorldConfig, split: str, seed: int, samples: int) -> list[StoryCase]:
    s = stream(seed, "mixed", world, split, kind="story")
    out = []
    for index in range(samples):
        frames = story(s.rng(index), world, s.heldout, s.layout)
        out.append(StoryCase(index, [f[0] for f in frames], [f[1] for f in frames]))
    return out


def world_image(scene: Scene, world: WorldConfig) -> Image.Image:
    """The rendered scene at the world's native size (the pipeline resizes inputs to its own resolution)."""
    return render(scene, world)
