"""The pipeline on a tiny random model: shapes, reproducibility, kept tokens, batching, errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from showo.errors import InputError
from showo.pipelines import ShowoPipeline, ShowoWarning
from showo.tiny import tiny_random_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_random_pipeline(seed=0)


def test_text_to_image_is_reproducible_and_batched(pipe):
    a = pipe.text_to_image(["a red cube", "two blue balls"], num_images_per_prompt=2, num_inference_steps=4, seed=7)
    b = pipe.text_to_image(["a red cube", "two blue balls"], num_images_per_prompt=2, num_inference_steps=4, seed=7)
    assert len(a.images) == 4 and a.images[0].size == (pipe.resolution, pipe.resolution)
    assert torch.equal(a.codes, b.codes)
    assert a.metadata[2]["prompt"] == "two blue balls" and a.metadata[2]["seed"] == 7
    exact = pipe.text_to_image(["a red cube", "two blue balls"], num_images_per_prompt=2, num_inference_steps=4,
                               seed=7, exact=True)
    assert torch.equal(a.codes, exact.codes)


def test_inpaint_keeps_unmasked_tokens(pipe):
    image = Image.new("RGB", (40, 40), (200, 30, 30))
    mask = Image.new("L", (40, 40), 0)
    mask.paste(255, (0, 0, 20, 40))  # left half
    out = pipe.inpaint(image, mask, "a green ball", num_inference_steps=3, seed=1)
    original = pipe.encode_images([image])[0]
    g = pipe.grid_size
    keep = torch.ones(g, g, dtype=torch.bool)
    keep[:, : g // 2] = False
    assert torch.equal(out.codes[0][keep.reshape(-1)], original[keep.reshape(-1)])


def test_inpaint_rejects_black_mask_and_warns_on_resize(pipe):
    image = Image.new("RGB", (32, 32))
    with pytest.raises(InputError, match="selects nothing"):
        pipe.inpaint(image, Image.new("L", (32, 32), 0), "x", num_inference_steps=2)
    with pytest.warns(ShowoWarning, match="resized"):
        pipe.inpaint(image, Image.new("L", (16, 16), 255), "x", num_inference_steps=2)


def test_ask_batches_questions_and_images_like_single_calls(pipe):
    images = [Image.new("RGB", (32, 32), c) for c in [(255, 0, 0), (0, 0, 255)]]
    both = pipe.ask(images, ["what colour?", "how many objects are there?"], max_new_tokens=6)
    assert len(both.texts) == 4
    single = pipe.ask(images[1], "how many objects are there?", max_new_tokens=6)
    assert both.token_ids[3] == single.token_ids[0]
    streamed = []
    pipe.ask(images[0], "what colour?", max_new_tokens=6, on_token=lambda s, ids, done: streamed.append(int(ids[0])))
    assert streamed == both.token_ids[0][: len(streamed)]


def test_questions_about_one_image_share_its_prefix_and_answer_as_alone(pipe, monkeypatch):
    image = Image.new("RGB", (32, 32), (0, 200, 0))
    questions = ["what colour?", "how many objects are there?", "is there a circle on the left?"]
    caches, new_cache = [], pipe.model.new_cache
    monkeypatch.setattr(pipe.model, "new_cache", lambda b, n: caches.append(b) or new_cache(b, n))
    batch = pipe.ask(image, questions, max_new_tokens=6)
    assert sorted(caches) == [1, 3]  # the image prefix was prefilled once, alone
    assert batch.token_ids == [pipe.ask(image, q, max_new_tokens=6).token_ids[0] for q in questions]
    blue = Image.new("RGB", (32, 32), (0, 0, 200))
    caches.clear()
    both = pipe.ask([image, blue], questions[:2], max_new_tokens=6)
    assert sorted(caches) == [2, 4]  # one prefix per image
    assert both.token_ids == batch.token_ids[:2] + [pipe.ask(blue, q, max_new_tokens=6).token_ids[0]
                                                    for q in questions[:2]]


def test_write_and_sampling_reproducible(pipe):
    a = pipe.write("once upon a time", max_new_tokens=8, temperature=1.0, top_k=20, seed=3)
    b = pipe.write("once upon a time", max_new_tokens=8, temperature=1.0, top_k=20, seed=3)
    assert a.token_ids == b.token_ids and len(a.token_ids[0]) == 8


@pytest.mark.parametrize("kwargs, match", [
    ({"num_inference_steps": 0}, "num_inference_steps"),
    ({"guidance_scale": -1.0}, "guidance_scale"),
    ({"num_images_per_prompt": 0}, "num_images_per_prompt"),
    ({"seed": -4}, "seed"),
])
def test_bad_numbers_are_input_errors(pipe, kwargs, match):
    with pytest.raises(InputError, match=match):
        pipe.text_to_image("a cube", **kwargs)


def test_numpy_scalars_are_numbers(pipe):
    """Values from a numpy sweep (np.int64 steps, np.float32 scales) give what Python's own give; np.bool_ and NaN
    are refused."""
    a = pipe.text_to_image("a cube", np.int64(2), num_inference_steps=np.int64(3), guidance_scale=np.float32(1.5),
                           temperature=np.float32(1.0), seed=np.int64(4))
    b = pipe.text_to_image("a cube", 2, num_inference_steps=3, guidance_scale=1.5, temperature=1.0, seed=4)
    assert torch.equal(a.codes, b.codes) and a.metadata == b.metadata
    image = Image.new("RGB", (16, 16), "red")
    c = pipe.ask(image, "what?", max_new_tokens=np.int64(4), temperature=np.float32(0.5), top_k=np.int64(9),
                 top_p=np.float32(0.75), seed=np.int64(1))
    d = pipe.ask(image, "what?", max_new_tokens=4, temperature=0.5, top_k=9, top_p=0.75, seed=1)
    assert c.token_ids == d.token_ids
    for kwargs, match in [({"top_p": np.float32("nan")}, "top_p"), ({"top_k": np.float64(2.0)}, "top_k"),
                          ({"temperature": np.bool_(True)}, "temperature"), ({"top_k": True}, "top_k")]:
        with pytest.raises(InputError, match=match):
            pipe.ask(image, "what?", max_new_tokens=2, **kwargs)


def test_empty_and_long_prompts(pipe):
    with pytest.raises(InputError, match="empty prompt"):
        pipe.text_to_image("   ")
    with pytest.warns(ShowoWarning, match="only the first"):
        pipe.text_to_image("x" * 100, num_inference_steps=2)


def test_save_and_load_pipeline_directory(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    again = ShowoPipeline.from_pretrained(tmp_path / "p")
    a = pipe.text_to_image("a cube", num_inference_steps=3, seed=5)
    b = again.text_to_image("a cube", num_inference_steps=3, seed=5)
    assert torch.equal(a.codes, b.codes)
    assert again.tokenizer.vocab == pipe.tokenizer.vocab


def test_text_longer_than_the_model_context_is_an_input_error(pipe):
    limit = pipe.model.config.llm.max_position_embeddings
    with pytest.raises(InputError, match="positions"):
        pipe.write("x" * limit, max_new_tokens=4)
    with pytest.raises(InputError, match="positions"):
        pipe.ask(Image.new("RGB", (16, 16)), "why?", max_new_tokens=limit)


IMG = Image.new("RGB", (16, 16), "red")
MASK = Image.new("L", (16, 16), 255)


@pytest.mark.parametrize("call, match", [
    (lambda p: p.text_to_image({"a": 1, "b": 2}, num_inference_steps=2), "prompt must be a text or a list"),
    (lambda p: p.text_to_image(None), "prompt must be a text or a list"),
    (lambda p: p.write(b"abc", max_new_tokens=2), "prompt must be a text or a list of texts, got bytes"),
    (lambda p: p.inpaint(IMG, MASK, ["a"], num_inference_steps=2), "prompt must be one text"),
    (lambda p: p.text_to_image("a", num_inference_steps=10 ** 12), "at most 1000"),
    (lambda p: p.text_to_image("a", num_inference_steps=2, seed=0, generator=torch.Generator()), "not both"),
    (lambda p: p.text_to_image("a", num_inference_steps=2, generator=42), "torch.Generator"),
    (lambda p: p.text_to_image("a", num_inference_steps=2, seed=2 ** 64), "seed must be an integer"),
    (lambda p: p.text_to_image("a", num_inference_steps=2, callback=3), "callback must be callable"),
    (lambda p: p.write("a", max_new_tokens=2, on_token="x"), "on_token must be callable"),
    (lambda p: p.ask(torch.zeros(3, 16, 16), "what?", max_new_tokens=2), "file path or a PIL image, got Tensor"),
    (lambda p: p.mixed("a", max_new_tokens=600), "positions"),
    (lambda p: p.mixed("a <|soi|> b", max_new_tokens=4), "image marker"),
    (lambda p: p.decode_codes(p.vocab.codes_to_ids(torch.zeros(1, 16, dtype=torch.long))), "not token ids"),
    (lambda p: p.decode_codes(torch.full((1, 16), -5)), "image codes in"),
])
def test_python_api_inputs_of_the_wrong_kind_are_input_errors(pipe, call, match):
    """Each was a bare TypeError / IndexError / hang from deep inside, or a silent wrong result (a dict's keys
    as prompts, token ids decoded as clamped codes, a seed recorded that did not draw the result)."""
    with pytest.raises(InputError, match=match.replace("(", r"\(").replace("*", r"\*")):
        call(pipe)


def test_from_pretrained_refuses_parts_without_a_model():
    from showo.errors import ConfigError

    with pytest.raises(ConfigError, match="go with a model path"):
        ShowoPipeline.from_pretrained(vq="/nope")


def test_loading_and_saving_arguments_of_the_wrong_kind(pipe, tmp_path):
    from showo.errors import ConfigError

    with pytest.raises(ConfigError, match="model must be a path or a hub id, got int"):
        ShowoPipeline.from_pretrained(123)
    with pytest.raises(ConfigError, match="dtype must be a floating torch.dtype"):
        ShowoPipeline.from_pretrained(str(tmp_path), dtype="float16")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "showo").write_text("a file of the user's")
    with pytest.raises(ConfigError, match="is a file"):  # was replaced, and left behind as a hidden .showo.old
        pipe.save_pretrained(tmp_path / "d")
    assert (tmp_path / "d" / "showo").read_text() == "a file of the user's"
    with pytest.raises(InputError, match="non-empty list"):
        pipe.encode_images("picture.png")  # a string was iterated character by character
