"""Text-guided extrapolation (outpainting) as pure token-grid bookkeeping; no model here.

The model fills one g x g window of image codes at a time (g = the code grid side). One extrapolation step
grows the canvas of codes [B, H, W] by `new = g // 2 + offset` columns (left/right) or rows (up/down):

1. `grow_canvas` adds the new strip, its cells marked `UNKNOWN` (-1);
2. `window_origins` lists the g x g windows covering the strip: each holds the `g - new` rows/columns of the
   old canvas edge next to the `new` unknown ones. Along an edge longer than g (a vertical step after a
   horizontal one, or the reverse) the windows are tiled with stride g // 2 and the last one is aligned to
   the canvas end; they are filled in order, so each window also sees, as known codes, what its predecessor
   generated in their overlap (the new strip stays continuous across windows);
3. `window_ids` turns a window into image token ids (mask id where unknown) for the t2i layout;
4. `paste_window` writes generated codes into the unknown cells only: known codes are never changed.

`extend_canvas` runs these with a `fill(ids) -> codes` callable standing in for the model. On a canvas g rows
high (left/right) or g columns wide (up/down) there is exactly one window and the result is the official
inference_t2i.py bookkeeping (spec 6.4, golden case extrapolate_grid). The official `down` stitches the wrong
part and cannot run; ours mirrors `up`. The official cannot change axis; the tiling above can.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..errors import InputError
from ..fields import is_number
from ..prompting.vocab import Vocabulary

DIRECTIONS = ("left", "right", "up", "down")
UNKNOWN = -1  # a canvas cell not generated yet

FillFn = Callable[[torch.Tensor], torch.Tensor]  # window ids [B, g*g] -> codes [B, g*g]


def check_extrapolation(prompts: str | Sequence[str], directions: str | Sequence[str], offset: int,
                        grid: int) -> tuple[list[str], list[str]]:
    """Validate user arguments; returns (one prompt per step, one direction per step)."""
    texts, dirs = pair_steps(prompts, directions)
    if not is_number(offset, integer=True) or not 0 <= offset < grid // 2:
        raise InputError(f"offset must be an integer in [0, {grid // 2 - 1}] for a {grid}x{grid} grid, got {offset!r}")
    return texts, dirs


def pair_steps(prompts: str | Sequence[str], directions: str | Sequence[str]) -> tuple[list[str], list[str]]:
    """One prompt and one direction per step, from one of either for all steps or one of both per step."""
    if not isinstance(directions, (str, list, tuple)):  # a set would run in hash order
        raise InputError(f"directions must be a direction or a list of them, got {type(directions).__name__}")
    dirs = [directions] if isinstance(directions, str) else list(directions)
    if not dirs:
        raise InputError("no extrapolation direction given")
    for d in dirs:
        if d not in DIRECTIONS:
            raise InputError(f"unknown extrapolation direction {d!r}; choose from {', '.join(DIRECTIONS)}")
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    if len(texts) == 1:
        texts = texts * len(dirs)
    if len(dirs) == 1:  # one direction for every prompt, as `showo extrapolate --direction` takes it
        dirs = dirs * len(texts)
    if len(texts) != len(dirs):
        raise InputError(f"{len(texts)} prompts for {len(dirs)} directions: give one prompt per direction, or one "
                         "prompt or one direction for all")
    return texts, dirs


def final_grid(grid: int, offset: int, directions: Sequence[str]) -> tuple[int, int]:
    """(rows, columns) of the canvas once every step of `directions` has grown it."""
    grow = new_extent(grid, offset)
    return (grid + grow * sum(d in ("up", "down") for d in directions),
            grid + grow * sum(d in ("left", "right") for d in directions))


def new_extent(grid: int, offset: int) -> int:
    """Rows or columns one step adds: g // 2 + offset (the official `W//2 + offset`)."""
    return grid // 2 + offset


def grow_canvas(canvas: torch.Tensor, direction: str, new: int) -> torch.Tensor:
    """The canvas [B, H, W] with `new` UNKNOWN columns (left/right) or rows (up/down) added on that side."""
    b, h, w = canvas.shape
    horizontal = direction in ("left", "right")
    strip = canvas.new_full((b, h, new) if horizontal else (b, new, w), UNKNOWN)
    parts = [strip, canvas] if direction in ("left", "up") else [canvas, strip]
    return torch.cat(parts, dim=-1 if horizontal else -2)


def _tiles(extent: int, grid: int, stride: int) -> list[int]:
    """Start offsets of g-long windows covering [0, extent): stride apart, the last aligned to the end."""
    starts = list(range(0, extent - grid + 1, stride))
    if starts[-1] != extent - grid:
        starts.append(extent - grid)
    return starts


def window_origins(shape: tuple[int, int], direction: str, grid: int, stride: int | None = None) -> list[tuple[int, int]]:
    """(top, left) of each g x g window on the new strip of a grown canvas of `shape` (H, W), in filling order."""
    h, w = shape
    if h < grid or w < grid:
        raise ValueError(f"canvas {h}x{w} is smaller than one {grid}x{grid} window")
    stride = max(1, grid // 2) if stride is None else stride
    if direction in ("left", "right"):
        left = 0 if direction == "left" else w - grid
        return [(top, left) for top in _tiles(h, grid, stride)]
    top = 0 if direction == "up" else h - grid
    return [(top, left) for left in _tiles(w, grid, stride)]


def window_ids(canvas: torch.Tensor, top: int, left: int, grid: int, vocab: Vocabulary) -> torch.Tensor:
    """Image token ids [B, g*g] of one window (raster order): code + image offset, mask id where UNKNOWN."""
    window = canvas[:, top:top + grid, left:left + grid].reshape(canvas.shape[0], -1)
    return torch.where(window == UNKNOWN, vocab.mask, vocab.codes_to_ids(window))


def paste_window(canvas: torch.Tensor, top: int, left: int, codes: torch.Tensor) -> torch.Tensor:
    """A copy of `canvas` with the UNKNOWN cells of the window at (top, left) taken from `codes` [B, g*g]."""
    b = canvas.shape[0]
    grid = int(round(codes.shape[-1] ** 0.5))
    out = canvas.clone()
    window = out[:, top:top + grid, left:left + grid]
    new = codes.to(canvas).reshape(b, grid, grid)
    out[:, top:top + grid, left:left + grid] = torch.where(window == UNKNOWN, new, window)
    return out


def extend_canvas(canvas: torch.Tensor, direction: str, offset: int, grid: int, vocab: Vocabulary, fill: FillFn,
                  stride: int | None = None) -> torch.Tensor:
    """One extrapolation step: the canvas [B, H, W] of codes grown by g // 2 + offset towards `direction`.

    `fill(ids)` receives each window's image ids [B, g*g] (mask id on unknown cells) and returns its codes
    [B, g*g]; only the unknown cells are taken from it.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}")
    if not 0 <= offset < grid // 2:
        raise ValueError(f"offset must lie in [0, {grid // 2}), got {offset}")
    grown = grow_canvas(canvas, direction, new_extent(grid, offset))
    for top, left in window_origins(tuple(grown.shape[-2:]), direction, grid, stride):
        ids = window_ids(grown, top, left, grid, vocab)
        grown = paste_window(grown, top, left, fill(ids))
    if bool((grown == UNKNOWN).any()):
        raise RuntimeError("extrapolation left unknown cells (a window did not cover the new strip)")
    return grown
