"""A procedural world of coloured shapes for training and evaluating a small Show-o.

`world` draws and renders scenes (seeded, with held-out colour-shape pairs), `language` writes captions,
prompts, questions, stories and LM text about them, `dataset` turns both into infinite seeded sample streams.
"""
from .dataset import KINDS, SPLITS, WorldStream, image_tensor, split_seed
from .language import NUMBERS, QTYPES, captions, describe, lm_text, qa_pairs, refer, story, t2i_prompt
from .world import (COLOURS, HELDOUT_PAIRS, POSITIONS, SHAPES, SIZES, BACKGROUNDS, Scene, SceneObject,
                    WorldConfig, cell_of, layout_split, position_name, relation, render, sample_scene)

__all__ = [
    "BACKGROUNDS", "COLOURS", "HELDOUT_PAIRS", "KINDS", "NUMBERS", "POSITIONS", "QTYPES", "SHAPES", "SIZES",
    "SPLITS", "Scene", "SceneObject", "WorldConfig", "WorldStream", "captions", "cell_of", "describe",
    "image_tensor", "layout_split", "lm_text", "position_name", "qa_pairs", "refer", "relation", "render",
    "sample_scene", "split_seed", "story", "t2i_prompt",
]
