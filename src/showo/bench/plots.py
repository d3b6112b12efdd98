"""Minimal line plots as PNG with Pillow (no plotting library dependency for two small figures)."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def line_plot(path: str | Path, xlabel: str, ylabel: str, series: dict[str, list[tuple[float, float]]],
              size: tuple[int, int] = (520, 360)) -> Path:
    w, h = size
    left, right, top, bottom = 60, 20, 20, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x0, x1 = min(xs + [0]), max(xs) or 1
    y1 = max(ys) * 1.1 or 1
    sx = lambda x: left + (x - x0) / max(x1 - x0, 1e-9) * (w - left - right)  # noqa: E731
    sy = lambda y: h - bottom - y / y1 * (h - top - bottom)  # noqa: E731
    d.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
    for i in range(5):
        y = y1 * i / 4
        d.text((5, sy(y) - 6), f"{y:.2g}", fill="black")
    for x in sorted(set(xs)):
        d.text((sx(x) - 8, h - bottom + 5), f"{x:g}", fill="black")
    d.text((w // 2 - 40, h - 20), xlabel, fill="black")
    d.text((5, 2), ylabel, fill="black")
    for k, (name, pts) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        pts = sorted(pts)
        d.line([(sx(x), sy(y)) for x, y in pts], fill=colour, width=2)
        for x, y in pts:
            d.ellipse([sx(x) - 3, sy(y) - 3, sx(x) + 3, sy(y) + 3], fill=colour)
        d.text((left + 10, top + 14 * k), name, fill=colour)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return Path(path)
