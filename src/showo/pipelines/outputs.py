"""What the pipelines return: results plus the metadata needed to reproduce them."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError
from ..files import png_bytes, saved


@dataclass
class ImageOutput:
    """Generated images (PIL by default; see `output_type`: None for "latent"), their codes, one metadata dict
    each."""

    images: list[Image.Image] | np.ndarray | torch.Tensor | None
    codes: torch.Tensor  # [B, h*w] image codes (raster order)
    grid: tuple[int, int]  # (h, w) of the code grid
    metadata: list[dict] = field(default_factory=list)


@dataclass
class TextOutput:
    """Generated texts, their token ids, and one metadata dict each."""

    texts: list[str]
    token_ids: list[list[int]]
    metadata: list[dict] = field(default_factory=list)


@dataclass
class MixedOutput:
    """Interleaved text and images in generation order, the whole token row, and its metadata."""

    segments: list[str | Image.Image]
    token_ids: list[int]  # the whole row: [<lvg>, bos, prompt..., generated...]
    metadata: dict = field(default_factory=dict)

    @property
    def images(self) -> list[Image.Image]:
        """The images, in order (`markdown` links the k-th as `<name>_<k>.png`)."""
        return [s for s in self.segments if isinstance(s, Image.Image)]

    def markdown(self, name: str = "mixed") -> str:
        """The Markdown text, the k-th image linked as `<name>_<k>.png` (the file `to_markdown` writes)."""
        _check_stem(name)
        parts, k = [], 0
        for s in self.segments:
            if isinstance(s, Image.Image):
                parts.append(f"![image {k}]({quote(f'{name}_{k}.png')})")  # a space or ')' broke the link
                k += 1
            else:
                parts.append(s.strip())
        return "\n\n".join(parts) + "\n"

    def to_markdown(self, directory: str | Path, name: str = "mixed") -> Path:
        """Write `<name>.md` with each image as `<name>_<k>.png` beside it, all at once (`files.saved`: a failed
        write leaves nothing half-written); returns the .md path."""
        text = self.markdown(name)

        def write(folder: Path) -> None:
            for k, image in enumerate(self.images):
                image.save(folder / f"{name}_{k}.png")
            (folder / f"{name}.md").write_text(text, encoding="utf-8")

        return saved(directory, "the mixed output", write) / f"{name}.md"

    def html(self) -> str:
        """A self-contained HTML page (images embedded as PNG data URIs)."""
        body = []
        for s in self.segments:
            if isinstance(s, Image.Image):
                data = base64.b64encode(png_bytes(s)).decode("ascii")
                body.append(f'<img src="data:image/png;base64,{data}" alt="generated image">')
            else:
                body.append(f'<p style="white-space: pre-wrap">{html.escape(s.strip())}</p>')
        title = html.escape(str(self.metadata.get("prompt", "Show-o mixed output")))
        return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body>\n"
                + "\n".join(body) + "\n</body></html>\n")

    def to_html(self, directory: str | Path, name: str = "mixed") -> Path:
        """Write the self-contained page `html` as `<name>.html`; returns its path."""
        _check_stem(name)
        page, html_name = self.html(), f"{name}.html"
        return saved(directory, "the mixed output", lambda d: (d / html_name).write_text(page, "utf-8")) / html_name


def _check_stem(name: object) -> None:
    """`name` of the files a MixedOutput writes: a plain file name, so nothing lands outside the directory."""
    if (not isinstance(name, str) or not name.strip() or name.startswith(".") or "/" in name or "\\" in name
            or not name.isprintable()):  # NUL, newlines and other control characters too
        raise ConfigError(f"name must be a plain file name (no folders, not hidden), got {name!r}")
