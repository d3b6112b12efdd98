"""Understanding with a w_clip_vit checkpoint through the pipeline, on a tiny random CLIP tower."""
import dataclasses

import pytest
import torch
from PIL import Image
from transformers import CLIPVisionConfig, CLIPVisionModel

from showo.errors import ConfigError
from showo.model import Showo
from showo.model.clip import ClipVisionTower
from showo.pipelines import ShowoPipeline
from showo.tiny import tiny_random_pipeline


@pytest.fixture(scope="module")
def clip_pipe(tmp_path_factory):
    base = tiny_random_pipeline(seed=0)
    cfg = dataclasses.replace(base.model.config, w_clip_vit=True, clip_hidden_size=24)
    torch.manual_seed(1)
    model = Showo(cfg)
    model.load_state_dict(base.model.state_dict(), strict=False)  # backbone from the tiny model, new projector
    clip_cfg = CLIPVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                                image_size=16, patch_size=4)
    directory = tmp_path_factory.mktemp("clip")
    CLIPVisionModel(clip_cfg).save_pretrained(directory)
    tower = ClipVisionTower.from_pretrained(directory)
    return ShowoPipeline(model.eval(), base.vq, base.tokenizer, clip=tower, model_id="tiny-clip"), directory


def test_clip_ask_batches_like_single_calls(clip_pipe):
    pipe, _ = clip_pipe
    images = [Image.new("RGB", (20, 30), (250, 10, 10)), Image.new("RGB", (30, 20), (10, 10, 250))]
    both = pipe.ask(images, ["what colour?", "what is it?"], max_new_tokens=5)
    single = pipe.ask(images[1], "what is it?", max_new_tokens=5)
    assert len(both.texts) == 4 and both.token_ids[3] == single.token_ids[0]
    exact = pipe.ask(images[1], "what is it?", max_new_tokens=5, exact=True)
    assert exact.token_ids == single.token_ids
    one_image = pipe.ask(images[1], ["what colour?", "what is it?"], max_new_tokens=5)  # shares its prefix
    assert one_image.token_ids == both.token_ids[2:]


def test_clip_batch_gives_each_pair_its_own_image_and_question(clip_pipe, monkeypatch):
    """The prompt embeddings each (image, question) pair decodes from are those of a call with that pair alone
    (the tiny random model answers alike whatever it sees, so its tokens cannot show a mix-up)."""
    import showo.pipelines.showo_pipeline as module

    pipe, _ = clip_pipe
    seen = []
    real = module.generate_text
    monkeypatch.setattr(module, "generate_text", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    images = [Image.new("RGB", (20, 30), (250, 10, 10)), Image.new("RGB", (30, 20), (10, 10, 250))]
    questions = ["what colour?", "what is it called?"]
    pipe.ask(images, questions, max_new_tokens=2)
    batch = seen.pop()
    for k, (i, q) in enumerate((i, q) for i in range(2) for q in questions):
        pipe.ask(images[i], q, max_new_tokens=2)
        assert torch.equal(batch[k], seen.pop()[0]), (i, q)
    assert not torch.equal(batch[0], batch[2]) and batch[0].shape != batch[1].shape
    from showo.prompting.sequences import clip_question_text

    built = []  # the CLIP template (not the VQ one) around each question
    real_ids = module.mmu_clip_prompt_ids
    monkeypatch.setattr(module, "mmu_clip_prompt_ids", lambda v, s, q: built.append(q) or real_ids(v, s, q))
    pipe.ask(images[0], questions, max_new_tokens=1)
    assert built == [pipe.tokenizer.encode_text(clip_question_text(q), "question") for q in questions]


def test_clip_ask_pairwise_gives_row_i_pair_i(clip_pipe, monkeypatch):
    import showo.pipelines.showo_pipeline as module

    pipe, _ = clip_pipe
    seen, real = [], module.generate_text
    monkeypatch.setattr(module, "generate_text", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    images = [Image.new("RGB", (20, 30), (250, 10, 10)), Image.new("RGB", (30, 20), (10, 10, 250))]
    questions = ["what is it called?", "what colour?"]
    pipe.ask(images, questions, max_new_tokens=2, pairwise=True)
    batch = seen.pop()
    for k in range(2):
        pipe.ask(images[k], questions[k], max_new_tokens=2)
        assert torch.equal(batch[k], seen.pop()[0]), k


def test_clip_checkpoint_without_tower_is_a_clear_error(clip_pipe):
    pipe, _ = clip_pipe
    bare = ShowoPipeline(pipe.model, pipe.vq, pipe.tokenizer)
    with pytest.raises(ConfigError, match="pass clip="):
        bare.ask(Image.new("RGB", (16, 16)), "what?")
    with pytest.raises(ConfigError, match="clip is for the w_clip_vit checkpoints"):  # was silently unused
        ShowoPipeline(tiny_random_pipeline(seed=0).model, pipe.vq, pipe.tokenizer, clip=pipe.clip)
    wide = ClipVisionTower(CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                                            num_attention_heads=2, image_size=16, patch_size=4)))
    with pytest.raises(ConfigError, match="features have 32 channels, the model's projector takes 24"):
        ShowoPipeline(pipe.model, pipe.vq, pipe.tokenizer, clip=wide)  # failed at the first ask


def test_clip_tower_reports_its_geometry(clip_pipe):
    _, directory = clip_pipe
    tower = ClipVisionTower.from_pretrained(directory)
    assert tower.image_size == 16 and tower.num_patches == 16 and tower.hidden_size == 24
    assert tower(torch.zeros(1, 3, 16, 16)).shape == (1, 16, 24)
