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
#: What a checkpoint directory must hold: a config and weights (one file, or a sharded checkpoint's index)
CHECKPOINT_FILES = (("config.json",), (*WEIGHT_FILES, *(f"{n}.index.json" for n in WEIGHT_FILES)))
LFS_POINTER = b"version https://git-lfs"  # what a clone without git-lfs holds instead of a large file


def find_weights(directory: Path, names: Iterable[str] = WEIGHT_FILES) -> Path:
    """The first weight file of `names` present in `directory` (official order: safetensors before .bin), else
    the index of a sharded checkpoint (`<name>.index.json`, as transformers' `save_pretrained` writes one)."""
    names = tuple(names)
    for name in (*names, *(f"{n}.index.json" for n in names)):
        if (directory / name).is_file():
            return directory / name
    raise CheckpointError(f"no weights in {directory} (looked for {', '.join(names)}, or a sharded checkpoint's "
                          f"<name>.index.json)")


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
    """All tensors of a `.safetensors` or `.bin` file, or of the shards a `.index.json` names, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file not found: {path}")
    if path.name.endswith(".index.json"):
        return _read_shards(path)
    with open(path, "rb") as f:
        if f.read(len(LFS_POINTER)) == LFS_POINTER:
            raise CheckpointError(f"{path} is a Git LFS pointer, not the weights: run `git lfs pull` in the "
                                  "checkpoint's clone (or download the file itself)")
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
    except pickle.UnpicklingError as e:  # (torch's message suggests weights_only=False: not for a file that needs it)
        if "unsupported global" in str(e).lower():  # the restricted unpickler refused a class or function
            raise CheckpointError(f"refused to load {path}: it contains objects other than tensors, which could "
                                  "run code when loaded") from None
        raise CheckpointError(f"cannot read {path}: not a PyTorch weight file (damaged, or another format)") from None
    except (KeyError, EOFError):  # the legacy unpickler on bytes that are no pickle (KeyError: '101')
        raise CheckpointError(f"cannot read {path}: not a PyTorch weight file (damaged, or another format)") from None
    except Exception as e:  # noqa: BLE001 - truncated zip, bad magic number, ...
        raise CheckpointError(f"cannot read {path}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _read_shards(index: Path) -> dict[str, torch.Tensor]:
    """The tensors of every shard a sharded checkpoint's index names (its `weight_map`: tensor -> file)."""
    weight_map = read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index} has no weight_map of tensor names to shard files")
    state: dict[str, torch.Tensor] = {}
    for name in dict.fromkeys(weight_map.values()):
        shard = index.parent / name
        if Path(name).name != name or not name.endswith((".safetensors", ".bin")):  # beside its index, nowhere else
            raise CheckpointError(f"{index} names {name!r} as a shard: not a weight file beside it")
        if not shard.is_file():
            raise CheckpointError(f"shard {name} named in {index} is missing")
        state.update(read_state_dict(shard))
    return state


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


def resolve(path_or_id: str | Path, allow_patterns: list[str] | None = None,
            needs: Iterable[Iterable[str]] = ()) -> Path:
    """A local directory, or a hub id downloaded (or found in the local cache) with `huggingface_hub`. `needs`:
    groups of file names of which the directory must hold one each (a cache that lacks one, left by an
    interrupted download or by a tool that fetched only config.json, is completed from the hub)."""
    path = path_argument(path_or_id, "the model path or hub id")
    if path.exists():
        return path
    text = str(path_or_id)
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise CheckpointError(f"model path not found: {text}")
    if path.parent.is_dir():  # `checkpoints/show-o` with checkpoints/ here: a local path with a typo, not a repo
        raise CheckpointError(f"model path not found: {text} ({path.parent}/ has no {path.name}; a hub id is "
                              "looked up only when no folder of its first part is here)")
    from huggingface_hub import snapshot_download

    def missing(directory: Path) -> str:
        """The needed files `directory` lacks, as "a or b, c" ("(or a sharded index)" for the index names)."""
        groups = [g for g in map(tuple, needs) if not any((directory / n).is_file() for n in g)]
        return ", ".join(" or ".join(n for n in g if not n.endswith(".index.json"))
                         + (" (or a sharded index)" if any(n.endswith(".index.json") for n in g) else "")
                         for g in groups)

    lacking = "not in the hub cache"
    try:
        cached = Path(snapshot_download(text, allow_patterns=allow_patterns, local_files_only=True))
        if not (absent := missing(cached)):
            return cached
        lacking = f"only partly in the hub cache (no {absent})"
    except Exception:  # noqa: BLE001 - not cached yet: try the network below
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"):  # as huggingface_hub
        raise OfflineError(f"{text} is not a local directory and is {lacking} (HF_HUB_OFFLINE is set)")
    try:
        fetched = Path(snapshot_download(text, allow_patterns=allow_patterns))
    except Exception as e:  # noqa: BLE001 - connection errors, 404s, auth
        reason = _first_line(e).removeprefix("Got: ")  # (huggingface_hub's message ends with "Got: <error>")
        raise OfflineError(f"{text} is not a local directory, and the Hugging Face hub did not give it (no network "
                           f"or no such repo): {reason}") from None
    if missing(fetched):  # offline, huggingface_hub returns what it has cached
        raise OfflineError(f"{text} is not a local directory and is {lacking}, and the Hugging Face hub did not "
                           "give the rest (no network, or the repo has no such file)")
    return fetched


def save_weights(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """safetensors' `save_file`, with the file given the umask's permissions (it writes 0600 files)."""
    save_file(state, str(path), metadata=SAFETENSORS_METADATA)
    with_default_mode(path)


def weights_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """The safetensors file of `state`, in memory (for `files.atomic_write`)."""
    return save(state, metadata=SAFETENSORS_METADATA)
