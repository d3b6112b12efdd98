"""What the pipelines return: results plus the metadata needed to reproduce them."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from PIL import Image


@dataclass
class ImageOutput:
    """Generated images (PIL, or a uint8 array batch for output_type="np"), their codes, one metadata dict each."""

    images: list[Image.Image]
    codes: torch.Tensor  # [B, h*w] image codes (raster order)
    grid: tuple[int, int]  # (h, w) of the code grid
    metadata: list[dict] = field(default_factory=list)


@dataclass
class TextOutput:
    """Generated texts, their token ids, and one metadata dict each."""

    texts: list[str]
    token_ids: list[list[int]]
    metadata: list[dict] = field(default_factory=list)
