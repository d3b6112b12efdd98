"""Evaluation of a model trained on the procedural world (`showo.data`).

`parser` reads generated images back into objects with classical image processing (no learned model, so
scores are reproducible); `matching` scores a parse against the scene a prompt described, and a free-text
answer against the gold one.
"""
from .matching import answer_correct, assign, match_scene, normalise_answer
from .parser import ParsedObject, ParsedScene, parse

__all__ = ["ParsedObject", "ParsedScene", "answer_correct", "assign", "match_scene", "normalise_answer", "parse"]
