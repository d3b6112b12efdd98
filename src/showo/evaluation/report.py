"""The Markdown report of an evaluation run: metric tables and, per task and split, an image grid (PNG)
with one row per sample and a table of its prompt/question, the model's output and the verdict."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from ..files import saved
from .cases import SampleRecord

CELL = 96  # display height of every image in a grid (nearest-neighbour upscaling keeps pixels visible)
PAD = 4
FRAME = {True: (40, 170, 60), False: (220, 40, 40)}  # green = right, red = wrong


def _fit(image: Image.Image) -> Image.Image:
    scale = CELL / image.height
    return image.convert("RGB").resize((max(1, round(image.width * scale)), CELL), Image.NEAREST)


def image_grid(records: list[SampleRecord]) -> Image.Image:
    """Rows of each record's images at a common height, framed green (correct) or red (wrong)."""
    rows = [[_fit(i) for i in r.images] for r in records]
    width = max((sum(i.width + PAD for i in row) + PAD for row in rows), default=CELL)
    height = len(rows) * (CELL + 2 * PAD) + PAD
    grid = Image.new("RGB", (width, max(height, CELL)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    y = PAD
    for record, row in zip(records, rows):
        x = PAD
        draw.rectangle((0, y - PAD // 2, width - 1, y + CELL + PAD // 2), outline=FRAME[record.correct], width=2)
        for image in row:
            grid.paste(image, (x, y))
            x += image.width + PAD
        y += CELL + 2 * PAD
    return grid


def _number(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}"


def _cell(text: str) -> str:
    """Markdown-table-safe text: pipes escaped, newlines as <br>, other control characters as escapes."""
    lines = ["".join(c if c.isprintable() else repr(c)[1:-1] for c in line) for line in str(text).splitlines()]
    return "<br>".join(lines).replace("|", "\\|") or " "


def metrics_table(task_results: dict[str, dict]) -> list[str]:
    """Rows of metric name | seen | heldout (metrics in first-seen order, `overall` first)."""
    splits = list(task_results)
    names = ["overall"] + [k for s in splits for k in task_results[s] if k != "overall"]
    names = list(dict.fromkeys(names))
    lines = ["| metric | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(_number(task_results[s].get(name)) for s in splits) + " |")
    return lines


def write_report(results: dict, records: dict[str, dict[str, list[SampleRecord]]], out_dir: Path) -> Path:
    """Write `report.md` with `<task>_<split>.png` grids beside it into `out_dir`, all at once (`files.saved`);
    returns the report's path."""
    grids = {}
    lines = ["# Evaluation report", "",
             "Seen = split 'eval' (colour-shape pairs seen in training, layouts never trained on); held-out = scenes "
             "with a colour-shape pair never shown in training. Overall scores are fractions in [0, 1] "
             "(tokenizer: PSNR in dB).", "",
             "| task | " + " | ".join(next(iter(results.values()), {})) + " |",
             "|---|" + "---|" * len(next(iter(results.values()), {}))]
    for task, by_split in results.items():
        lines.append(f"| {task} | " + " | ".join(_number(m.get("overall")) for m in by_split.values()) + " |")
    for task, by_split in results.items():
        lines += ["", f"## {task}", ""] + metrics_table(by_split)
        for split, rows in records.get(task, {}).items():
            if not rows:
                continue
            name = f"{task}_{split}.png"
            grids[name] = image_grid(rows)
            labels = " · ".join(rows[0].labels)
            lines += ["", f"### {task}, {split}", "", f"![{task} {split}]({name})", "",
                      f"Each row: {labels} (frame: green = correct, red = wrong).", "",
                      "| # | sample | prompt / question | output | correct |", "|---|---|---|---|---|"]
            for k, r in enumerate(rows):
                lines.append(f"| {k} | {r.index} | {_cell(r.prompt)} | {_cell(r.output)} | {_number(r.correct)} |")

    def write(folder: Path) -> None:
        for name, grid in grids.items():
            grid.save(folder / name)
        (folder / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    return saved(out_dir, "the evaluation report", write) / "report.md"
