"""From --model/--vq/--tokenizer/--clip/--device/--dtype to a loaded `ShowoPipeline`.

`DEFAULT_MODEL` is the one place that decides what runs without --model: the embedded model trained on the
procedural world (`--model embedded`); an installation without its weights falls back to the tiny random model
and says so on stderr.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..embedded import EMBEDDED_NAME as EMBEDDED, TINY_RANDOM_NAME as TINY_RANDOM
from ..errors import ConfigError

#: What runs when --model is not given (a path, hub id, EMBEDDED or TINY_RANDOM).
DEFAULT_MODEL = EMBEDDED
#: Said on stderr when the default cannot be used (the embedded weights are missing: a broken installation).
MISSING_EMBEDDED_NOTE = ("the embedded model is missing from this installation; using a tiny RANDOM model "
                         "(--model tiny-random): images are noise and text is gibberish")
TINY_NOTE = "--model tiny-random is a tiny RANDOMLY initialised model: images are noise and text is gibberish"


@dataclass
class ModelSpec:
    """What to load, as resolved from the command line (recorded in every output's metadata)."""

    model: str
    vq: str | None
    tokenizer: str | None
    clip: str | None
    device: str
    dtype: str
    pack_weights: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_device(name: str) -> str:
    """A concrete torch device string for `name` (auto/cpu/cuda/cuda:N/mps); unavailable ones are errors."""
    from ..hardware import check_device

    device = check_device(name, "--device")
    return str(device) if name == "auto" else name


def model_spec(args) -> tuple[ModelSpec, str | None]:
    """The model to load and the note to print about it (None when there is nothing to say)."""
    if args.model is None:
        from ..embedded import embedded_available

        model, note = DEFAULT_MODEL, None
        if model == EMBEDDED and not embedded_available():
            model, note = TINY_RANDOM, MISSING_EMBEDDED_NOTE
    else:
        model = args.model.strip()
        if not model:
            raise ConfigError("--model is empty")
        note = TINY_NOTE if model == TINY_RANDOM else None
    if model in (TINY_RANDOM, EMBEDDED):
        given = [flag for flag in ("vq", "tokenizer", "clip") if getattr(args, flag) is not None]
        if given:
            raise ConfigError(f"--{', --'.join(given)} cannot be used with the {model} model (it brings its "
                              f"own image and text tokenizers); give a checkpoint --model")
    device, pack = resolve_device(args.device), args.pack_weights
    if pack and (device != "cpu" or args.dtype != "float32"):
        raise ConfigError(f"--pack-weights is for float32 on the CPU (got --dtype {args.dtype} on {device})")
    return ModelSpec(model, args.vq, args.tokenizer, args.clip, device, args.dtype, pack), note


def load_pipeline(spec: ModelSpec):
    """The `ShowoPipeline` of `spec` on its device and dtype (weights packed for oneDNN when asked)."""
    pipe = _load(spec)
    return pipe.pack_weights() if spec.pack_weights else pipe


def _load(spec: ModelSpec):
    import torch

    from ..pipelines import ShowoPipeline

    return ShowoPipeline.from_pretrained(spec.model, vq=spec.vq, tokenizer=spec.tokenizer, clip=spec.clip,
                                         dtype=getattr(torch, spec.dtype), device=spec.device)
