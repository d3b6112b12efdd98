"""Training checkpoints: weights, optimizer, scheduler, step and random state, written atomically.

Layout: `<output_dir>/checkpoint-<step>/` holding `model/` (a normal Show-o directory, usable for inference),
`optimizer.pt`, `rng.pt` and `trainer.json`; `<output_dir>/latest` names the newest complete checkpoint. A
checkpoint is written into a temporary directory and renamed, and `latest` is replaced atomically afterwards,
so a kill at any moment leaves the previous checkpoint as "latest". Optimizer and RNG files hold tensors and
plain containers only and are read back with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, TextIO

import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)

from ..checkpoints import find_weights, read_state_dict
from ..errors import CheckpointError

LATEST = "latest"
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def _write_atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(output_dir: Path, step: int, model: torch.nn.Module,
                    write_model: Callable[[Path, dict[str, torch.Tensor]], None], optimizer, scheduler,
                    extra: dict, is_main: bool, keep: int = 2) -> Path | None:
    """Collective (every rank calls it: FSDP gathers full tensors); rank 0 writes. Returns the directory.

    `write_model(directory, full_state_dict)` writes the inference-ready weights (e.g. `save_showo`) into
    `<checkpoint>/model`; it may write training-only tensors beside that directory."""
    model_state = get_model_state_dict(model, options=_FULL)
    optim_state = get_optimizer_state_dict(model, optimizer, options=_FULL)
    if not is_main:
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    name = f"checkpoint-{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=output_dir))
    write_model(tmp / "model", model_state)
    torch.save(optim_state, tmp / "optimizer.pt")
    torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
    (tmp / "trainer.json").write_text(json.dumps({"step": step, "scheduler": scheduler.state_dict(), **extra},
                                                 indent=2))
    final = output_dir / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_atomic_text(output_dir / LATEST, name + "\n")
    for old in sorted(output_dir.glob("checkpoint-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(output_dir: Path) -> Path | None:
    pointer = output_dir / LATEST
    if not pointer.is_file():
        return None
    path = output_dir / pointer.read_text().strip()
    if not (path / "trainer.json").is_file():
        raise CheckpointError(f"{pointer} names {path.name}, which is incomplete or missing")
    return path


def read_model_state(path: Path) -> dict[str, torch.Tensor]:
    """The weights of checkpoint `path` (its `model/` directory)."""
    return read_state_dict(find_weights(path / "model", ("pytorch_model.safetensors", "model.safetensors")))


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler,
                    read_model: Callable[[Path], dict[str, torch.Tensor]] = read_model_state) -> dict:
    """Restore weights, optimizer, scheduler and RNG state in place; returns trainer.json (incl. `step`).

    `read_model(path)` reads the full model state dict (the inverse of `save_checkpoint`'s `write_model`)."""
    meta = json.loads((path / "trainer.json").read_text())
    state = read_model(path)
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    optim_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    set_optimizer_state_dict(model, optimizer, optim_state, options=StateDictOptions(full_state_dict=True))
    scheduler.load_state_dict(meta["scheduler"])
    rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=True)
    torch.set_rng_state(rng["torch"])
    return meta


def resume_latest(output_dir: Path, model: torch.nn.Module, optimizer, scheduler,
                  read_model: Callable[[Path], dict[str, torch.Tensor]] = read_model_state) -> int | None:
    """Restore the latest checkpoint of `output_dir` if there is one; its step, else None."""
    path = latest_checkpoint(output_dir)
    return None if path is None else load_checkpoint(path, model, optimizer, scheduler, read_model)["step"]


def open_metrics_log(output_dir: Path, step: int) -> TextIO:
    """`output_dir/metrics.jsonl` opened for appending, first cut back to the lines of steps up to `step` (the
    step the run resumes from). A run stopped after its last checkpoint has logged steps the resumed run takes
    again, and a kill mid-write can leave half a line; both are dropped, so the log reads as one run."""
    path = output_dir / "metrics.jsonl"
    if path.is_file():
        lines = path.read_text().splitlines()
        keep = [line for line in lines if (logged := _logged_step(line)) is not None and logged <= step]
        if keep != lines:
            _write_atomic_text(path, "".join(line + "\n" for line in keep))
    return open(path, "a")


def _logged_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
