"""The embedded default model ships inside the package, loads offline and runs every task."""
from pathlib import Path

import pytest
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


def test_embedded_model_reads_scenes_of_its_world():
    """Pinned answers of the shipped weights on two world scenes: a broken question template, image layout or
    decoding gives other words (the test above only asked for a non-empty answer)."""
    import random

    from showo.data.world import WorldConfig, render, sample_scene

    pipe, config = ShowoPipeline.from_pretrained(), WorldConfig()
    two, one = (render(sample_scene(random.Random(seed), config), config) for seed in (1, 2))
    out = pipe.ask([two, one], ["How many objects are there?", "Describe the image."], max_new_tokens=24)
    assert out.texts == ["two", "An image of an orange cross on the right and a blue diamond at the bottom.",
                         "one", "A red triangle at the top."]


def test_package_stores_a_run_checkpoint_in_bfloat16_as_a_pipeline(tmp_path):
    """`training.embedded.package` is how the embedded default is made from a training run."""
    from safetensors import safe_open

    from showo.errors import ConfigError
    from showo.tiny import tiny_random_pipeline
    from showo.training.embedded import package

    pipe, run = tiny_random_pipeline(), tmp_path / "run"
    states = {}
    for step in (2, 4):
        with torch.no_grad():
            for p in pipe.model.parameters():
                p.add_(0.01 * step)
        states[step] = {k: v.clone() for k, v in pipe.model.state_dict().items()}
        ckpt = run / "showo-train" / f"checkpoint-{step:07d}"
        pipe.model.save_pretrained(ckpt / "model")
        (ckpt / "trainer.json").write_text("{}")
    (run / "showo-train" / "latest").write_text("checkpoint-0000004")
    pipe.vq.save_pretrained(run / "magvit")
    pipe.tokenizer.save_pretrained(run / "tokenizer")

    for step, dest in ((4, package(run, tmp_path / "latest")), (2, package(run, tmp_path / "two", step=2))):
        with safe_open(str(dest / "showo" / "pytorch_model.safetensors"), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
        loaded = ShowoPipeline.from_pretrained(dest)
        for key, value in loaded.model.state_dict().items():
            assert torch.equal(value, states[step][key].bfloat16().float()), key
        assert loaded.tokenizer.vocab.size == pipe.tokenizer.vocab.size
    with pytest.raises(ConfigError, match="no Show-o checkpoint"):
        package(tmp_path / "empty", tmp_path / "none")
