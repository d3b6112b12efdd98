"""What an evaluation run scores (`TASKS`) and with which generation settings (`EvalSettings`).

Torch-free (the command line builds its `eval` options from these while parsing); the cases and the scoring
live in `cases` and `harness`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..fields import is_number
from ..limits import check_positive, check_scale, check_steps

TASKS: tuple[str, ...] = ("t2i", "vqa", "caption", "inpaint", "extrapolate", "mixed", "tokenizer")
# Scenes per task and split at most: the report keeps every sample's images and draws them all in one grid per
# task and split (10,000 rows of 104 px: a PNG about a million pixels tall). More is a typo, not a plan.
MAX_SAMPLES = 10_000


@dataclass
class EvalSettings:
    """Generation settings of an evaluation run (pipeline defaults unless said otherwise)."""

    image_steps: int = 18  # MaskGIT steps of t2i, inpainting, extrapolation and story images
    guidance_scale: float = 1.75  # t2i / inpainting / extrapolation
    story_guidance_scale: float = 1.75  # story keyframes (against the null story; `ShowoPipeline.mixed` defaults to 0)
    image_temperature: float = 1.0
    answer_tokens: int = 16  # VQA answers (greedy)
    caption_tokens: int = 64  # captions (greedy)
    seam_threshold: float = 0.5  # extrapolation: seam_score at or above this counts as continuous
    seam_noise: float = 1.0  # grey levels added to both sides of the seam ratio (a decoder noise floor)

    def __post_init__(self) -> None:  # checked before any model loads (`showo eval` builds these first)
        check_steps(self.image_steps)
        for name in ("guidance_scale", "story_guidance_scale", "image_temperature"):
            check_scale(name, getattr(self, name))
        for name in ("answer_tokens", "caption_tokens"):  # a bad one failed after the tasks before it had run
            check_positive(name, getattr(self, name))
        for name in ("seam_threshold", "seam_noise"):  # a NaN threshold judged every seam broken
            if not is_number(getattr(self, name)) or getattr(self, name) < 0:
                raise InputError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
