"""The embedded default model: a small Show-o trained here on the procedural world (`showo.data`), shipped
inside the package so that every task works offline, with no download.

Its scores are in README.md ("The embedded model"); its recipes, commands and training log in docs/embedded-training.md.
"""
from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError

EMBEDDED_DIR = Path(__file__).resolve().parent / "assets" / "default"
EMBEDDED_ID = "showo-world (embedded)"


def embedded_available() -> bool:
    return all((EMBEDDED_DIR / part / "config.json").is_file() for part in ("showo", "magvit")) and \
        (EMBEDDED_DIR / "tokenizer" / "tokenizer.json").is_file()


def load_embedded(device: str = "cpu", dtype=None):
    """The embedded `ShowoPipeline` (weights are stored in bfloat16 and loaded as float32 unless `dtype`)."""
    import torch

    from .model import Showo
    from .pipelines import ShowoPipeline
    from .tokenizers.magvit import MagvitV2
    from .tokenizers.text import TextTokenizer

    if not embedded_available():
        raise CheckpointError(f"the embedded model is missing from {EMBEDDED_DIR} (a broken installation?)")
    model = Showo.from_pretrained(EMBEDDED_DIR / "showo", dtype=dtype or torch.float32, device=device)
    vq = MagvitV2.from_pretrained(EMBEDDED_DIR / "magvit", device=device, dtype=torch.float32)
    tok = TextTokenizer.from_pretrained(EMBEDDED_DIR / "tokenizer", codebook_size=model.config.codebook_size)
    return ShowoPipeline(model, vq, tok, model_id=EMBEDDED_ID)
