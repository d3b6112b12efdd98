"""Shared fixtures. Golden tests read the official implementation's vectors from SHOWO_GOLDEN_DIR."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(os.environ.get("SHOWO_GOLDEN_DIR", ROOT.parent / "shared" / "golden"))


class Golden:
    """The golden directory: `golden.json` (dimensions, ids, arguments) and the per-case tensor files."""

    def __init__(self, root: Path):
        self.root = root
        self.meta = json.loads((root / "golden.json").read_text())
        self._cache: dict[str, dict[str, torch.Tensor]] = {}

    def case(self, name: str) -> dict[str, torch.Tensor]:
        """Tensors of one case, e.g. `golden.case("t2i_logits")["output.logits"]`."""
        if name not in self._cache:
            self._cache[name] = load_file(str(self.root / self.meta["cases"][name]["file"]))
        return self._cache[name]

    def info(self, name: str) -> dict:
        return self.meta["cases"][name]

    @property
    def layout(self) -> dict:
        return self.meta["layout"]

    def weights(self, name: str, prefix: str = "model.") -> dict[str, torch.Tensor]:
        """A weight file with its `model.` prefix stripped (official key names remain)."""
        return {k[len(prefix):]: v for k, v in load_file(str(self.root / name)).items() if k.startswith(prefix)}


@pytest.fixture(scope="session")
def golden() -> Golden:
    if not (GOLDEN_DIR / "golden.json").is_file():
        pytest.fail(f"golden directory not found: {GOLDEN_DIR} (set SHOWO_GOLDEN_DIR)")
    return Golden(GOLDEN_DIR)


@pytest.fixture(scope="session")
def golden_tokenizer(golden):
    """The golden set's text tokenizer with Show-o's tokens added (codebook size from golden.json)."""
    from showo.tokenizers.text import TextTokenizer

    return TextTokenizer.from_pretrained(golden.root / "tokenizer", codebook_size=golden.layout["codebook_size"])


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # The golden set was produced with one thread; a few reductions differ in the last bits with more.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def decoding_spy(monkeypatch):
    """The `compiled` argument of every `generate_text` call of the pipeline, in order; decoding itself runs
    uncompiled (nothing is compiled: these tests check what was asked and recorded)."""
    import showo.pipelines.showo_pipeline as sp

    asked, real = [], sp.generate_text
    monkeypatch.setattr(sp, "generate_text", lambda *a, compiled, **k: asked.append(compiled) or real(*a, **k))
    return asked
