"""Training checkpoints: weights, optimizer, scheduler, step and random state, written atomically.

Layout: `<output_dir>/checkpoint-<step>/` holding `model/` (a normal Show-o directory, usable for inference),
`optimizer.pt`, `rng.pt` and `trainer.json`; `<output_dir>/latest` names the newest complete checkpoint. A
checkpoint is written into a temporary directory and renamed, and `latest` is replaced atomically afterwards,
so a kill at any moment leaves the previous checkpoint as "latest". Optimizer and RNG files hold tensors and
plain containers only and are read back with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, TextIO

import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)

from ..checkpoints import find_weights, load_tensors, read_json_object, read_state_dict
from ..files import atomic_write, with_default_mode
from ..errors import CheckpointError, ConfigError, OutputError

LATEST = "latest"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


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
    for stale in output_dir.glob(".tmp-checkpoint-*"):  # left by a run killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    name = f"checkpoint-{step:07d}"
    tmp = with_default_mode(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=output_dir))
    try:
        write_model(tmp / "model", model_state)
        torch.save(optim_state, tmp / "optimizer.pt")
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        (tmp / "trainer.json").write_text(json.dumps({"step": step, "scheduler": scheduler.state_dict(), **extra},
                                                     indent=2))
    except (OSError, RuntimeError) as e:  # a full disk: torch.save raises RuntimeError ("unexpected pos")
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot save {name} in {output_dir}: {getattr(e, 'strerror', None) or e} (a full "
                          "disk?); the run resumes from the checkpoint before") from None
    final = output_dir / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write(output_dir / LATEST, (name + "\n").encode())
    # only our own names, oldest step first: a glob's name order deleted a copy such as checkpoint-best's
    # neighbours, and at step 10,000,000 an eight-digit name sorts before the seven-digit ones
    ours = sorted((int(m.group(1)), d) for d in output_dir.iterdir() if (m := CHECKPOINT_NAME.fullmatch(d.name)))
    for _, old in ours[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def check_not_started(output_dir: Path, step: int) -> None:
    """Refuse a run from step 0 in a directory that holds another run: old checkpoints sort after its first
    saves, so they would be deleted as the older ones and `latest` would name a deleted checkpoint."""
    if step == 0 and (output_dir / LATEST).is_file():
        held = _latest_name(output_dir / LATEST)
        raise ConfigError(f"{output_dir} already holds a run (latest: {held}): call resume() to continue it, or "
                          "use another output_dir")


def latest_checkpoint(output_dir: Path) -> Path | None:
    pointer = output_dir / LATEST
    if not pointer.is_file():
        return None
    path = output_dir / _latest_name(pointer)
    if not (path / "trainer.json").is_file():
        raise CheckpointError(f"{pointer} names {path.name}, which is incomplete or missing")
    return path


def _latest_name(pointer: Path) -> str:
    """The checkpoint `pointer` names: a `checkpoint-<step>` directory beside it, nothing else."""
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {pointer}: {str(e).splitlines()[0]}") from None
    if not CHECKPOINT_NAME.fullmatch(name):
        raise CheckpointError(f"{pointer} is corrupt: it should name a checkpoint-<step> directory, not {name[:40]!r}")
    return name


def read_meta(path: Path) -> dict:
    """Checkpoint `path`'s trainer.json: its step (an integer >= 0), scheduler state and run config."""
    meta = read_json_object(path / "trainer.json")
    step = meta.get("step")
    if (not isinstance(step, int) or isinstance(step, bool) or step < 0 or not isinstance(meta.get("scheduler"), dict)
            or not isinstance(meta.get("config", {}), dict)):
        raise CheckpointError(f"{path / 'trainer.json'} is corrupt: it needs an integer step >= 0, a scheduler and a "
                              "config")
    return meta


def read_model_state(path: Path) -> dict[str, torch.Tensor]:
    """The weights of checkpoint `path` (its `model/` directory)."""
    return read_state_dict(find_weights(path / "model", ("pytorch_model.safetensors", "model.safetensors")))


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler,
                    read_model: Callable[[Path], dict[str, torch.Tensor]] = read_model_state) -> dict:
    """Restore weights, optimizer, scheduler and RNG state in place; returns trainer.json (incl. `step`).

    `read_model(path)` reads the full model state dict (the inverse of `save_checkpoint`'s `write_model`)."""
    meta = read_meta(path)
    state = read_model(path)
    try:
        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
        if "state_dict" not in str(e):
            raise
        raise CheckpointError(f"{path} holds the weights of another model architecture than the recipe's: resume "
                              "with the recipe the run started with, or use a new run directory") from None
    optim_state, rng = load_tensors(path / "optimizer.pt"), load_tensors(path / "rng.pt")
    saved = meta.get("scheduler")
    # the learning rates come from the recipe (compared before): an edited base_lrs trained at lr 150
    if not (isinstance(saved, dict) and saved.get("base_lrs") == scheduler.state_dict()["base_lrs"]
            and type(saved.get("last_epoch")) is int and saved["last_epoch"] >= 0):
        raise CheckpointError(f"{path} is corrupt: its scheduler state does not fit this run's recipe")
    try:
        set_optimizer_state_dict(model, optimizer, optim_state, options=StateDictOptions(full_state_dict=True))
        scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(rng["torch"])
    except (AttributeError, IndexError, KeyError, RuntimeError, TypeError, ValueError) as e:  # a damaged file's
        raise CheckpointError(f"{path} is corrupt: its optimizer, scheduler or random state does not fit this run "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return meta


def resume_latest(output_dir: Path, model: torch.nn.Module, optimizer, scheduler,
                  read_model: Callable[[Path], dict[str, torch.Tensor]] = read_model_state,
                  config: dict | None = None, max_steps: int | None = None) -> int | None:
    """Restore the latest checkpoint of `output_dir` if there is one; its step, else None. With `config` (the
    run's config as a dict), first refuse a checkpoint saved under another config (`check_same_config`)."""
    path = check_resumable(output_dir, config, max_steps) if config is not None else latest_checkpoint(output_dir)
    if path is None:
        return None
    return load_checkpoint(path, model, optimizer, scheduler, read_model)["step"]


def run_config(config, precision: str) -> dict:
    """The config a checkpoint records and a resume must match: a trainer config (a dataclass) with `auto`
    resolved to `precision`, the one the run trains in. So a run that trained in bf16 does not silently go on in
    fp32 on a machine without native bf16 (nor the reverse), and a run saved with bf16 resumes under `auto` where
    that means bf16."""
    return {**dataclasses.asdict(config), "precision": precision}


def check_resumable(output_dir: Path, config: dict, max_steps: int | None) -> Path | None:
    """The latest checkpoint of `output_dir` (None if there is none), after refusing one saved under another
    config than `config` (`check_same_config`); callable before a trainer exists, so that `showo train all`
    refuses a stage it cannot resume before running the stages ahead of it."""
    path = latest_checkpoint(output_dir)
    if path is not None:
        meta = read_meta(path)
        check_same_config(output_dir, meta.get("config", {}), config, meta["step"], max_steps)
    return path


# What a resumed run may change: where and how often it reports and saves, how it is spread over processes
# (the same global batch either way), gradient checkpointing (the same gradients), the weights it started from
# (a resume continues from its checkpoint), and max_steps (the cosine then continues towards the new end).
RESUMABLE_CHANGES = {"output_dir", "log_every", "save_every", "keep_checkpoints", "tensorboard", "distributed",
                     "gradient_checkpointing", "init_from", "max_steps"}


# Mappings that are one value (their keys are data, not config fields): compared whole, so adding or removing
# a key is a change.
WHOLE_MAPPINGS = {"mmu_qtype_weights"}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in WHOLE_MAPPINGS:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_same_config(output_dir: Path, saved: dict, current: dict, step: int, max_steps: int | None) -> None:
    """Refuse to resume `output_dir` (at `step`) under a config that differs from the saved one in anything
    but `RESUMABLE_CHANGES` (keys only one side has are not compared: the saved config may predate them), or with
    `max_steps` below the step already reached."""
    old, new = _flat(saved), _flat(json.loads(json.dumps(current)))  # tuples compare as the saved lists
    changed = [f"{k} {old[k]!r} -> {new[k]!r}" for k in old.keys() & new.keys()
               if old[k] != new[k] and k.split(".")[0] not in RESUMABLE_CHANGES]
    if changed:
        shown = ", ".join(sorted(changed)[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        hint = ("; precision is compared as the run trained, and auto is bf16 only where the hardware has it"
                if any(c.startswith("precision ") for c in changed) else "")
        raise ConfigError(f"{output_dir} was started with another recipe ({shown}): resume it with the recipe it "
                          f"started with, or use a new run directory{hint}")
    if max_steps is not None and max_steps < step:
        raise ConfigError(f"{output_dir} is already at step {step}, past max_steps {max_steps}")


def open_metrics_log(output_dir: Path, step: int) -> TextIO:
    """`output_dir/metrics.jsonl` opened for appending, first cut back to the lines of steps up to `step` (the
    step the run resumes from). A run stopped after its last checkpoint has logged steps the resumed run takes
    again, and a kill mid-write can leave half a line; both are dropped, so the log reads as one run."""
    path = output_dir / "metrics.jsonl"
    if path.is_file():
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()  # damaged lines are dropped below
        keep = [line for line in lines if (logged := _logged_step(line)) is not None and logged <= step]
        if keep != lines:
            atomic_write(path, "".join(line + "\n" for line in keep).encode())
    return open(path, "a")


def _logged_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError, OverflowError):  # (a damaged line: {"step": 1e400})
        return None
