"""Read a world image back into objects, with classical image processing only (numpy + PIL, deterministic).

1. Background: a vertical linear ramp fitted (robustly) to the left and right border columns, which objects
   never reach; its mean names the background.
2. Foreground: pixels whose colour distance from the ramp exceeds 40% of the smallest object-background
   distance of the palette; 4-connected components (label propagation); specks under `min_area` dropped.
3. Per component: colour = majority vote of the nearest palette colour over its clearly coloured pixels
   (near a palette colour, else its high-contrast interior); a second colour with `min_area` votes means
   blur has bridged two objects, and each colour gets its own object. The mask is re-cut at half coverage
   along the background->colour axis (so blur and anti-aliasing neither grow nor shrink it, and bridged
   same-coloured objects come apart); size from the bounding-box side, cell from the bounding-box centre;
   shape = the rendered template (sharp or blurred, resampled to 16x16) with the smallest mean difference.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image

from ..data.world import Scene, SceneObject, WorldConfig, cell_of, coverage
from ..errors import InputError

TEMPLATE = 16  # side of the normalised mask used for shape matching
BLURS = (0.0, 0.8, 1.2)  # Gaussian sigmas (pixels at 64 px) of the shape templates


@dataclass(frozen=True)
class ParsedObject:
    """One object found in an image. bbox = (x0, y0, x1, y1) in pixels, x1/y1 exclusive."""

    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    extent: float
    col: int
    row: int
    bbox: tuple[int, int, int, int]
    area: int
    purity: float  # share of the colour votes won by `colour`
    shape_distance: float  # mean |mask - template| of the chosen shape (0 = perfect)


@dataclass(frozen=True)
class ParsedScene:
    background: str
    objects: tuple[ParsedObject, ...]
    image_size: int
    specks: int  # foreground components dropped as smaller than min_area

    def to_scene(self) -> Scene:
        """The parse as a world `Scene` (gradient not estimated), e.g. to ask `language` questions about it."""
        objects = tuple(SceneObject(o.shape, o.colour, o.size, o.cx, o.cy, o.extent, o.col, o.row)
                        for o in self.objects)
        return Scene(self.background, objects, 0, self.image_size)


def as_array(image) -> np.ndarray:
    """float [H, W, 3] in 0..255 of a PIL image, an [H, W, 3] array in 0..255, or a [3, H, W] tensor in [-1, 1]."""
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"), dtype=np.float64)
    elif hasattr(image, "detach"):  # torch tensor, dataset/decoder convention
        tensor = image.detach().float().cpu()
        if tensor.dim() != 3 or tensor.shape[0] != 3:
            raise InputError(f"expected a [3, H, W] tensor, got {tuple(tensor.shape)}")
        array = ((tensor.clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy().astype(np.float64)
    else:
        array = np.asarray(image, dtype=np.float64)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] != array.shape[1]:
        raise InputError(f"expected a square RGB image, got shape {array.shape}")
    return array


def _background(array: np.ndarray) -> np.ndarray:
    """float [S, 3]: the background colour of each row, a line in y fitted to the border columns."""
    size = array.shape[0]
    band = max(1, size // 32)
    rows = np.median(np.concatenate([array[:, :band], array[:, -band:]], axis=1), axis=1)
    design = np.stack([np.ones(size), np.arange(size) + 0.5 - size / 2], axis=1)
    keep = np.ones(size, dtype=bool)
    for _ in range(2):  # refit without rows the line misses badly (something drawn on the border)
        coef = np.linalg.lstsq(design[keep], rows[keep], rcond=None)[0]
        residual = np.linalg.norm(rows - design @ coef, axis=1)
        keep = residual <= max(8.0, 3 * float(np.median(residual)))
    return design @ coef


def components(mask: np.ndarray) -> np.ndarray:
    """int [H, W] labels of the 4-connected components of a boolean mask (0 = background, then 1, 2, ...)."""
    h, w = mask.shape
    none = h * w + 1
    labels = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), none)
    while True:  # each pass spreads the smallest label of every component one pixel further
        spread = labels.copy()
        np.minimum(spread[1:], labels[:-1], out=spread[1:])
        np.minimum(spread[:-1], labels[1:], out=spread[:-1])
        np.minimum(spread[:, 1:], labels[:, :-1], out=spread[:, 1:])
        np.minimum(spread[:, :-1], labels[:, 1:], out=spread[:, :-1])
        spread = np.where(mask, spread, none)
        if np.array_equal(spread, labels):
            break
        labels = spread
    _, dense = np.unique(np.where(mask, labels, 0), return_inverse=True)
    return dense.reshape(h, w)


def _normalise(mask: np.ndarray) -> np.ndarray:
    """The mask's bounding box resampled to TEMPLATE x TEMPLATE floats."""
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    return np.asarray(Image.fromarray(crop, "F").resize((TEMPLATE, TEMPLATE), Image.BILINEAR))


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (zero padding) of a 2-D float array."""
    if sigma <= 0:
        return image
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    rows = np.apply_along_axis(np.convolve, 1, image, kernel, mode="same")
    return np.apply_along_axis(np.convolve, 0, rows, kernel, mode="same")


@lru_cache(maxsize=16)
def _templates(size: int, shapes: tuple[str, ...], extents: tuple[int, ...]) -> tuple[tuple[str, np.ndarray], ...]:
    """(shape, normalised half-coverage mask) of every shape at every object size, sharp and blurred (a blurred
    diamond's tips shrink under the half-coverage cut until it resembles a sharp circle's mask)."""
    out = []
    for shape in shapes:
        for extent in extents:
            alpha = coverage(shape, size / 2, size / 2, extent, 0, 0, size, size)
            for sigma in BLURS:
                out.append((shape, _normalise(_blur(alpha, sigma * size / 64) > 0.5)))
    return tuple(out)


def _palette(colours: dict[str, tuple[int, int, int]]) -> tuple[list[str], np.ndarray]:
    return list(colours), np.asarray(list(colours.values()), dtype=np.float64)


@dataclass
class _Context:
    """What every component of one image is read against."""

    config: WorldConfig
    names: list[str]
    palette: np.ndarray  # [K, 3]
    clear: float  # a pixel this close to a palette colour counts as clearly that colour
    min_area: int
    extents: list[int]
    templates: tuple[tuple[str, np.ndarray], ...]
    bg: np.ndarray  # [S, 3] background per row
    offset: np.ndarray  # [S, S, 3] image minus background
    labels: np.ndarray  # [S, S] coarse foreground components


def _read(ctx: _Context, cut: np.ndarray, box: tuple[int, int], colour: int, votes: np.ndarray) -> ParsedObject:
    """One object from its half-coverage mask `cut` (a window whose top-left pixel is `box`)."""
    size = ctx.labels.shape[0]
    ys, xs = np.nonzero(cut)
    x0, x1, y0, y1 = box[0] + xs.min(), box[0] + xs.max() + 1, box[1] + ys.min(), box[1] + ys.max() + 1
    extent = max(x1 - x0, y1 - y0)
    size_name = list(ctx.config.sizes)[int(np.abs(np.asarray(ctx.extents) - extent).argmin())]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    col, row = cell_of(cx, cy, size)
    normalised = _normalise(cut)
    shape_distance, shape = min((float(np.abs(normalised - t).mean()), s) for s, t in ctx.templates)
    purity = float((votes == colour).mean()) if votes.size else 0.0
    return ParsedObject(shape, ctx.names[colour], size_name, float(cx), float(cy), float(extent), col, row,
                        (int(x0), int(y0), int(x1), int(y1)), int(cut.sum()), purity, shape_distance)


def _split(ctx: _Context, label: int) -> list[ParsedObject]:
    """The objects inside one coarse component: one per clearly present colour, each re-cut at half coverage
    along its background->colour axis (which also separates same-coloured objects that blur has bridged)."""
    size = ctx.labels.shape[0]
    mask = ctx.labels == label
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = max(0, ys.min() - 2), min(size, ys.max() + 3), max(0, xs.min() - 2), min(size, xs.max() + 3)
    window, offset = ctx.labels[y0:y1, x0:x1], ctx.offset[y0:y1, x0:x1]
    pixels = offset + ctx.bg[y0:y1, None, :]
    distance = np.linalg.norm(pixels[..., None, :] - ctx.palette, axis=-1)  # [h, w, K]
    inside = window == label
    contrast = np.linalg.norm(offset, axis=-1)
    # voters: pixels close to a palette colour; failing enough of those (a model's colours drift off the
    # palette), the component's high-contrast interior
    clear = inside & (distance.min(-1) < ctx.clear)
    if clear.sum() < ctx.min_area:
        clear = inside & (contrast >= 0.6 * np.percentile(contrast[inside], 95))
    nearest = distance.argmin(-1)
    counts = np.bincount(nearest[clear], minlength=len(ctx.names))
    order = np.argsort(-counts, kind="stable")
    present = [int(order[0])] + [int(k) for k in order[1:] if counts[k] >= ctx.min_area]
    owner = np.asarray(present)[distance[..., present].argmin(-1)]  # nearest present colour of each pixel
    objects = []
    for colour in present:
        axis = ctx.palette[colour] - ctx.bg[y0:y1, None, :]
        alpha = (offset * axis).sum(-1) / np.maximum((axis * axis).sum(-1), 1e-6)
        cut = (alpha > 0.5) & ((inside & (owner == colour)) | (window == 0))
        parts = components(cut)
        for part in range(1, int(parts.max()) + 1):
            piece = parts == part
            if piece.sum() >= ctx.min_area:
                objects.append(_read(ctx, piece, (x0, y0), int(colour), nearest[piece & clear]))
    return objects


def parse(image, config: WorldConfig | None = None, min_area: int | None = None) -> ParsedScene:
    """The background and objects of a world image (objects in reading order: row, then column).

    Geometry (sizes, cells) scales with the image's own side, so `config.image_size` need not match it.
    Components smaller than `min_area` pixels (default 15% of a small object's bounding square) are specks.
    """
    array = as_array(image)
    size = array.shape[0]
    config = replace(config or WorldConfig(), image_size=size)
    names, palette = _palette(config.colours)
    bg_names, bg_palette = _palette(config.backgrounds)
    gap_bg = np.linalg.norm(palette[:, None] - bg_palette[None], axis=2).min()
    pairwise = np.linalg.norm(palette[:, None] - palette[None], axis=2)
    gap_obj = pairwise[np.triu_indices(len(palette), 1)].min() if len(palette) > 1 else 2 * gap_bg
    extents = [config.extent(s) for s in config.sizes]
    min_area = min_area if min_area is not None else max(4, round(0.15 * extents[0] ** 2))

    bg = _background(array)
    background = bg_names[int(np.linalg.norm(bg_palette - bg.mean(axis=0), axis=1).argmin())]
    offset = array - bg[:, None, :]
    labels = components(np.linalg.norm(offset, axis=2) > 0.4 * gap_bg)
    ctx = _Context(config, names, palette, 0.5 * gap_obj, min_area, extents,
                   _templates(size, tuple(config.shapes), tuple(extents)), bg, offset, labels)
    objects, specks = [], 0
    for label in range(1, int(labels.max()) + 1):
        if (labels == label).sum() < min_area:
            specks += 1
            continue
        found = _split(ctx, label)
        specks += not found
        objects.extend(found)
    objects.sort(key=lambda o: (o.row, o.col, o.cy, o.cx))
    return ParsedScene(background, tuple(objects), size, specks)
