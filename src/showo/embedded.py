"""The embedded default model: a small Show-o trained here on the procedural world (`showo.data`), shipped
inside the package so that every task works offline, with no download.

Its scores are in README.md ("The embedded model"); its recipes, commands and training log in docs/embedded-training.md.
"""
from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError

EMBEDDED_DIR = Path(__file__).resolve().parent / "assets" / "default"
EMBEDDED_ID = "showo-world (embedded)"
# Model names that are not paths, for `ShowoPipeline.from_pretrained` and --model (a folder so named: "./embedded")
EMBEDDED_NAME = "embedded"
TINY_RANDOM_NAME = "tiny-random"  # `showo.tiny`'s randomly initialised model: noise images, gibberish text


def embedded_available() -> bool:
    return all((EMBEDDED_DIR / part / "config.json").is_file() for part in ("showo", "magvit")) and \
        (EMBEDDED_DIR / "tokenizer" / "tokenizer.json").is_file()


def load_embedded(device: str = "cpu", dtype=None):
    """The embedded `ShowoPipeline` (weights are stored in bfloat16 and loaded as float32 unless `dtype`)."""
    import torch

    from .hardware import check_device
    from .pipelines import ShowoPipeline
    from .pipelines.loading import load_parts

    if not embedded_available():
        raise CheckpointError(f"the embedded model is missing from {EMBEDDED_DIR} (a broken installation?)")
    *parts, _ = load_parts(EMBEDDED_DIR, None, None, None, dtype or torch.float32, check_device(device))
    return ShowoPipeline(*parts, model_id=EMBEDDED_ID)
