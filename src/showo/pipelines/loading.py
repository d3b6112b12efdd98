"""A pipeline's parts on disk: a directory written by `save_pretrained` (showo/, magvit/, tokenizer/), or an
official checkpoint with its image and text tokenizers given apart (local paths or hub ids)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from ..files import path_argument, saved
from ..errors import CheckpointError, ConfigError, OfflineError
from ..model import Showo, ShowoConfig
from ..model.showo import check_vocab, write_showo
from ..model.clip import ClipVisionTower
from ..tokenizers.magvit import MagvitV2
from ..tokenizers.text import TextTokenizer

DEFAULT_VQ = "showlab/magvitv2"
DEFAULT_TOKENIZER = "microsoft/phi-1_5"


def _local(path: str | Path | None) -> str | Path | None:
    """`~/dir` as the home directory's `dir` (hub ids and other paths unchanged)."""
    return Path(path).expanduser() if isinstance(path, (str, Path)) and str(path).startswith("~") else path


def check_parts(model: Showo, vq: MagvitV2, tokenizer: TextTokenizer, clip: ClipVisionTower | None,
                model_id: str) -> None:
    """One-line ConfigErrors for parts that do not make a pipeline (checked by its constructor)."""
    for name, value, kind in (("model", model, Showo), ("vq", vq, MagvitV2),
                              ("tokenizer", tokenizer, TextTokenizer)):
        if not isinstance(value, kind):  # a path given here failed deep inside
            raise ConfigError(f"{name} must be a {kind.__name__} (from_pretrained loads the parts from paths), "
                              f"got {type(value).__name__}")
    if clip is not None and not isinstance(clip, ClipVisionTower):
        raise ConfigError(f"clip must be a ClipVisionTower or None, got {type(clip).__name__}")
    if clip is not None and not model.config.w_clip_vit:  # it was silently unused
        raise ConfigError("clip is for the w_clip_vit checkpoints; this model reads images as codes")
    if clip is not None and clip.hidden_size != model.config.clip_hidden_size:  # failed at the first ask
        raise ConfigError(f"the CLIP tower's features have {clip.hidden_size} channels, the model's projector "
                          f"takes {model.config.clip_hidden_size}")
    if not isinstance(model_id, str):
        raise ConfigError(f"model_id must be a string, got {type(model_id).__name__}")
    check_vocab(model, tokenizer.vocab)
    if vq.config.codebook_size != model.config.codebook_size:
        raise ConfigError(f"image tokenizer has {vq.config.codebook_size} codes, the model expects "
                          f"{model.config.codebook_size}")


def load_parts(model: str | Path, vq: str | Path | None, tokenizer: str | Path | None, clip: str | Path | None,
               dtype: torch.dtype | None, device: torch.device
               ) -> tuple[Showo, MagvitV2, TextTokenizer, ClipVisionTower | None, str]:
    """The transformer, image tokenizer, text tokenizer, CLIP tower (or None) and model id of `model`."""
    for name, value in (("model", model), ("vq", vq), ("tokenizer", tokenizer), ("clip", clip)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{name} must be a path or a hub id, got {type(value).__name__}")
    model, vq, tokenizer, clip = (_local(None if v is None else os.fspath(v)) for v in (model, vq, tokenizer, clip))
    root = Path(model)
    bundled = root.is_dir() and (root / "showo").is_dir()
    for part, given in (("magvit", vq), ("tokenizer", tokenizer)):
        if bundled and given is None and not (root / part).is_dir():  # else it would be looked up as a hub id
            raise CheckpointError(f"pipeline directory {root} has showo/ but no {part}/ (an interrupted save?): "
                                  f"save it again, or pass {'vq' if part == 'magvit' else part}=")
    model_dir = root / "showo" if bundled else model
    vq_src = vq or (root / "magvit" if bundled else DEFAULT_VQ)
    tok_src = tokenizer or (root / "tokenizer" if bundled else DEFAULT_TOKENIZER)
    # the model's config, then the small parts: a missing tokenizer is an error before, not after, gigabytes of
    # Show-o weights load
    model_dir = Showo.locate(model_dir)
    config = ShowoConfig.from_directory(model_dir)
    with _default_named("vq", vq is None and not bundled):
        magvit = MagvitV2.from_pretrained(vq_src, device=device)
    with _default_named("tokenizer", tokenizer is None and not bundled):
        tok_dir = TextTokenizer.locate(tok_src)
    showo = Showo.from_pretrained(model_dir, dtype=dtype, device=device, config=config)
    text = TextTokenizer.from_pretrained(tok_dir, codebook_size=showo.config.codebook_size)
    tower = ClipVisionTower.from_pretrained(clip).to(device) if clip is not None else None
    return showo, magvit, text, tower, str(model)


@contextmanager
def _default_named(part: str, default: bool) -> Iterator[None]:
    """A part that could not be fetched says so by its argument's name when it was its default hub id: the user
    never typed `showlab/magvitv2`."""
    try:
        yield
    except OfflineError as e:
        if not default:
            raise
        raise OfflineError(f"no {part} given, so its default was tried: {e}; give a local directory as {part}= "
                           f"(--{part})") from None


def save_parts(pipe, directory: str | Path) -> None:
    """Write `pipe`'s showo/, magvit/ and tokenizer/ into `directory`, replacing them only once all are written."""
    directory = path_argument(directory, "directory")
    state = pipe.model.state_dict()  # packed weights refuse to be saved here, before any folder is made
    for path in (directory, *(directory / part for part in ("showo", "magvit", "tokenizer"))):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"cannot save into {directory}: {path} is a file")
    saved(directory, "the pipeline", lambda folder: _write_parts(pipe, state, folder))


def _write_parts(pipe, state: dict, folder: Path) -> None:
    parts = {"showo": lambda d: write_showo(d, pipe.model.config, state), "magvit": pipe.vq.write_files,
             "tokenizer": pipe.tokenizer.write_files}
    for name, write in parts.items():
        (folder / name).mkdir()
        write(folder / name)
