"""Reading and checking weights: safetensors first, `.bin` only through `torch.load(weights_only=True)`.

A checkpoint can never run code here: pickles are loaded with PyTorch's restricted unpickler, which accepts
tensors and plain containers only and refuses anything else.
"""
from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Iterable

import torch
from safetensors.torch import load_file, save, save_file

from .errors import CheckpointError, OfflineError
from .files import path_argument, file_problem, with_default_mode

WEIGHT_FILES = ("pytorch_model.safetensors", "model.safetensors", "pytorch_model.bin")
SAFETENSORS_METADATA = {"format": "pt"}  # the format tag transformers' loaders check in a safetensors file


def find_weights(directory: Path, names: Iterable[str] = WEIGHT_FILES) -> Path:
    """The first weight file of `names` present in `directory` (official order: safetensors before .bin)."""
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise CheckpointError(f"no weights in {directory} (looked for {', '.join(names)})")


def saved_part(directory: Path, part: str) -> Path:
    """`directory`, or its `part` folder ("showo", "magvit") when it is a saved pipeline (`RUN/model`,
    `save_pretrained`'s output) rather than that part's own directory."""
    if not (directory / "config.json").is_file() and (directory / part / "config.json").is_file():
        return directory / part
    return directory


def read_json_object(path: Path) -> dict:
    """The JSON object in a checkpoint's config file; unreadable, non-UTF-8, malformed or non-object files are
    one-line CheckpointErrors."""
    if problem := file_problem(path, "a JSON file"):
        raise CheckpointError(f"{path} {problem}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, not a {type(data).__name__}")
    return data


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a `.safetensors` or `.bin` file, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except PermissionError:
            raise CheckpointError(f"cannot read {path}: permission denied") from None
        except Exception as e:  # noqa: BLE001 - safetensors raises SafetensorError/OSError
            raise CheckpointError(f"corrupt safetensors file {path}: {e}") from None
    state = load_tensors(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors")
    return state


def load_tensors(path: Path):
    """`torch.load(path, weights_only=True)` on the CPU: tensors and plain containers only; anything else, and
    unreadable, truncated or corrupt files, are one-line CheckpointErrors."""
    try:
        with warnings.catch_warnings():  # torch's own notes on the pickle would print lines of their own
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # (torch's message suggests weights_only=False: not for a file that needs it)
        raise CheckpointError(f"refused to load {path}: it contains objects other than tensors, which could run "
                              "code when loaded") from None
    except Exception as e:  # noqa: BLE001 - truncated zip, bad magic number, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read {path}: {first}") from None


def _names(keys: Iterable[str], limit: int = 6) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str = "checkpoint",
                 assign: bool = False) -> None:
    """Strictly load `state` into `module`; one error naming every missing, unexpected, mis-shaped or mis-typed key.

    `assign=True` adopts the checkpoint's tensors (for modules built on the meta device: no second copy).
    """
    own = module.state_dict()
    missing = own.keys() - state.keys()
    unexpected = state.keys() - own.keys()
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own.keys() & state.keys()
              if state[k].shape != own[k].shape]
    kinds = [f"{k} {state[k].dtype}" for k in own.keys() & state.keys()
             if state[k].is_floating_point() != own[k].is_floating_point()]
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if shapes:
        problems.append(f"mis-shaped keys (checkpoint vs model): {_names(shapes)}")
    if kinds:
        problems.append(f"keys of another kind of number (integer vs floating point): {_names(kinds)}")
    if problems:
        raise CheckpointError(f"{what} does not match the model; " + "; ".join(problems))
    module.load_state_dict(state, strict=True, assign=assign)


def resolve(path_or_id: str | Path, allow_patterns: list[str] | None = None) -> Path:
    """A local directory, or a hub id downloaded (or found in the local cache) with `huggingface_hub`."""
    path = path_argument(path_or_id, "the model path or hub id")
    if path.exists():
        return path
    text = str(path_or_id)
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise CheckpointError(f"model path not found: {text}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, allow_patterns=allow_patterns, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached yet: try the network below
        pass
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise OfflineError(f"{text} is not a local directory and is not in the hub cache (HF_HUB_OFFLINE=1)")
    try:
        return Path(snapshot_download(text, allow_patterns=allow_patterns))
    except Exception as e:  # noqa: BLE001 - connection errors, 404s, auth
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OfflineError(f"cannot fetch {text} from the Hugging Face hub (no network or no such repo): {reason}") from None


def save_weights(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """safetensors' `save_file`, with the file given the umask's permissions (it writes 0600 files)."""
    save_file(state, str(path), metadata=SAFETENSORS_METADATA)
    with_default_mode(path)


def weights_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """The safetensors file of `state`, in memory (for `files.atomic_write`)."""
    return save(state, metadata=SAFETENSORS_METADATA)
