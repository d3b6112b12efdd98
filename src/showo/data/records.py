"""Your own training data: a JSON Lines file of image-caption pairs, questions about images, and plain text.

One JSON object per line, of one of three kinds (image paths are relative to the file's directory):

    {"image": "cat.png", "caption": "a cat asleep on a red sofa"}             -> text-to-image rows
    {"image": "cat.png", "question": "What colour is the sofa?", "answer": "Red."}  -> understanding rows
    {"text": "Any text the model should keep writing well."}                  -> language-modelling rows

(For captioning, write the caption as the answer to a question such as "Describe the image.".) The whole file is
checked before anything is trained: a bad line is a one-line error naming the file, the line and the problem.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from ..files import file_problem
from ..tokenizers.image_io import load_image as checked_image, pixel_limit, preprocess

KINDS: dict[str, tuple[str, ...]] = {  # objective -> the keys a record of it has, exactly
    "t2i": ("image", "caption"),
    "mmu": ("image", "question", "answer"),
    "lm": ("text",),
}


@dataclass(frozen=True)
class Record:
    kind: str  # "t2i", "mmu" or "lm"
    line: int  # 1-based line of the file, for messages
    image: Path | None = None
    caption: str | None = None
    question: str | None = None
    answer: str | None = None
    text: str | None = None
    where: str = ""  # "FILE:LINE", for messages


def _kind(keys: set[str]) -> str | None:
    return next((kind for kind, need in KINDS.items() if keys == set(need)), None)


def _record(obj: object, line: int, root: Path, where: str) -> Record:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    kind = _kind(set(obj))
    if kind is None:
        shapes = "; ".join("{" + ", ".join(need) + "}" for need in KINDS.values())
        raise InputError(f"{where}: keys {sorted(obj)} are none of the record kinds: {shapes}")
    for key, value in obj.items():
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{where}: '{key}' must be a non-empty string")
        try:  # JSON may escape a lone surrogate ("\ud800"), which no tokenizer or file name takes
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{where}: '{key}' holds an unpaired surrogate escape, which is not text") from None
    fields = {k: v.strip() for k, v in obj.items()}
    if "image" in fields:
        if "\0" in fields["image"]:  # os calls raise a raw ValueError on it
            raise InputError(f"{where}: 'image' holds a NUL character, which no file name has")
        fields["image"] = (root / fields["image"]).resolve()
        if problem := file_problem(fields["image"], "an image file"):
            raise InputError(f"{where}: image {fields['image']} {problem}")
        try:  # the header only: the pixels are read (and checked again) once, when the images are encoded
            with pixel_limit():
                Image.open(fields["image"]).close()
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError,
                SyntaxError, ValueError) as e:
            raise InputError(f"{where}: cannot read image {fields['image']} ({e.__class__.__name__})") from None
    return Record(kind=kind, line=line, where=where, **fields)


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(repr(key))
        out[key] = value
    return out


def read_records(path: str | Path) -> list[Record]:
    """Every record of a JSON Lines file (blank lines skipped), checked; at least one."""
    path = Path(path)
    if problem := file_problem(path, "a JSON Lines file"):
        raise InputError(f"data file {path} {problem}")
    try:
        # "\n" only: str.splitlines also splits at U+2028 and U+0085, which JSON strings may hold raw
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text (expected JSON Lines)") from None
    records = []
    for i, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"{path}:{i}"
        try:
            obj = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not valid JSON ({e.msg})") from None
        except _DuplicateKey as e:  # json keeps the last value silently: which image was meant?
            raise InputError(f"{where}: key {e} is given twice") from None
        records.append(_record(obj, i, path.parent, where))
    if not records:
        raise InputError(f"{path} has no records")
    return records


def count_kinds(records: list[Record]) -> dict[str, int]:
    return {kind: sum(r.kind == kind for r in records) for kind in KINDS}


def load_image(record: Record, resolution: int) -> torch.Tensor:
    """[3, res, res] in [-1, 1]: the checks and the resize and centre crop of inference (`image_io.load_image`,
    `image_io.preprocess`)."""
    return preprocess(checked_image(record.image, what=f"{record.where}: image"), resolution)


def data_digest(path: str | Path, records: list[Record]) -> str:
    """SHA-256 of the data file and every image it names: a resumed run must read the same data."""
    h = hashlib.sha256(Path(path).read_bytes())
    for image in sorted({Path(r.image) for r in records if r.image is not None}):
        h.update(os.path.relpath(image, Path(path).parent).encode())  # the same data copied elsewhere is the same
        h.update(image.read_bytes())
    return h.hexdigest()
