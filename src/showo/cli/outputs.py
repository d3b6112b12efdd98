"""Rendering results to files and writing them atomically.

Everything is rendered in memory first (`Files`), and only written once the whole command has succeeded; each
file goes to a temporary name in the target directory and is renamed into place with `os.replace`, so a
reader never sees half a file and a failed command leaves nothing behind.
"""
from __future__ import annotations

import html
import json
import os
import re
import secrets
from pathlib import Path
from urllib.parse import quote

from PIL import Image

from ..errors import OutputError
from ..files import check_out_dir, png_bytes, remove_quietly, staged_file


def json_bytes(data) -> bytes:
    """Indented UTF-8 JSON with every flat list of numbers (codes, token ids) kept on one line."""
    flat: dict[str, str] = {}
    tag = secrets.token_hex(8)  # placeholders no user text can contain by chance

    def pack(value):
        if isinstance(value, dict):
            return {k: pack(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                key = f"\x00{tag}:{len(flat)}\x00"
                flat[key] = json.dumps(list(value))
                return key
            return [pack(v) for v in value]
        return value

    text = json.dumps(pack(data), indent=2, ensure_ascii=False, default=_jsonable)
    for key, compact in flat.items():
        text = text.replace(json.dumps(key), compact, 1)
    return (text + "\n").encode("utf-8")


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # tensors, numpy arrays and scalars
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def slug(text: str, limit: int = 40) -> str:
    """A short file-name-safe form of `text` ('A red cube!' -> 'a-red-cube')."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or "image"


def check_out_file(path: Path, flag: str) -> None:
    """Refuse a file path the results could not be written to, before any work is done."""
    if path.is_dir():
        raise OutputError(f"{flag} {path}: a file name is needed, not a directory")
    check_out_dir(path.parent, flag=flag)


def check_apart(files: dict[str, Path], dirs: dict[str, Path]) -> None:
    """Refuse output paths that collide, before any work is done: two options naming one file (the second would
    replace the first), or a file that is a directory option itself or one of its parents."""
    seen: dict[Path, str] = {}
    for flag, path in files.items():
        where = path.resolve()
        if where in seen:
            raise OutputError(f"{flag} {path}: {seen[where]} writes the same file")
        seen[where] = flag
        for dir_flag, directory in dirs.items():
            if where == directory.resolve() or where in directory.resolve().parents:
                raise OutputError(f"{flag} {path}: {dir_flag} {directory} needs that path as a directory")


def make_dir(path: Path, flag: str) -> None:
    """Create a directory (and its parents) now; failures are one-line `OutputError`s."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{flag} {path}: cannot create it: {e.strerror or e}") from None


# The names the commands give their results in --out: NNN-<prompt>.png/.json, answer_K.png/.json, index.html,
# answer.md, answers.json (a user's own files there are none of these)
RESULT_NAME = re.compile(r"(\d{3}-.*|answer_\d+)\.(png|json)|index\.html|answer\.md|answers\.json")


class Files:
    """The files of one command's result, kept in memory until `write`."""

    def __init__(self, out: Path):
        self.out = out
        self.items: list[tuple[Path, bytes]] = []

    def add(self, name: str, data: bytes) -> Path:
        """A file named `name` in the output directory."""
        return self.add_path(self.out / name, data)

    def add_path(self, path: Path, data: bytes) -> Path:
        """A file anywhere (e.g. a --json FILE), written together with the others."""
        if any(p == path for p, _ in self.items):
            raise ValueError(f"two outputs named {path}")
        self.items.append((path, data))
        return path

    def _note_leftovers(self, ours: set[str]) -> None:
        """Say which results of an earlier run stay in --out beside this run's (they were not replaced)."""
        try:
            left = sorted(p.name for p in self.out.iterdir() if RESULT_NAME.fullmatch(p.name) and p.name not in ours)
        except OSError:  # not there yet, or not readable: nothing to say
            return
        if left:
            from .progress import say

            shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
            say("note", f"--out {self.out} also holds {shown} from an earlier run, which this run's results do not "
                        "replace (another --out keeps runs apart)")

    def write(self, note_leftovers: bool = True) -> list[Path]:
        """Create the directories and write every file: all of them to temporary files first, then each renamed
        into place, so that a failure (a name taken by a directory, a full disk) leaves none of them behind.
        Results an earlier run left in the directory, which this run does not replace, are noted."""
        paths = [path for path, _ in self.items]
        if note_leftovers:
            self._note_leftovers({p.name for p in paths if p.parent == self.out})
        staged: list[str] = []
        path = self.out
        try:
            for path in dict.fromkeys([self.out, *(p.parent for p in paths)]):
                path.mkdir(parents=True, exist_ok=True)
            for path in paths:
                if path.is_dir():
                    raise IsADirectoryError(0, "is a directory")
            for path, (_, data) in zip(paths, self.items):
                staged.append(staged_file(path, data))
            for tmp, path in zip(staged, paths):
                os.replace(tmp, path)
            return paths
        except OSError as e:
            for tmp in staged:
                remove_quietly(tmp)
            raise OutputError(f"cannot write the results ({path}): {e.strerror or e}") from None


def add_images(files: Files, images: list[Image.Image], records: list[dict], stems: list[str]) -> list[Path]:
    """Each image as `<stem>.png` with its record as `<stem>.json` (which also names the PNG)."""
    paths = []
    for image, record, stem in zip(images, records, stems):
        record = {"image": f"{stem}.png", **record}
        paths.append(files.add(f"{stem}.png", png_bytes(image)))
        files.add(f"{stem}.json", json_bytes(record))
    return paths


GALLERY_KEYS = ("directions", "offset", "seed", "num_inference_steps", "guidance_scale", "temperature", "schedule",
                "index", "regenerated_tokens")

_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
code{background:#eee;padding:.1em .3em;word-break:break-all}
.grid{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;background:#fff;border:1px solid #ddd;padding:.6em;width:272px}
figure img{width:256px;height:256px;object-fit:contain;image-rendering:pixelated;background:#eee}
figcaption{font-size:.85em}figcaption p{font-weight:600;margin:.3em 0}
table{border-collapse:collapse;font-size:.85em}td{padding:0 .5em 0 0;vertical-align:top}"""


def gallery_html(title: str, command_line: str, entries: list[tuple[str, dict]]) -> bytes:
    """An index.html showing every image with its prompt and parameters (all user text escaped)."""
    e = html.escape
    figures = []
    for name, record in entries:
        rows = "".join(f"<tr><td>{e(k)}</td><td>{e(_short(record[k]))}</td></tr>" for k in GALLERY_KEYS if k in record)
        prompt = str(record.get("prompt") or " | ".join(map(str, record.get("prompts", []))))
        figures.append(
            f'<figure><a href="{e(quote(name))}"><img src="{e(quote(name))}" alt="{e(prompt or name)}">'
            f'</a><figcaption><p>{e(prompt)}</p><table>{rows}</table>'
            f'<a href="{e(quote(Path(name).stem + ".json"))}">parameters</a></figcaption></figure>')
    page = (f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title><style>{_STYLE}</style>'
            f'</head><body><h1>{e(title)}</h1><p><code>{e(command_line)}</code></p>'
            f'<div class="grid">{"".join(figures)}</div></body></html>\n')
    return page.encode("utf-8")


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False, default=_jsonable) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:117] + "..."
