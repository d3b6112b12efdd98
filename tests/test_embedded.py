"""The embedded default model ships inside the package, loads offline and runs every task."""
from pathlib import Path

import torch

from showo.embedded import EMBEDDED_DIR, embedded_available
from showo.pipelines import ShowoPipeline


def test_embedded_model_is_shipped_and_small():
    assert embedded_available()
    size = sum(p.stat().st_size for p in Path(EMBEDDED_DIR).rglob("*") if p.is_file())
    assert size <= 40 * 2 ** 20, size


def test_default_pipeline_is_the_embedded_model():
    pipe = ShowoPipeline.from_pretrained()
    assert pipe.model_id.startswith("showo-world") and pipe.model.dtype == torch.float32
    assert pipe.resolution == 64 and pipe.grid_size == 8
    out = pipe.text_to_image("one object: large red circle centre", num_inference_steps=4, seed=0)
    assert out.images[0].size == (64, 64)
    again = pipe.text_to_image("one object: large red circle centre", num_inference_steps=4, seed=0)
    assert torch.equal(out.codes, again.codes)
    answer = pipe.ask(out.images[0], "How many objects are in the picture?", max_new_tokens=8)
    assert answer.texts[0].strip()
