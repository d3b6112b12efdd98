"""The writing helpers every output goes through (`showo.files`): what a failure half-way leaves behind."""
from __future__ import annotations

import os

import pytest

import showo.files as files


def test_atomic_write_keeps_the_old_file_when_the_swap_fails(tmp_path, monkeypatch):
    """The new bytes go to a temporary file first: a failure before the rename leaves the old file whole and no
    temporary file (a plain in-place write passed the earlier tests, which only looked at the end state)."""
    target = tmp_path / "result.json"
    target.write_bytes(b"old")

    def refused(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refused)
    with pytest.raises(OSError):
        files.atomic_write(target, b"new" * 1000)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["result.json"]
    monkeypatch.undo()
    files.atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["result.json"]


def test_a_saved_folder_gets_its_config_json_last(tmp_path, monkeypatch):
    """config.json marks a saved model complete, so it is moved in after every other file (in each folder)."""
    moved, replace = [], os.replace
    monkeypatch.setattr(files.os, "replace", lambda src, dst: moved.append(os.path.basename(dst)) or replace(src, dst))

    def write(folder):
        for name in ("config.json", "a.safetensors", "z.txt"):
            (folder / name).write_text(name)
        (folder / "part").mkdir()
        for name in ("config.json", "weights.bin"):
            (folder / "part" / name).write_text(name)

    files.saved(tmp_path / "model", "the model", write)
    assert moved == ["a.safetensors", "part", "z.txt", "config.json"]
    (tmp_path / "model" / "z.txt").unlink()
    moved.clear()
    files.saved(tmp_path / "model", "the model", write)  # onto an existing save: folders are merged
    assert moved == ["a.safetensors", "weights.bin", "config.json", "z.txt", "config.json"]  # part/, then the top
