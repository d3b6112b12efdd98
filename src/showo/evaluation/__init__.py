"""Evaluation of a model trained on the procedural world (`showo.data`).

`parser` reads generated images back into objects with classical image processing (no learned model, so
scores are reproducible); `matching` scores a parse against the scene a prompt described, and a free-text
answer against the gold one.
"""
from importlib import import_module

# Loaded on first use: the CLI reads `evaluation.settings` to build its help, which must not pay for the world's
# renderer and numpy (0.17 s).
_EXPORTS = {"ParsedObject": "parser", "ParsedScene": "parser", "parse": "parser", "answer_correct": "matching",
            "assign": "matching", "match_scene": "matching", "normalise_answer": "matching"}
_SUBMODULES = ("caption_parser", "cases", "editing", "harness", "matching", "parser", "report", "settings")
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    if name in _SUBMODULES:  # `showo.evaluation.parser` after `import showo.evaluation`, as before
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
