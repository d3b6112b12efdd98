"""A procedural world of flat shapes on quiet backgrounds, small enough for a tiny Show-o to learn.

Every object sits in its own cell of a 3x3 layout of the canvas, so position words ("top left", "centre") and
relations ("left of", "above") are never ambiguous; objects never touch and keep clear of the border; object
colours are saturated and far from every (low-saturation) background colour, so `showo.evaluation.parser`
can read an image back exactly. A fixed set of colour-shape pairs never occurs in training scenes
(`heldout_pairs`): `sample_scene(..., heldout=True)` draws scenes that contain at least one of them.

Randomness comes only from the `random.Random` passed in (its stream is stable across Python versions), and
rendering is numpy arithmetic (4x4 supersampled coverage), so a seed pins the scene and the image bytes.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..fields import check_field_types

Colour = tuple[int, int, int]

# Saturated object colours: pairwise RGB distance >= 82, distance to every background >= 104.
COLOURS: dict[str, Colour] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "blue": (40, 90, 230),
    "purple": (150, 60, 190),
}
# Low-saturation backgrounds (pairwise distance >= 66, enough to name them from the border pixels).
BACKGROUNDS: dict[str, Colour] = {
    "light gray": (175, 175, 175),
    "dark gray": (55, 55, 55),
    "beige": (232, 214, 176),
    "slate": (70, 84, 112),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
SIZES: dict[str, float] = {"small": 0.22, "large": 0.34}  # side of the bounding square / image size
# Each colour and each shape is held out in at most one pair, so every word is still seen in training.
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("purple", "triangle"), ("orange", "circle"), ("green", "diamond"), ("blue", "cross"))
COLUMNS: tuple[str, ...] = ("left", "centre", "right")
ROWS: tuple[str, ...] = ("top", "middle", "bottom")
CROSS_ARM = 0.38  # arm width of the cross / its extent: the notches stay >= 4 px deep at 14 px


def _inside_circle(dx: np.ndarray, dy: np.ndarray, h: float) -> np.ndarray:
    return dx * dx + dy * dy <= h * h


def _inside_square(dx: np.ndarray, dy: np.ndarray, h: float) -> np.ndarray:
    return np.maximum(np.abs(dx), np.abs(dy)) <= h


def _inside_triangle(dx: np.ndarray, dy: np.ndarray, h: float) -> np.ndarray:
    """Apex at the top centre, base along the bottom edge of the bounding square."""
    return (dy <= h) & (np.abs(dx) <= (dy + h) / 2)


def _inside_diamond(dx: np.ndarray, dy: np.ndarray, h: float) -> np.ndarray:
    return np.abs(dx) + np.abs(dy) <= h


def _inside_cross(dx: np.ndarray, dy: np.ndarray, h: float) -> np.ndarray:
    ax, ay = np.abs(dx), np.abs(dy)
    return (np.maximum(ax, ay) <= h) & (np.minimum(ax, ay) <= CROSS_ARM * h)


SHAPE_TESTS: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "circle": _inside_circle, "square": _inside_square, "triangle": _inside_triangle,
    "diamond": _inside_diamond, "cross": _inside_cross,
}


@dataclass
class WorldConfig:
    """Everything that defines the world; plain fields so it round-trips through YAML/JSON."""

    image_size: int = 64
    colours: dict[str, Colour] = field(default_factory=lambda: dict(COLOURS))
    backgrounds: dict[str, Colour] = field(default_factory=lambda: dict(BACKGROUNDS))
    shapes: tuple[str, ...] = SHAPES
    sizes: dict[str, float] = field(default_factory=lambda: dict(SIZES))
    heldout_pairs: tuple[tuple[str, str], ...] = HELDOUT_PAIRS
    min_objects: int = 1
    max_objects: int = 4
    jitter: float = 0.05  # max offset of an object centre from its cell centre, / image size
    gap: float = 0.03  # min gap between two bounding boxes, / image size
    border: float = 0.05  # min gap between a bounding box and the canvas edge, / image size
    gradient: int = 12  # max per-channel offset of the vertical background gradient (top +g, bottom -g)
    eval_fraction: float = 0.1  # share of object layouts reserved for the "eval" split

    def __post_init__(self) -> None:
        check_field_types(WorldConfig, vars(self), "world config")
        self.colours = {k: tuple(int(c) for c in v) for k, v in self.colours.items()}
        self.backgrounds = {k: tuple(int(c) for c in v) for k, v in self.backgrounds.items()}
        self.shapes = tuple(self.shapes)
        self.sizes = dict(sorted(((k, float(v)) for k, v in self.sizes.items()), key=lambda kv: kv[1]))
        self.heldout_pairs = tuple((str(c), str(s)) for c, s in self.heldout_pairs)
        if self.image_size < 24:
            raise ConfigError(f"image_size must be >= 24, got {self.image_size}")
        if unknown := [s for s in self.shapes if s not in SHAPE_TESTS]:
            raise ConfigError(f"unknown shapes {unknown}; known: {sorted(SHAPE_TESTS)}")
        for c, s in self.heldout_pairs:
            if c not in self.colours or s not in self.shapes:
                raise ConfigError(f"held-out pair ({c}, {s}) is not a colour-shape pair of this world")
        if not self.train_pairs:
            raise ConfigError("every colour-shape pair is held out")
        if not 1 <= self.min_objects <= self.max_objects <= 9:
            raise ConfigError(f"need 1 <= min_objects <= max_objects <= 9, got {self.min_objects}, {self.max_objects}")
        if not self.colours or not self.backgrounds or not self.sizes:
            raise ConfigError("colours, backgrounds and sizes must be non-empty")
        if not 0 < self.eval_fraction < 1:  # both splits need layouts, or sampling one of them never ends
            raise ConfigError(f"eval_fraction must be in (0, 1), got {self.eval_fraction}")
        for name in ("jitter", "gap", "border", "gradient"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not all(0 < v <= 1 for v in self.sizes.values()):
            raise ConfigError(f"sizes must be fractions of the image in (0, 1], got {self.sizes}")

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every (colour, shape) pair."""
        return [(c, s) for c in self.colours for s in self.shapes]

    @property
    def train_pairs(self) -> list[tuple[str, str]]:
        """The pairs training may show (everything but `heldout_pairs`)."""
        held = set(self.heldout_pairs)
        return [p for p in self.pairs if p not in held]

    def extent(self, size: str) -> int:
        """Side in pixels of the bounding square of an object of this size name (even, so edges land on pixels)."""
        return max(4, 2 * round(self.sizes[size] * self.image_size / 2))

    def px(self, fraction: float) -> int:
        """A length given as a fraction of the image size, in whole pixels."""
        return max(1, round(fraction * self.image_size))


@dataclass(frozen=True)
class SceneObject:
    """One object: shape, colour and size names, centre (pixels, x right / y down) and its 3x3 layout cell."""

    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    extent: float  # side of the bounding square in pixels
    col: int  # 0 left, 1 centre, 2 right
    row: int  # 0 top, 1 middle, 2 bottom

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in continuous pixel coordinates (pixel j covers [j, j + 1))."""
        h = self.extent / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)


@dataclass(frozen=True)
class Scene:
    """A background (name + signed vertical gradient) and objects in reading order (row, then column)."""

    background: str
    objects: tuple[SceneObject, ...]
    gradient: int = 0
    image_size: int = 64

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        return cls(background=data["background"], gradient=int(data.get("gradient", 0)),
                   image_size=int(data.get("image_size", 64)),
                   objects=tuple(SceneObject(**o) for o in data["objects"]))


def cell_of(cx: float, cy: float, image_size: int) -> tuple[int, int]:
    """(col, row) of the 3x3 layout cell that contains a point."""
    third = image_size / 3
    return min(2, max(0, int(cx // third))), min(2, max(0, int(cy // third)))


def position_name(obj: SceneObject) -> str:
    """'top left', 'top', 'top right', 'left', 'centre', 'right', 'bottom left', 'bottom', 'bottom right'."""
    if obj.row == 1:
        return COLUMNS[obj.col] if obj.col != 1 else "centre"
    if obj.col == 1:
        return ROWS[obj.row]
    return f"{ROWS[obj.row]} {COLUMNS[obj.col]}"


POSITIONS: tuple[str, ...] = tuple(
    position_name(SceneObject("circle", "red", "small", 0, 0, 0, c, r)) for r in range(3) for c in range(3))


def relation(a: SceneObject, b: SceneObject) -> str | None:
    """Where `a` is relative to `b`: 'left of', 'right of', 'above', 'below', or None when not clear-cut.

    Only objects sharing a row (or a column) are related; diagonal neighbours would be both left of and above.
    """
    if a.row == b.row and a.col != b.col:
        return "left of" if a.col < b.col else "right of"
    if a.col == b.col and a.row != b.row:
        return "above" if a.row < b.row else "below"
    return None


def scene_key(scene: Scene) -> str:
    """The scene's content up to background and jitter: which object (colour, shape, size) is in which cell."""
    return "|".join(sorted(f"{o.col}{o.row}:{o.colour}:{o.shape}:{o.size}" for o in scene.objects))


def layout_split(scene: Scene, config: WorldConfig) -> str:
    """'eval' for the hashed `eval_fraction` of scene keys, else 'train': the two splits never share a scene."""
    digest = hashlib.sha256(scene_key(scene).encode()).digest()
    return "eval" if int.from_bytes(digest[:8], "big") / 2 ** 64 < config.eval_fraction else "train"


def has_heldout(scene: Scene, config: WorldConfig) -> bool:
    held = set(config.heldout_pairs)
    return any((o.colour, o.shape) in held for o in scene.objects)


def admissible(scene: Scene, config: WorldConfig, heldout: bool = False, split: str | None = "train") -> bool:
    """Whether a scene may be drawn in a mode: training scenes never hold a held-out pair; `split` (if given)
    restricts the layout to that split's share; heldout scenes hold at least one held-out pair."""
    if has_heldout(scene, config) != heldout:
        return False
    return split is None or layout_split(scene, config) == split


def place(rng: random.Random, config: WorldConfig, col: int, row: int, extent: int) -> tuple[int, int]:
    """A jittered centre in a cell, pulled inwards so the object keeps `border` pixels from the edge."""
    third, j = config.image_size / 3, config.jitter * config.image_size
    lo, hi = config.px(config.border) + extent // 2, config.image_size - config.px(config.border) - extent // 2

    def coord(cell: int) -> int:
        return min(hi, max(lo, round((cell + 0.5) * third + rng.uniform(-j, j))))

    return coord(col), coord(row)


def fits(obj: SceneObject, others: list[SceneObject] | tuple[SceneObject, ...], config: WorldConfig) -> bool:
    """True when `obj` keeps at least `gap` pixels from every other object (boxes separated on some axis)."""
    gap = config.px(config.gap)
    x0, y0, x1, y1 = obj.bbox
    for o in others:
        a0, b0, a1, b1 = o.bbox
        if not (x1 + gap <= a0 or a1 + gap <= x0 or y1 + gap <= b0 or b1 + gap <= y0):
            return False
    return True


def make_object(config: WorldConfig, shape: str, colour: str, size: str, col: int, row: int,
                rng: random.Random) -> SceneObject:
    extent = config.extent(size)
    cx, cy = place(rng, config, col, row, extent)
    return SceneObject(shape, colour, size, float(cx), float(cy), float(extent), col, row)


def ordered(objects) -> tuple[SceneObject, ...]:
    """Objects in reading order: by row, then column."""
    return tuple(sorted(objects, key=lambda o: (o.row, o.col)))


def _draw(rng: random.Random, config: WorldConfig, heldout: bool, n: int) -> Scene | None:
    cells = rng.sample(range(9), n)
    pool = config.pairs if heldout else config.train_pairs
    pairs = [rng.choice(pool) for _ in range(n)]
    if heldout:
        pairs[0] = rng.choice(config.heldout_pairs)
    sizes = [rng.choice(list(config.sizes)) for _ in range(n)]
    for _ in range(20):
        objects: list[SceneObject] = []
        for (colour, shape), size, cell in zip(pairs, sizes, cells):
            obj = make_object(config, shape, colour, size, cell % 3, cell // 3, rng)
            if not fits(obj, objects, config):
                break
            objects.append(obj)
        else:
            background = rng.choice(list(config.backgrounds))
            gradient = rng.randint(-config.gradient, config.gradient)
            return Scene(background, ordered(objects), gradient, config.image_size)
    return None


def sample_scene(rng: random.Random, config: WorldConfig, heldout: bool = False,
                 split: str | None = "train") -> Scene:
    """A random scene of 1..max_objects objects in distinct cells (rejection-sampled until they fit).

    heldout=False: only training colour-shape pairs; heldout=True: at least one held-out pair. `split`
    ('train', 'eval' or None for either) picks which share of object layouts the scene comes from.
    """
    if split not in ("train", "eval", None):
        raise ConfigError(f"split must be 'train', 'eval' or None, got {split!r}")
    n = rng.randint(config.min_objects, config.max_objects)  # drawn once, so counts stay uniform
    for _ in range(10_000):
        scene = _draw(rng, config, heldout, n)
        if scene is not None and admissible(scene, config, heldout, split):
            return scene
    raise ConfigError("could not place the objects: sizes, gap or border too large for the canvas")


def coverage(shape: str, cx: float, cy: float, extent: float, x0: int, y0: int, width: int, height: int,
             supersample: int = 4) -> np.ndarray:
    """Fraction [height, width] of each pixel of the window at (x0, y0) covered by the shape (4x4 samples)."""
    offsets = (np.arange(supersample) + 0.5) / supersample
    xs = (np.arange(x0, x0 + width)[:, None] + offsets[None, :]).reshape(-1) - cx
    ys = (np.arange(y0, y0 + height)[:, None] + offsets[None, :]).reshape(-1) - cy
    inside = SHAPE_TESTS[shape](xs[None, :], ys[:, None], extent / 2)
    return inside.reshape(height, supersample, width, supersample).mean(axis=(1, 3))


def background_array(scene: Scene, config: WorldConfig) -> np.ndarray:
    """float [S, S, 3] of the background alone: base colour plus a linear vertical ramp (+g top, -g bottom)."""
    size = config.image_size
    ramp = scene.gradient * (1 - 2 * (np.arange(size) + 0.5) / size)
    base = np.asarray(config.backgrounds[scene.background], dtype=np.float64)
    return np.broadcast_to(base[None, None, :] + ramp[:, None, None], (size, size, 3)).copy()


def render(scene: Scene, config: WorldConfig) -> Image.Image:
    """RGB image of a scene: flat colours inside objects, anti-aliased edges (area coverage)."""
    if scene.image_size != config.image_size:
        raise ConfigError(f"scene was drawn for {scene.image_size} px, config renders {config.image_size} px")
    image = background_array(scene, config)
    size = config.image_size
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.bbox
        left, top = max(0, int(np.floor(x0)) - 1), max(0, int(np.floor(y0)) - 1)
        right, bottom = min(size, int(np.ceil(x1)) + 1), min(size, int(np.ceil(y1)) + 1)
        alpha = coverage(obj.shape, obj.cx, obj.cy, obj.extent, left, top, right - left, bottom - top)[..., None]
        colour = np.asarray(config.colours[obj.colour], dtype=np.float64)
        window = image[top:bottom, left:right]
        image[top:bottom, left:right] = window * (1 - alpha) + colour * alpha
    return Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8), "RGB")
