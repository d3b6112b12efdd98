"""A procedural world of coloured shapes for training and evaluating a small Show-o.

`world` draws and renders scenes (seeded, with held-out colour-shape pairs), `language` writes captions,
prompts, questions, stories and LM text about them, `dataset` turns both into infinite seeded sample streams.

The names below are imported on first use (PEP 562): `dataset` needs torch, and `world` and `language` must not,
so that the command line's parser (which reads the evaluation settings) answers without loading torch.
"""
from __future__ import annotations

import importlib

_HOMES = {
    "dataset": ("KINDS", "SPLITS", "WorldStream", "image_tensor", "split_seed"),
    "language": ("NUMBERS", "QTYPES", "captions", "describe", "lm_text", "qa_pairs", "refer", "story", "t2i_prompt"),
    "world": ("BACKGROUNDS", "COLOURS", "HELDOUT_PAIRS", "POSITIONS", "SHAPES", "SIZES", "Scene", "SceneObject",
              "WorldConfig", "cell_of", "layout_split", "position_name", "relation", "render", "sample_scene"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_HOME_OF)


def __getattr__(name: str):
    if name not in _HOME_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME_OF[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
