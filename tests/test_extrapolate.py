"""Extrapolation: the official token-grid bookkeeping (golden), our fixed `down`, mixed axes, and the pipeline."""
import pytest
import torch
from PIL import Image

from showo.errors import InputError
from showo.pipelines.extrapolate import UNKNOWN, extend_canvas, grow_canvas, window_ids, window_origins
from showo.prompting.sequences import t2i_gen_sequence
from showo.tiny import tiny_random_pipeline
from showo.tokenizers.text import TextTokenizer

VOCAB = TextTokenizer.byte_level(codebook_size=64).vocab


@pytest.fixture(scope="module")
def pipe():
    return tiny_random_pipeline(seed=0)


@pytest.fixture(scope="module")
def picture():
    image = Image.new("RGB", (40, 40), (30, 120, 200))
    image.paste((250, 200, 10), (0, 0, 20, 20))
    return image


@pytest.mark.golden
def test_extrapolation_bookkeeping_matches_official(golden, golden_tokenizer):
    case, info, vocab = golden.case("extrapolate_grid"), golden.info("extrapolate_grid"), golden_tokenizer.vocab
    g, b = info["W"], info["batch_size"]
    max_len = golden.meta["omegaconf_config_passed_as_config"]["dataset"]["preprocessing"]["max_seq_length"]
    assert len(info["runs"]) == 10
    for name, run in info["runs"].items():
        canvas = case["input.initial_codes"].reshape(1, g, g).repeat(b, 1, 1)
        for k, (prompt, direction) in enumerate(zip(run["prompts"], run["directions"], strict=True)):
            step, seen = f"{name}.step{k}", []

            def fake(ids, step=step, seen=seen):
                seen.append(ids)
                return case[f"{step}.fake_generated"]

            canvas = extend_canvas(canvas, direction, run["offset"], g, vocab, fake)
            assert len(seen) == 1, name  # a g-row (g-column) canvas is one window, as in the official script
            assert torch.equal(seen[0], case[f"{step}.input_grid"]), step
            ids = t2i_gen_sequence(vocab, [golden_tokenizer.encode(prompt)] * b, seen[0], max_len)
            assert torch.equal(ids, case[f"{step}.input_ids"]), step
            assert torch.equal(canvas, case[f"{step}.canvas"]), step
        assert list(canvas.shape[1:]) == run["final_shape_h_w"]
        assert torch.equal(canvas.reshape(b, -1), case[f"{name}.final_codes"]), name


def _recording_fill(record: list, value: int = 7):
    """Stand-in generator: known cells kept, unknown cells set to `value`; records every window's ids."""
    def fill(ids):
        record.append(ids.clone())
        return torch.where(ids == VOCAB.mask, value, ids - VOCAB.image_offset)
    return fill


def test_down_mirrors_up():
    g, canvas = 4, torch.arange(32).reshape(2, 4, 4)
    seen = []
    out = extend_canvas(canvas, "down", 1, g, VOCAB, _recording_fill(seen))
    assert out.shape == (2, 7, 4) and torch.equal(out[:, :4], canvas) and bool((out[:, 4:] == 7).all())
    window = seen[0].reshape(2, g, g)
    assert torch.equal(window[:, :1], VOCAB.codes_to_ids(canvas[:, -1:]))  # keep g//2 - offset = 1 edge row
    assert bool((window[:, 1:] == VOCAB.mask).all())


def test_long_edges_are_tiled_and_windows_see_their_neighbours():
    g, canvas = 4, torch.arange(4 * 11).reshape(1, 4, 11)  # wider than one window: an `up` step needs tiling
    assert window_origins((6, 11), "up", g) == [(0, 0), (0, 2), (0, 4), (0, 6), (0, 7)]
    assert window_origins((11, 6), "right", g) == [(0, 2), (2, 2), (4, 2), (6, 2), (7, 2)]
    seen = []
    out = extend_canvas(canvas, "up", 0, g, VOCAB, _recording_fill(seen))
    assert out.shape == (1, 6, 11) and torch.equal(out[:, 2:], canvas) and bool((out[:, :2] == 7).all())
    assert len(seen) == 5
    second = seen[1].reshape(g, g)
    assert bool((second[:2, :2] != VOCAB.mask).all())  # what the first window generated is known here
    assert bool((second[:2, 2:] == VOCAB.mask).all()) and torch.equal(second[2:], VOCAB.codes_to_ids(canvas[0, :2, 2:6]))


def test_grow_canvas_and_window_ids():
    canvas = torch.zeros(1, 4, 4, dtype=torch.long)
    grown = grow_canvas(canvas, "left", 3)
    assert grown.shape == (1, 4, 7) and bool((grown[..., :3] == UNKNOWN).all())
    ids = window_ids(grown, 0, 0, 4, VOCAB)
    assert int((ids == VOCAB.mask).sum()) == 12 and int((ids == VOCAB.image_offset).sum()) == 4


@pytest.mark.parametrize("direction", ["left", "right", "up", "down"])
def test_pipeline_keeps_the_original_codes(pipe, picture, direction):
    g = pipe.grid_size
    new = g // 2 + 1
    out = pipe.extrapolate(picture, "a lake", direction, offset=1, num_images=2, num_inference_steps=2, seed=3)
    h, w = out.grid
    assert (h, w) == ((g, g + new) if direction in ("left", "right") else (g + new, g))
    assert out.codes.shape == (2, h * w) and out.images[0].size == (w * pipe.resolution // g, h * pipe.resolution // g)
    original = pipe.encode_images([picture]).cpu().reshape(g, g)
    canvas = out.codes.reshape(2, h, w)
    top = new if direction == "up" else 0
    left = new if direction == "left" else 0
    for i in range(2):
        assert torch.equal(canvas[i, top:top + g, left:left + g], original)
    assert out.metadata[0]["directions"] == [direction] and out.metadata[1]["index"] == 1


def test_mixed_axes_chain_and_reproducibility(pipe, picture):
    g = pipe.grid_size
    new = g // 2
    dirs = ["left", "left", "up", "down", "right"]
    prompts = ["sky", "sea", "clouds", "sand", "rocks"]
    a = pipe.extrapolate(picture, prompts, dirs, num_inference_steps=2, seed=11)
    b = pipe.extrapolate(picture, prompts, dirs, num_inference_steps=2, seed=11)
    assert a.grid == (g + 2 * new, g + 3 * new)
    assert torch.equal(a.codes, b.codes)
    h, w = a.grid
    canvas = a.codes.reshape(h, w)
    original = pipe.encode_images([picture]).cpu().reshape(g, g)
    assert torch.equal(canvas[new:new + g, 2 * new:2 * new + g], original)
    assert bool((canvas >= 0).all()) and bool((canvas < pipe.vocab.codebook_size).all())
    assert a.images[0].size == (w * pipe.resolution // g, h * pipe.resolution // g)
    assert a.metadata[0]["prompts"] == prompts and a.metadata[0]["seed"] == 11
    one_prompt = pipe.extrapolate(picture, "sky", ["up", "right"], num_inference_steps=2, seed=1)
    assert one_prompt.metadata[0]["prompts"] == ["sky", "sky"]
    one_direction = pipe.extrapolate(picture, ["sky", "sea"], "up", num_inference_steps=2, seed=1)  # as the CLI
    assert one_direction.metadata[0]["directions"] == ["up", "up"]


@pytest.mark.parametrize("prompts, directions, offset, match", [
    ("x", "sideways", 0, "unknown extrapolation direction"),
    ("x", [], 0, "no extrapolation direction"),
    (["a", "b"], ["left", "right", "up"], 0, "2 prompts for 3 directions"),
    ("x", "left", -1, "offset"),
    ("x", "left", 2, "offset"),  # grid 4: offset must be < 2
    ("x", "left", True, "offset"),
    ("", "left", 0, "empty prompt"),
])
def test_bad_arguments_are_input_errors(pipe, picture, prompts, directions, offset, match):
    with pytest.raises(InputError, match=match):
        pipe.extrapolate(picture, prompts, directions, offset=offset, num_inference_steps=2)
