"""The pipeline on a tiny random model: shapes, reproducibility, kept tokens, batching, errors."""
import json
import re
import shutil
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from showo.errors import ConfigError, InputError
from showo.model import Showo
from showo.pipelines import ShowoPipeline, ShowoWarning
from showo.sampling.autoregressive import GRAPH_MIN_NEW_TOKENS
from showo.tiny import tiny_random_pipeline
from showo.tokenizers.magvit import MagvitV2


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


def test_a_call_without_seed_records_the_seed_it_drew(pipe):
    """Every result can be reproduced from its metadata: without seed or generator a seed is drawn (from torch's
    global generator, so torch.manual_seed still pins the call) and recorded; a given generator records None."""
    torch.manual_seed(3)
    first = pipe.text_to_image("a red cube", num_images_per_prompt=2, num_inference_steps=3)
    seed = first.metadata[0]["seed"]
    assert isinstance(seed, int) and first.metadata[1]["seed"] == seed
    assert torch.equal(pipe.text_to_image("a red cube", num_images_per_prompt=2, num_inference_steps=3,
                                          seed=seed).codes, first.codes)
    torch.manual_seed(3)
    assert pipe.text_to_image("a red cube", num_images_per_prompt=2, num_inference_steps=3).metadata[0]["seed"] == seed
    text = pipe.write("once", max_new_tokens=4, temperature=1.0)
    assert pipe.write("once", max_new_tokens=4, temperature=1.0, seed=text.metadata[0]["seed"]).token_ids == \
        text.token_ids
    given = pipe.write("once", max_new_tokens=2, generator=torch.Generator().manual_seed(1))
    assert given.metadata[0]["seed"] is None


def test_from_pretrained_takes_the_clis_model_names(pipe):
    """"tiny-random" and "embedded" name the same models in Python as after --model, and device="auto" too."""
    torch.manual_seed(5)
    tiny = ShowoPipeline.from_pretrained("tiny-random", device="auto")
    assert torch.equal(torch.rand(3), torch.manual_seed(5) and torch.rand(3))  # the caller's generator is untouched
    assert torch.equal(tiny.text_to_image("a", num_inference_steps=2, seed=1).codes,
                       pipe.text_to_image("a", num_inference_steps=2, seed=1).codes)
    assert ShowoPipeline.from_pretrained("embedded").model_id == ShowoPipeline.from_pretrained().model_id
    with pytest.raises(ConfigError, match="tiny-random model has its own"):
        ShowoPipeline.from_pretrained("tiny-random", vq="x")


def test_a_compiled_model_generates_the_same_image():
    """`pipe.model = torch.compile(pipe.model)` (the README's recipe): same codes as eager in float32."""
    pipe = tiny_random_pipeline(seed=0)
    eager = pipe.text_to_image("a red cube", num_inference_steps=2, seed=7)
    pipe.model = torch.compile(pipe.model)
    assert torch.equal(pipe.text_to_image("a red cube", num_inference_steps=2, seed=7).codes, eager.codes)


def test_compiled_decoding_answers_the_same():
    """`pipe.compile_decoding()` runs ask's decoding step under torch.compile (dynamo makes a graph) and gives the
    eager answer; `exact` calls stay uncompiled."""
    from torch._dynamo.utils import counters

    pipe, image = tiny_random_pipeline(seed=0), Image.new("RGB", (32, 32), (255, 0, 0))
    eager = pipe.ask(image, "what colour?", max_new_tokens=6).token_ids
    torch._dynamo.reset()  # forget earlier compiles of these shapes, so that this test must compile
    graphs = counters["stats"]["unique_graphs"]
    assert pipe.compile_decoding() is pipe
    assert pipe.ask(image, "what colour?", max_new_tokens=6).token_ids == eager
    assert counters["stats"]["unique_graphs"] > graphs
    graphs = counters["stats"]["unique_graphs"]
    assert pipe.ask(image, "what colour?", max_new_tokens=6, exact=True).token_ids == eager
    short = GRAPH_MIN_NEW_TOKENS - 1  # too short for the graph: not compiled either
    assert pipe.ask(image, "what colour?", max_new_tokens=short).token_ids[0] == eager[0][:short]
    assert counters["stats"]["unique_graphs"] == graphs and pipe.compile_decoding(False).compiled_decoding is False
    with pytest.raises(InputError, match="enabled must be True or False, got 'yes'"):
        pipe.compile_decoding("yes")


def test_text_metadata_records_whether_decoding_was_compiled(decoding_spy):
    """ask and write record `compiled_decoding` as the decoder was asked to run (spied: nothing compiles here)."""
    asked = decoding_spy
    pipe, image = tiny_random_pipeline(seed=0).compile_decoding(), Image.new("RGB", (32, 32), (255, 0, 0))
    long, short = GRAPH_MIN_NEW_TOKENS, GRAPH_MIN_NEW_TOKENS - 1
    recorded = [pipe.write("a", max_new_tokens=long).metadata[0]["compiled_decoding"],
                pipe.write("a", max_new_tokens=short).metadata[0]["compiled_decoding"],
                pipe.ask(image, "what?", max_new_tokens=long, exact=True).metadata[0]["compiled_decoding"]]
    assert recorded == asked == [True, False, False]


@pytest.mark.parametrize("temperature", [1.0, 100.0])
def test_inpaint_keeps_unmasked_tokens(temperature):
    """Also at a high image temperature, whose Gumbel noise used to outweigh the known tokens' confidence and
    regenerate some of them (201 of 480 kept codes over ten seeds at 100, before)."""
    pipe = tiny_random_pipeline(seed=0, grid=8)
    image = Image.new("RGB", (40, 40), (200, 30, 30))
    mask = Image.new("L", (40, 40), 0)
    mask.paste(255, (0, 0, 20, 40))  # left half
    out = pipe.inpaint(image, mask, "a green ball", num_images=4, num_inference_steps=3, temperature=temperature,
                       seed=1)
    original = pipe.encode_images([image])[0]
    g = pipe.grid_size
    keep = torch.ones(g, g, dtype=torch.bool)
    keep[:, : g // 2] = False
    for codes in out.codes:
        assert torch.equal(codes[keep.reshape(-1)], original[keep.reshape(-1)])


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


def test_ask_pairwise_asks_question_i_about_image_i_alone(pipe, monkeypatch):
    """Each pairwise row decodes from the prompt of a call with its pair alone (the tiny random model answers
    alike whatever it sees, so the prompts, not the tokens, show a mix-up)."""
    import showo.pipelines.showo_pipeline as module

    seen, real = [], module.generate_text
    monkeypatch.setattr(module, "generate_text", lambda *a, **k: seen.append(a[1]) or real(*a, **k))
    images = [Image.new("RGB", (32, 32), c) for c in [(255, 0, 0), (0, 0, 255), (255, 0, 0)]]
    questions = ["what colour?", "how many objects are there?", "is there a circle?"]
    out = pipe.ask(images, questions, max_new_tokens=4, pairwise=True)
    batch = seen.pop()
    assert len(batch) == 3 and len(out.texts) == 3
    for k in range(3):
        alone = pipe.ask(images[k], questions[k], max_new_tokens=4)
        assert torch.equal(batch[k], seen.pop()[0]) and out.token_ids[k] == alone.token_ids[0], k
        assert {n: out.metadata[k][n] for n in ("image_index", "question", "num_images", "pairwise")} == {
            "image_index": k, "question": questions[k], "num_images": 3, "pairwise": True}
    assert "pairwise" not in alone.metadata[0]  # (the cross product's metadata is as before)
    with pytest.raises(InputError, match="pairwise takes one question per image, got 3 images and 2 questions"):
        pipe.ask(images, questions[:2], pairwise=True)
    with pytest.raises(InputError, match="pairwise must be True or False"):
        pipe.ask(images[0], questions[0], pairwise="yes")


def test_understanding_warns_when_it_crops_a_picture(pipe):
    """ask and caption see the centre square only, as inpainting and extrapolation do (they warned; these did not:
    a 160x64 picture's objects at its sides were silently cut away)."""
    with pytest.warns(ShowoWarning, match="the image is 40x30: understanding works on its centre 30x30 square"):
        pipe.caption([Image.new("RGB", (32, 32)), Image.new("RGB", (40, 30))], max_new_tokens=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe.ask(Image.new("RGB", (32, 32)), "what colour?", max_new_tokens=1)


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


def test_flags_must_be_true_or_false(pipe):
    """A string such as "false" is truthy: it used to force images (and exact mode) while the metadata said 'false'."""
    with pytest.raises(InputError, match="force_image_every_sentence must be True or False, got 'false'"):
        pipe.mixed("A cube.", max_new_tokens=4, force_image_every_sentence="false")
    with pytest.raises(InputError, match="exact must be True or False, got 1"):
        pipe.text_to_image("a cube", num_inference_steps=2, exact=1)
    with pytest.raises(InputError, match="exact must be True or False"):
        pipe.ask(Image.new("RGB", (16, 16)), "what?", 2, 0.0, None, None, None, None, None, "yes")  # positional
    out = pipe.text_to_image("a cube", num_inference_steps=2, seed=0, exact=np.bool_(True))  # numpy's is a bool
    assert out.metadata[0]["exact"] is True


def test_metadata_records_what_produced_the_result(pipe):
    """The batch, the mode and how the model ran change the tokens, so the metadata says them."""
    image, mask = Image.new("RGB", (16, 16), "red"), Image.new("L", (16, 16), 255)
    a = pipe.inpaint(image, mask, "x", num_images=2, num_inference_steps=2, seed=3)
    assert a.metadata[0]["num_images"] == 2 and a.metadata[0]["exact"] is False
    assert {k: a.metadata[0][k] for k in ("dtype", "device", "packed_weights")} == {
        "dtype": "float32", "device": "cpu", "packed_weights": False}
    w = pipe.write(["once", "the cat"], max_new_tokens=2, exact=True)
    assert w.metadata[1]["batch_prompts"] == ["once", "the cat"] and w.metadata[1]["exact"] is True
    q = pipe.ask([image, image], "what?", max_new_tokens=2)
    assert q.metadata[1]["num_images"] == 2 and q.metadata[0]["batch_questions"] == ["what?"]
    half = tiny_random_pipeline(seed=0).to(dtype=torch.bfloat16).text_to_image("x", num_inference_steps=2)
    assert half.metadata[0]["dtype"] == "bfloat16"
    json.dumps([a.metadata, w.metadata, q.metadata, half.metadata])


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
    tiny_random_pipeline(seed=0).vq.to(torch.bfloat16).save_pretrained(tmp_path / "vq16")  # as the embedded one is
    again = ShowoPipeline.from_pretrained(tmp_path / "p", vq=tmp_path / "vq16")
    assert {p.dtype for p in again.vq.parameters()} == {torch.float32}  # the image tokenizer always runs in float32, however it is stored


def test_save_pretrained_is_whole_or_nothing_and_reads_home(pipe, tmp_path, monkeypatch):
    from showo.errors import CheckpointError, OutputError

    monkeypatch.setenv("HOME", str(tmp_path))
    pipe.save_pretrained("~/p")  # made a folder literally called '~' in the working directory
    assert (tmp_path / "p" / "magvit").is_dir() and ShowoPipeline.from_pretrained("~/p").model_id.endswith("p")
    def tree():
        return {f.relative_to(tmp_path): f.is_file() and f.read_bytes() for f in (tmp_path / "p").rglob("*")}

    before = tree()
    monkeypatch.setattr(pipe.tokenizer, "write_files", lambda d: (_ for _ in ()).throw(OSError(28, "No space")))
    with pytest.raises(OutputError, match="cannot save the pipeline into .*: No space"):
        pipe.save_pretrained(tmp_path / "p")  # the last part fails: the showo/ and magvit/ written are not swapped in
    assert tree() == before  # nothing staged is left behind either
    with pytest.raises(OutputError, match="cannot save the pipeline into .*: No space"):
        pipe.save_pretrained(tmp_path / "new" / "p")
    assert not (tmp_path / "new").exists()  # the folders it made are gone again
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="file/sub: Not a directory"):  # was a raw NotADirectoryError
        pipe.save_pretrained(tmp_path / "file" / "sub")
    shutil.rmtree(tmp_path / "p" / "magvit")  # a pipeline directory missing a part was looked up on the hub
    with pytest.raises(CheckpointError, match="has showo/ but no magvit/"):
        ShowoPipeline.from_pretrained(tmp_path / "p")


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
    # a wrong signature failed at the first step, after the prompt pass
    (lambda p: p.text_to_image("a", num_inference_steps=2, callback=lambda: None),
     "callback is called as callback(step); its signature () does not take that"),
    (lambda p: p.write("a", max_new_tokens=2, on_token=lambda step: None), "on_token(step, ids, finished)"),
    (lambda p: p.mixed("a", max_new_tokens=2, on_token=lambda a, b, c, d: None), "on_token is called as"),
    (lambda p: p.ask(torch.zeros(3, 16, 16), "what?", max_new_tokens=2),
     "a PIL image, a numpy array or a file's bytes, got Tensor"),
    (lambda p: p.mixed("a", max_new_tokens=600), "positions"),
    (lambda p: p.mixed("a <|soi|> b", max_new_tokens=4), "prompt contains <|soi|>, a token of Show-o's sequence markup"),
    # the cached and exact t2i paths disagreed on such a prompt; [PAD] became the pad id
    (lambda p: p.text_to_image("a <|soi|> red cube", num_inference_steps=2), "prompt contains <|soi|>"),
    (lambda p: p.inpaint(IMG, MASK, "x [PAD] y", num_inference_steps=2), "prompt contains [PAD]"),
    # Phi's bos/eos: alone it was the unconditional prompt (guidance did nothing); inside, it ended the text
    (lambda p: p.text_to_image("<|endoftext|>", num_inference_steps=2), "prompt contains <|endoftext|>"),
    (lambda p: p.ask(IMG, "what<|endoftext|>is it"), "question contains <|endoftext|>"),
    (lambda p: p.tokenizer.encode_text(5), "prompt must be text, got int"),
    (lambda p: p.tokenizer.encode_batch("abc"), "takes a list of texts, got one string"),
    (lambda p: p.tokenizer.decode([-1]), "token ids must be >= 0"),
    # the size of what is decoded was unbounded: it failed for memory at the end, after all the generation
    (lambda p: p.decode_codes(torch.zeros(1, 2 * 10 ** 6, dtype=torch.long), grid=(1, 2 * 10 ** 6)),
     "over the 16,777,216-pixel limit of one decoded image"),
    (lambda p: p.extrapolate(IMG, "x", ["left", "up"] * 2000, num_inference_steps=2), "pixel limit of one decoded"),
    (lambda p: p.decode_codes(torch.zeros(4097, 16, dtype=torch.long)), "4097 images asks for 4097 rows"),
    (lambda p: p.decode_codes(torch.zeros(1, 16, dtype=torch.complex64)), "codes must be a tensor of image codes"),
    (lambda p: p.ask(IMG, "what <|t2i|>?", max_new_tokens=2), "question contains <|t2i|>"),
    (lambda p: p.write("<|eoi|>", max_new_tokens=2), "prompt contains <|eoi|>"),
    # each of these was a raw traceback (or, for the counts, a process killed for memory)
    (lambda p: p.encode_images(np.zeros((32, 32, 3))), "images must be a non-empty list"),
    (lambda p: p.extrapolate(IMG, "x", None), "directions must be a direction or a list"),
    (lambda p: p.extrapolate(IMG, "x", {"left", "up"}), "got set"),  # hash order
    (lambda p: p.text_to_image("x", schedule=None), "schedule must be a schedule name"),
    (lambda p: p.decode_codes(torch.zeros(1, 16, dtype=torch.long), grid=4), "grid must be (h, w) with h * w = 16 codes, got 4"),
    (lambda p: p.decode_codes(torch.zeros(1, 24, dtype=torch.long)), "do not form a square grid: pass grid="),
    (lambda p: p.decode_codes(torch.zeros(1, 0, dtype=torch.long)), "at least one of each"),
    (lambda p: p.text_to_image("x", guidance_scale=Fraction(7, 4)), "guidance_scale must be a number"),
    (lambda p: p.text_to_image(["x", "y"], num_images_per_prompt=3000), "asks for 6000 images in one call"),
    (lambda p: p.inpaint(IMG, MASK, "x", num_images=10 ** 9), "at most 4096"),
    # text tasks had no cap (4097 answers ran for minutes before the first token)
    (lambda p: p.ask([IMG] * 2049, ["a", "b"]), "2049 images x 2 questions asks for 4098 rows in one call; at most"),
    (lambda p: p.write(["x"] * 4097), "4097 prompts asks for 4097 rows"),
    (lambda p: p.encode_images([IMG] * 4097), "4097 images asks for 4097 rows"),
    (lambda p: p.decode_codes(p.vocab.codes_to_ids(torch.zeros(1, 16, dtype=torch.long))), "not token ids"),
    (lambda p: p.decode_codes(torch.full((1, 16), -5)), "image codes in"),
])
def test_python_api_inputs_of_the_wrong_kind_are_input_errors(pipe, call, match):
    """Each was a bare TypeError / IndexError / hang from deep inside, or a silent wrong result (a dict's keys
    as prompts, token ids decoded as clamped codes, a seed recorded that did not draw the result)."""
    with pytest.raises(InputError, match=re.escape(match)):
        call(pipe)


@pytest.mark.parametrize("call, match", [
    (lambda p: p.to("banana"), "device 'banana' is not a device name"),
    (lambda p: p.to("meta"), "showo runs on cpu, cuda or mps"),  # accepted, then every call failed
    (lambda p: p.to(5), "device must be a name"),
    (lambda p: p.to(dtype="bfloat16"), "dtype must be torch.float32, torch.bfloat16, torch.float16 or torch.float64"),
    (lambda p: p.to(dtype=torch.complex64), "dtype must be torch.float32, torch.bfloat16, torch.float16 or torch.float64"),
    (lambda p: ShowoPipeline.from_pretrained(dtype="bf16"), "dtype must be torch.float32, torch.bfloat16, torch.float16 or torch.float64"),  # embedded
    (lambda p: ShowoPipeline.from_pretrained(device="banana"), "device 'banana'"),
    (lambda p: p.to(dtype=torch.float8_e4m3fn), "or torch.float64, got torch.float8_e4m3fn"),  # failed at first call
    # the parts' own loaders took any device, dtype or config (meta loaded; a dict config failed deep inside)
    (lambda p: Showo.from_pretrained("nowhere", device="meta"), "showo runs on cpu, cuda or mps"),
    (lambda p: Showo.from_pretrained("nowhere", dtype=torch.int8), "dtype must be torch.float32"),
    (lambda p: Showo.from_pretrained("nowhere", config={}), "config must be a ShowoConfig or None, got dict"),
    (lambda p: Showo.from_pretrained(None), "the model path or hub id must be a path, got NoneType"),
    (lambda p: MagvitV2.from_pretrained("nowhere", device="meta"), "showo runs on cpu, cuda or mps"),
    (lambda p: MagvitV2.from_pretrained("nowhere", dtype=torch.float8_e5m2), "dtype must be torch.float32"),
    (lambda p: MagvitV2.from_pretrained("nowhere", config=p.model.config), "config must be a MagvitConfig or None"),
    (lambda p: MagvitV2.from_pretrained(""), "the model path or hub id must be a non-empty path"),
])
def test_devices_and_dtypes_are_checked(pipe, call, match):
    with pytest.raises(ConfigError, match=match):
        call(pipe)
    assert pipe.device.type == "cpu" and pipe.model.dtype == torch.float32


def test_from_pretrained_refuses_parts_without_a_model():
    from showo.errors import ConfigError

    with pytest.raises(ConfigError, match="go with a model path"):
        ShowoPipeline.from_pretrained(vq="/nope")


def test_loading_and_saving_arguments_of_the_wrong_kind(pipe, tmp_path):
    from showo.errors import ConfigError

    with pytest.raises(ConfigError, match="model must be a path or a hub id, got int"):
        ShowoPipeline.from_pretrained(123)
    with pytest.raises(ConfigError, match="dtype must be torch.float32, torch.bfloat16, torch.float16 or torch.float64"):
        ShowoPipeline.from_pretrained(str(tmp_path), dtype="float16")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "showo").write_text("a file of the user's")
    with pytest.raises(ConfigError, match="is a file"):  # was replaced, and left behind as a hidden .showo.old
        pipe.save_pretrained(tmp_path / "d")
    assert (tmp_path / "d" / "showo").read_text() == "a file of the user's"
    with pytest.raises(InputError, match="non-empty list"):
        pipe.encode_images("picture.png")  # a string was iterated character by character


def test_images_as_viewers_show_them(tmp_path):
    """EXIF orientation, float and big-endian 16-bit pixels, premultiplied alpha: read as a viewer shows them."""
    from showo.tokenizers.image_io import load_image

    photo = Image.new("RGB", (32, 16), "red")
    photo.paste((0, 0, 255), (0, 0, 8, 16))  # blue on the left of the stored pixels
    exif = photo.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    photo.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "phone.jpg")
    assert upright.size == (16, 32) and upright.getpixel((8, 2))[2] > 200  # the blue band is on top now
    assert load_image(Image.fromarray(np.full((4, 4), 0.9, np.float32))).getpixel((0, 0)) == (229, 229, 229)
    assert load_image(Image.fromarray(np.full((4, 4), 200.0, np.float32))).getpixel((0, 0)) == (200, 200, 200)
    wide = load_image(Image.frombytes("I;16B", (8, 8), bytes(range(128))))
    assert wide.getextrema()[0] == (0, 126)  # 16-bit pixels are 0..65535: the brightest, 32383, is mid-grey
    # scaled by its own brightest pixel, a dark 16-bit picture came out white (and a near-black mask all white)
    sixteen = lambda v, dtype=np.uint16: load_image(Image.fromarray(np.full((4, 4), v, dtype))).getpixel((0, 0))
    assert sixteen(1000) == (3, 3, 3) and sixteen(65535) == (255, 255, 255)
    assert sixteen(200, np.int32) == (200, 200, 200) and sixteen(20000, np.int32) == (77, 77, 77)  # 8- or 16-bit
    with pytest.raises(InputError, match=r"32-bit integer pixels must be 0..255 or 0..65535, got 70000..70000"):
        sixteen(70000, np.int32)
    nan = np.full((4, 4), 0.5, np.float32)
    nan[1, 1] = np.nan  # came out black
    with pytest.raises(InputError, match="float pixels must be finite numbers"):
        load_image(Image.fromarray(nan))
    assert load_image(Image.new("La", (4, 4))).mode == "RGB"


def test_lazily_opened_images_are_checked_like_paths(tmp_path):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    closed = Image.open(tmp_path / "a.png")
    closed.close()
    pipe = tiny_random_pipeline(seed=0)
    for image, match in ((Image.open(tmp_path / "cut.png"), "image cannot be read: image file is truncated"),
                         (closed, "image cannot be read: Operation on closed image")):
        with pytest.raises(InputError, match=match):
            pipe.ask(image, "what?", max_new_tokens=2)


def test_strokes_on_a_transparent_mask_select_only_the_strokes():
    """A mask painted as white strokes on a transparent layer was composited onto white: all of it regenerated."""
    from showo.pipelines.inputs import load_mask
    from showo.tokenizers.image_io import load_image

    layer = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (0, 0, 8, 16))
    mask = load_mask(layer, (16, 16))
    assert mask.getpixel((2, 2)) == 255 and mask.getpixel((12, 2)) == 0
    assert load_image(layer).getpixel((12, 2)) == (255, 255, 255)  # pictures still show white where transparent


def test_a_prompt_too_long_for_the_model_is_refused_before_its_mask_is_built(pipe, monkeypatch):
    """A 100,000-token prompt's [L, L] mask alone is 10 GB: the length is checked first."""
    import showo.pipelines.showo_pipeline as module

    def no_mask(*args, **kwargs):
        raise AssertionError("a mask was built for a prompt that cannot fit")

    monkeypatch.setattr(module, "causal_mask", no_mask)
    monkeypatch.setattr(module, "mmu_mask", no_mask)
    limit = pipe.model.config.llm.max_position_embeddings
    long = "word " * (2 * limit)
    with pytest.raises(InputError, match=f"exceeds the model's {limit} positions"):
        pipe.write(long, max_new_tokens=2)
    with pytest.raises(InputError, match=f"exceeds the model's {limit} positions"):
        pipe.ask(Image.new("RGB", (32, 32)), long, max_new_tokens=2)


def test_save_pretrained_keeps_the_other_files_of_the_directory(pipe, tmp_path, monkeypatch):
    """A save into a folder holding other files writes its own and keeps theirs (it used to swap the whole folder,
    deleting them); an empty path (the working directory by accident) and a NUL byte are one-line errors."""
    from showo.errors import ConfigError, OutputError

    for target, save in ((tmp_path / "m", pipe.model.save_pretrained), (tmp_path / "v", pipe.vq.save_pretrained),
                         (tmp_path / "t", pipe.tokenizer.save_pretrained), (tmp_path / "p", pipe.save_pretrained),
                         (tmp_path / "p" / "showo", pipe.model.save_pretrained)):
        target.mkdir(exist_ok=True)
        (target / "README.md").write_text("notes")
        save(target)
        save(target)  # and again over its own files
        assert (target / "README.md").read_text() == "notes"
        assert not [f for f in target.iterdir() if f.name.startswith(".")]  # no staging folder left
    again = ShowoPipeline.from_pretrained(tmp_path / "p").model.state_dict()
    assert all(torch.equal(again[k], v) for k, v in pipe.model.state_dict().items())
    monkeypatch.chdir(tmp_path / "m")
    pipe.model.save_pretrained(".")  # the working directory itself, asked for plainly
    assert (tmp_path / "m" / "README.md").exists() and (tmp_path / "m" / "config.json").exists()
    for save in (pipe.model.save_pretrained, pipe.vq.save_pretrained, pipe.tokenizer.save_pretrained,
                 pipe.save_pretrained):
        for bad in ("", "  ", "a\0b", 3):
            with pytest.raises(ConfigError, match="directory must be"):
                save(bad)
    assert sorted(f.name for f in (tmp_path / "m").iterdir()) == ["README.md", "config.json",
                                                                 "pytorch_model.safetensors"]
    (tmp_path / "c" / "config.json").mkdir(parents=True)  # a folder where a file goes: refused before any move
    with pytest.raises(OutputError, match="cannot save the model into .*c: .*config.json is a directory"):
        pipe.model.save_pretrained(tmp_path / "c")
    assert [f.name for f in (tmp_path / "c").iterdir()] == ["config.json"]


def test_callbacks_that_edit_what_they_are_shown_change_nothing(pipe):
    """The step's codes, masking and confidences, and the streamed ids, were the decoder's own tensors: a callback
    that wrote into them changed the result."""
    def vandal(step):
        step.codes.fill_(0)
        step.masking.fill_(True)
        step.selected_probs.fill_(0)
        step.mask_len.fill_(0)

    plain = pipe.text_to_image("a cube", num_inference_steps=3, seed=5)
    edited = pipe.text_to_image("a cube", num_inference_steps=3, seed=5, callback=vandal)
    assert torch.equal(plain.codes, edited.codes)
    plain = pipe.write("a cube", max_new_tokens=6, seed=1, temperature=1.0)
    edited = pipe.write("a cube", max_new_tokens=6, seed=1, temperature=1.0,
                        on_token=lambda step, ids, finished: (ids.fill_(0), finished.fill_(True)))
    assert plain.token_ids == edited.token_ids


def test_the_constructor_and_generators_are_checked(pipe, monkeypatch):
    """A path given to the constructor, or a generator on another device than the model, failed deep inside."""
    from showo.errors import ConfigError

    parts = {"model": pipe.model, "vq": pipe.vq, "tokenizer": pipe.tokenizer}
    for name, value, match in (("model", "checkpoints/show-o", "model must be a Showo .*, got str"),
                               ("vq", pipe.model, "vq must be a MagvitV2 .*, got Showo"),
                               ("clip", 3, "clip must be a ClipVisionTower or None, got int"),
                               ("model_id", None, "model_id must be a string, got NoneType")):
        with pytest.raises(ConfigError, match=match):
            ShowoPipeline(**{**parts, name: value})
    monkeypatch.setattr(ShowoPipeline, "device", property(lambda self: torch.device("cuda", 0)))
    with pytest.raises(InputError, match=r"generator is on cpu, the model on cuda: make it with "
                                         r"torch.Generator\(device='cuda:0'\)"):
        pipe.text_to_image("x", num_inference_steps=2, generator=torch.Generator())


def test_the_model_forward_checks_shapes_and_kinds(pipe):
    """An integer 0/1 mask (as Hugging Face models take) was read as an additive one, silently removing causality;
    ids past the vocabulary or the context were index errors from inside."""
    m, ids = pipe.model, torch.randint(0, 256, (1, 10))
    limit = m.config.llm.max_position_embeddings
    for kwargs, match in (({"attention_mask": torch.ones(1, 10, dtype=torch.long)}, "attention_mask must be"),
                          ({"attention_mask": torch.ones(10, 10, dtype=torch.long).tril()[None, None]},
                           "boolean .* or additive float, got torch.int64"),
                          ({"input_ids": ids + 10 ** 5}, "input_ids must lie in"),
                          ({"input_ids": ids.float()}, "input_ids must be integers"),
                          ({"input_ids": torch.zeros(1, limit + 1, dtype=torch.long)}, f"exceed the model's {limit}"),
                          ({"input_embeddings": torch.zeros(1, 10, m.config.llm.hidden_size)}, "exactly one of")):
        with pytest.raises(InputError, match=match):
            m(**{"input_ids": ids, **kwargs})
    with torch.no_grad():
        assert torch.equal(m(ids), m(ids, attention_mask=torch.ones(10, 10, dtype=torch.bool).tril()[None, None]))


def test_any_path_like_object_is_a_path(pipe, tmp_path):
    """save_pretrained took any os.PathLike, from_pretrained and load_image refused those that are not Path."""
    import pathlib

    from showo.tokenizers.image_io import load_image

    class Where:
        def __init__(self, path):
            self.path = str(path)

        def __fspath__(self):
            return self.path

    pipe.save_pretrained(Where(tmp_path / "p"))
    assert ShowoPipeline.from_pretrained(pathlib.PurePosixPath(tmp_path / "p")).model_id == str(tmp_path / "p")
    IMG.save(tmp_path / "i.png")
    assert load_image(Where(tmp_path / "i.png")).size == IMG.size


def _spy(monkeypatch, module, name: str) -> list:
    """Record the (args, kwargs) of every call of `module.name`, which still runs."""
    calls, real = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    return calls


def _holds(row: torch.Tensor, ids: list[int]) -> bool:
    """Whether the id row holds `ids` as a contiguous run."""
    row = row.tolist()
    return any(row[i:i + len(ids)] == ids for i in range(len(row) - len(ids) + 1))


def test_every_task_passes_its_arguments_on(pipe, monkeypatch):
    """What each method hands to the samplers: the seed's generator, every sampling argument and each step's own
    prompt (a pipeline that ignored its seed, dropped the image temperature or top_p, used the first prompt for
    every extrapolation step or asked without the question template passed every test that compared two runs)."""
    import showo.pipelines.interleaved as interleaved
    import showo.pipelines.showo_pipeline as module
    from showo.prompting.sequences import mmu_prompt_ids, mmu_question_text

    images = _spy(monkeypatch, module, "maskgit_generate")
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    settings = dict(num_inference_steps=3, guidance_scale=0.5, temperature=2.5, schedule="linear")
    pipe.text_to_image("ab", seed=1, **settings)
    pipe.inpaint(image, Image.new("L", (32, 32), 255), "ab", seed=1, **settings)
    pipe.extrapolate(image, ["ab", "cd"], ["left", "up"], seed=1, **settings)
    prompts = ["ab", "ab", "ab", "cd", "cd"]  # extrapolation: one window left, then two up the wider canvas
    assert len(images) == len(prompts)
    for (args, kwargs), prompt in zip(images, prompts):
        assert {k: kwargs[k] for k in settings} == settings and kwargs["generator"].initial_seed() == 1
        assert _holds(args[1][0], pipe.tokenizer.encode_text(prompt, "prompt"))
    draws = [pipe.text_to_image("ab", num_inference_steps=3, seed=s).codes for s in (7, 7, 8)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])

    texts = _spy(monkeypatch, module, "generate_text")
    pipe.ask(image, "what?", max_new_tokens=2, temperature=0.7, top_k=5, top_p=0.9, seed=1)
    (args, kwargs), = texts
    assert (kwargs["temperature"], kwargs["top_k"], kwargs["top_p"], kwargs["max_new_tokens"]) == (0.7, 5, 0.9, 2)
    assert kwargs["generator"].initial_seed() == 1
    codes = pipe.encode_images([image]).cpu()[0]
    want = mmu_prompt_ids(pipe.vocab, pipe.vocab.codes_to_ids(codes),
                          pipe.tokenizer.encode_text(mmu_question_text("what?"), "question"))[0]
    assert torch.equal(args[1][0], want)

    mixed = _spy(monkeypatch, interleaved, "maskgit_generate")
    pipe.mixed("ab.", max_images=1, max_new_tokens=1, num_inference_steps=2, image_temperature=3.5,
               force_image_every_sentence=True, seed=1)
    (_, kwargs), = mixed
    assert (kwargs["temperature"], kwargs["num_inference_steps"], kwargs["generator"].initial_seed()) == (3.5, 2, 1)


def test_numpy_arrays_are_images(pipe):
    """[H, W, 3] uint8 (as from PIL or imageio), [H, W] and float [0, 1] arrays (as from matplotlib) are images;
    other shapes and ranges are one-line errors."""
    from showo.tokenizers.image_io import load_image

    picture = Image.new("RGB", (32, 32), (200, 30, 30))
    array = np.asarray(picture)
    assert load_image(array).tobytes() == picture.tobytes()
    assert load_image(array.astype(np.float32) / 255).tobytes() == picture.tobytes()
    assert load_image(np.full((2, 2), 0.5)).getpixel((0, 0)) == (128, 128, 128)  # rounded, not truncated
    assert load_image(array[:, :, 0]).getpixel((0, 0)) == (200, 200, 200)  # one channel: grey
    assert load_image(np.zeros((4, 4), dtype=bool)).getpixel((0, 0)) == (0, 0, 0)
    codes = pipe.encode_images([picture])
    assert torch.equal(pipe.encode_images([array]), codes)
    answers = [pipe.ask(i, "what?", max_new_tokens=2).token_ids for i in (array, picture)]
    assert answers[0] == answers[1]
    for bad, match in ((np.zeros((3, 16, 16), dtype=np.uint8), r"\[H, W\] or \[H, W, 1\|3\|4\] \(channels last\)"),
                       (array.astype(np.float32), r"float arrays must hold values in \[0, 1\]"),
                       (array.astype(np.int64), "arrays must be uint8, bool or floats in"),
                       (np.full((4, 4), np.nan), r"in \[0, 1\]")):
        with pytest.raises(InputError, match=match):
            load_image(bad)


def test_file_bytes_are_images(tmp_path):
    """An image file's bytes (an upload) read as the file does, with the file's one-line errors."""
    from showo.tokenizers.image_io import load_image

    picture = Image.new("RGBA", (6, 4), (10, 200, 30, 0))
    picture.save(tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    assert load_image(data).tobytes() == load_image(tmp_path / "p.png").tobytes() == Image.new("RGB", (6, 4),
                                                                                               "white").tobytes()
    assert load_image(bytearray(data)).size == (6, 4)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "n.png")
    noise = (tmp_path / "n.png").read_bytes()
    for bad, match in ((b"", r"^image is empty \(0 bytes\)$"),
                       (b"not a picture", r"^image \(13 bytes\) is not an image file Pillow can read$"),
                       (noise[:500], r"^image \(500 bytes\) is corrupt or truncated")):
        with pytest.raises(InputError, match=match):
            load_image(bad)
    with pytest.raises(InputError, match="a numpy array or a file's bytes, got int"):
        load_image(3)


def test_output_types(pipe):
    """diffusers' output_type: "np" and "pt" are the decoder's pixels in [0, 1] (the PIL images hold them cut to 8
    bits), "latent" skips the decoding; the codes are the same whatever is asked."""
    kwargs = dict(num_inference_steps=2, seed=3)
    pil = pipe.text_to_image("a", **kwargs)
    as_np = pipe.text_to_image("a", output_type="np", **kwargs)
    as_pt = pipe.text_to_image("a", output_type="pt", **kwargs)
    latent = pipe.text_to_image("a", output_type="latent", **kwargs)
    assert latent.images is None and all(torch.equal(o.codes, pil.codes) for o in (as_np, as_pt, latent))
    r = pipe.resolution
    assert as_np.images.shape == (1, r, r, 3) and as_np.images.dtype == np.float32
    assert as_pt.images.shape == (1, 3, r, r) and torch.equal(as_pt.images.permute(0, 2, 3, 1),
                                                              torch.from_numpy(as_np.images))
    assert 0 <= as_np.images.min() and as_np.images.max() <= 1
    assert np.array_equal((as_np.images[0] * 255).astype(np.uint8), np.asarray(pil.images[0]))
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    assert pipe.inpaint(image, Image.new("L", (32, 32), 255), "a", output_type="latent", **kwargs).images is None
    grown = pipe.extrapolate(image, "a", "left", output_type="pt", **kwargs)
    assert grown.images.shape[-1] > grown.images.shape[-2]
    for bad in ("PIL", None, "latents"):
        with pytest.raises(InputError, match="output_type must be one of 'pil', 'np', 'pt', 'latent'"):
            pipe.text_to_image("a", output_type=bad, **kwargs)
    with pytest.raises(InputError, match="output_type must be one of 'pil', 'np', 'pt', got 'latent'"):
        pipe.decode_codes(pil.codes, output_type="latent")
