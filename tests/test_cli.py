"""The `showo` command line on the tiny random model: outputs, reproducibility against the Python API, help,
streaming, progress bars and one-line warnings. (Bad inputs: test_cli_bad_input.py.)"""
from __future__ import annotations

import inspect
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from showo.cli import main as cli_main
from showo.cli import models, progress
from showo.cli.parser import DEFAULTS
from showo.pipelines import ShowoPipeline
from showo.tiny import tiny_random_pipeline

FAST = ["--model", "tiny-random", "--device", "cpu", "--steps", "2"]
TEXT = ["--model", "tiny-random", "--device", "cpu", "--max-new-tokens", "4"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pipe():
    return tiny_random_pipeline(seed=0)


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    array = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


def test_help_reads_well(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "examples:" in out
    for name in DEFAULTS:
        assert name in out
        code, out_sub, _ = run(capsys, name, "--help")
        assert code == 0, name
        for part in ("examples:", "model:", "output:", "--model", "--device", "--dtype", "--out", "--seed"):
            assert part in out_sub, (name, part)
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("showo ")


@pytest.mark.parametrize("command, method, mapping", [
    ("generate", "text_to_image", {"steps": "num_inference_steps", "guidance": "guidance_scale",
                                   "temperature": "temperature", "schedule": "schedule",
                                   "num_images": "num_images_per_prompt"}),
    ("inpaint", "inpaint", {"steps": "num_inference_steps", "guidance": "guidance_scale", "temperature": "temperature",
                            "schedule": "schedule", "num_images": "num_images"}),
    ("extrapolate", "extrapolate", {"steps": "num_inference_steps", "guidance": "guidance_scale", "offset": "offset",
                                    "temperature": "temperature", "schedule": "schedule", "num_images": "num_images"}),
    ("ask", "ask", {"max_new_tokens": "max_new_tokens", "temperature": "temperature"}),
    ("write", "write", {"max_new_tokens": "max_new_tokens", "temperature": "temperature"}),
    ("mixed", "mixed", {"steps": "num_inference_steps", "guidance": "guidance_scale", "max_images": "max_images",
                        "max_new_tokens": "max_new_tokens", "temperature": "text_temperature",
                        "image_temperature": "image_temperature"}),
])
def test_defaults_match_the_pipeline(command, method, mapping):
    params = inspect.signature(getattr(ShowoPipeline, method)).parameters
    for flag, kwarg in mapping.items():
        assert DEFAULTS[command][flag] == params[kwarg].default, (command, flag)


def test_generate_matches_api_byte_for_byte(capsys, tmp_path, pipe):
    prompts = ["a red cube", 'two <b>"blue"</b> balls & co']
    argv = ["generate", *prompts, "-n", "2", "--seed", "5", *FAST]
    code, out, err = run(capsys, *argv, "--out", str(tmp_path / "a"))
    assert code == 0, err
    api = pipe.text_to_image(prompts, num_images_per_prompt=2, num_inference_steps=2, seed=5)
    pngs = sorted((tmp_path / "a").glob("*.png"))
    assert [str(p) for p in pngs] == out.split()
    assert len(pngs) == 4 and {p.name for p in (tmp_path / "a").iterdir()} == \
        {*(p.name for p in pngs), *(p.stem + ".json" for p in pngs), "index.html"}
    for i, path in enumerate(pngs):
        assert path.read_bytes() == png(api.images[i])
        meta = json.loads(path.with_suffix(".json").read_text())
        assert meta["codes"] == api.codes[i].tolist()
        assert meta["prompt"] == prompts[i // 2] and meta["seed"] == 5 and meta["num_inference_steps"] == 2
        assert meta["guidance_scale"] == 1.75 and meta["schedule"] == "cosine" and meta["model_id"] == pipe.model_id
        assert meta["showo_version"] and meta["command_line"].startswith("showo generate")
        assert meta["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert meta["argv"] == ["showo", *argv, "--out", str(tmp_path / "a")] and meta["image"] == path.name
    page = (tmp_path / "a" / "index.html").read_text()
    assert "two &lt;b&gt;&quot;blue&quot;&lt;/b&gt; balls &amp; co" in page and "<b>" not in page
    assert run(capsys, *argv, "--out", str(tmp_path / "b"))[0] == 0
    assert [p.read_bytes() for p in pngs] == [p.read_bytes() for p in sorted((tmp_path / "b").glob("*.png"))]


def test_random_seed_is_recorded_and_reproduces(capsys, tmp_path):
    assert run(capsys, "generate", "a cube", *FAST, "--out", str(tmp_path / "a"))[0] == 0
    meta = json.loads((tmp_path / "a" / "000-a-cube.json").read_text())
    assert isinstance(meta["seed"], int) and meta["reproduce"].endswith(f"--seed {meta['seed']}")
    assert run(capsys, "generate", "a cube", *FAST, "--seed", str(meta["seed"]), "--out", str(tmp_path / "b"))[0] == 0
    assert (tmp_path / "a" / "000-a-cube.png").read_bytes() == (tmp_path / "b" / "000-a-cube.png").read_bytes()


def test_default_model_is_the_embedded_one(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "generate", "a small red circle left", "--steps", "2", "--device", "cpu", "--seed", "0")
    assert code == 0 and "note" not in err
    meta = json.loads(next((tmp_path / "out" / "generate").glob("*.json")).read_text())
    assert meta["model_id"].startswith("showo-world") and models.DEFAULT_MODEL == models.EMBEDDED


def test_missing_embedded_weights_fall_back_with_a_note(capsys, tmp_path, monkeypatch):
    import showo.embedded

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(showo.embedded, "embedded_available", lambda: False)
    code, _, err = run(capsys, "generate", "a cube", "--steps", "2", "--device", "cpu", "--seed", "0")
    assert code == 0 and (tmp_path / "out" / "generate" / "000-a-cube.png").is_file()
    notes = [line for line in err.splitlines() if "missing" in line]
    assert len(notes) == 1 and notes[0].startswith("showo: note:")
    monkeypatch.setenv("RANK", "1")  # another torchrun process: rank 0 says it
    code, _, err = run(capsys, "generate", "a cube", "--steps", "2", "--device", "cpu", "--seed", "0")
    assert code == 0 and "note" not in err


def test_pipeline_directory_model(capsys, tmp_path, pipe):
    pipe.save_pretrained(tmp_path / "model")
    argv = ["generate", "a cube", "--seed", "3", "--steps", "2", "--device", "cpu", "--model", str(tmp_path / "model")]
    assert run(capsys, *argv, "--out", str(tmp_path / "o"))[0] == 0
    api = pipe.text_to_image("a cube", num_inference_steps=2, seed=3)
    assert json.loads((tmp_path / "o" / "000-a-cube.json").read_text())["codes"] == api.codes[0].tolist()


def test_inpaint_matches_api_and_warns_in_one_line(capsys, tmp_path, picture, pipe):
    mask = Image.new("L", (20, 15), 0)
    mask.paste(255, (0, 0, 10, 15))
    mask.save(tmp_path / "mask.png")
    argv = ["inpaint", str(picture), str(tmp_path / "mask.png"), "a green ball", "--seed", "1", *FAST]
    code, out, err = run(capsys, *argv, "--out", str(tmp_path / "o"))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == ["showo: warning: the image is 40x30: inpainting works on its centre 30x30 square (the rest "
                        "is cropped away)", "showo: warning: mask is 20x15 but the image is 40x30: mask resized"]
    api = pipe.inpaint(Image.open(picture), mask.resize((40, 30), Image.NEAREST), "a green ball",
                       num_inference_steps=2, seed=1)
    assert (tmp_path / "o" / "000-a-green-ball.png").read_bytes() == png(api.images[0])
    meta = json.loads((tmp_path / "o" / "000-a-green-ball.json").read_text())
    assert meta["inputs"]["mask"]["path"] == str(tmp_path / "mask.png") and len(meta["inputs"]["image"]["sha256"]) == 64
    Image.new("L", (40, 30), 255).save(tmp_path / "white.png")
    code, _, err = run(capsys, "inpaint", str(picture), str(tmp_path / "white.png"), "x", *FAST,
                       "--out", str(tmp_path / "w"))
    assert code == 0 and "showo: warning: the mask covers the whole image" in err


def test_extrapolate_repeated_direction_flags_add_up_and_a_wide_image_warns(capsys, tmp_path, picture, pipe):
    """`--direction right --direction up` means both (the second flag used to replace the first)."""
    argv = ["extrapolate", str(picture), "forest", "river", "--direction", "right", "--direction", "up",
            "--seed", "2", *FAST, "--out", str(tmp_path / "o")]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "000-forest.json").read_text())["directions"] == ["right", "up"]
    assert "showo: warning: the image is 40x30: extrapolation works on its centre 30x30 square" in err


def test_extrapolate_one_direction_for_all_prompts(capsys, tmp_path, picture, pipe):
    argv = ["extrapolate", str(picture), "forest", "river", "--direction", "left", "--seed", "2", *FAST]
    code, out, err = run(capsys, *argv, "--out", str(tmp_path / "o"))
    assert code == 0, err
    api = pipe.extrapolate(Image.open(picture), ["forest", "river"], ["left", "left"], num_inference_steps=2, seed=2)
    assert (tmp_path / "o" / "000-forest.png").read_bytes() == png(api.images[0])
    assert Image.open(tmp_path / "o" / "000-forest.png").size == api.images[0].size


def test_ask_images_directory_and_questions(capsys, tmp_path, picture, pipe):
    Image.new("RGB", (16, 16), (0, 0, 255)).save(picture.parent / "b.jpg")
    (picture.parent / "notes.txt").write_text("not an image")
    extra = tmp_path / "extra.png"
    Image.new("RGB", (20, 20), (0, 255, 0)).save(extra)
    code, out, err = run(capsys, "ask", str(picture.parent), "what colour?", "how many?", "--image", str(extra),
                         *TEXT, "--out", str(tmp_path / "o"))
    assert code == 0, err
    data = json.loads((tmp_path / "o" / "answers.json").read_text())
    images = [str(picture.parent / "b.jpg"), str(picture), str(extra)]
    assert [(a["image"], a["question"]) for a in data["answers"]] == \
        [(i, q) for i in images for q in ("what colour?", "how many?")]
    api = pipe.ask([Image.open(p) for p in images], ["what colour?", "how many?"], max_new_tokens=4)
    assert [a["token_ids"] for a in data["answers"]] == api.token_ids
    assert f"[6/6] {extra}: how many?" in out and "image_1" in data["inputs"]


def test_ask_pairwise(capsys, tmp_path, picture, pipe):
    extra = tmp_path / "extra.png"
    Image.new("RGB", (20, 20), (0, 255, 0)).save(extra)
    code, out, err = run(capsys, "ask", str(picture), "what colour?", "how many?", "--image", str(extra),
                         "--pairwise", *TEXT, "--out", str(tmp_path / "o"))
    assert code == 0, err
    data = json.loads((tmp_path / "o" / "answers.json").read_text())
    assert [(a["image"], a["question"]) for a in data["answers"]] == [(str(picture), "what colour?"),
                                                                        (str(extra), "how many?")]
    api = pipe.ask([Image.open(picture), Image.open(extra)], ["what colour?", "how many?"], max_new_tokens=4,
                   pairwise=True)
    assert [a["token_ids"] for a in data["answers"]] == api.token_ids and data["answers"][1]["pairwise"] is True
    code, _, err = run(capsys, "ask", str(picture), "a?", "b?", "--pairwise", *TEXT, "--out", str(tmp_path / "p"))
    assert code == 2 and err.strip() == "showo: error: pairwise takes one question per image, got 1 image and 2 " \
                                        "questions"
    assert not (tmp_path / "p").exists()


def test_packed_weights_answer_the_same(capsys, tmp_path, picture, pipe):
    """--pack-weights changes the summation order of the float32 products, not the answers."""
    args = ("ask", str(picture), "what colour?", "how many?", *TEXT)
    assert run(capsys, *args, "--out", str(tmp_path / "a"))[0] == 0
    assert run(capsys, *args, "--pack-weights", "--out", str(tmp_path / "b"))[0] == 0
    a, b = (json.loads((tmp_path / d / "answers.json").read_text()) for d in "ab")
    assert [x["token_ids"] for x in a["answers"]] == [x["token_ids"] for x in b["answers"]]
    assert b["model_source"]["pack_weights"] is True and a["model_source"]["pack_weights"] is False


def test_compile_decoding_option_reaches_the_decoder(capsys, tmp_path, picture, decoding_spy):
    """--compile-decoding asks generate_text for the compiled step (spied, not compiled here: the pipeline test
    compiles) and is recorded in the outputs; mixed has no such option."""
    asked = decoding_spy
    long = [*TEXT, "--max-new-tokens", "6"]  # shorter answers are never compiled
    assert run(capsys, "ask", str(picture), "what?", *long, "--out", str(tmp_path / "a"))[0] == 0
    assert run(capsys, "ask", str(picture), "what?", *long, "--compile-decoding", "--out", str(tmp_path / "b"))[0] == 0
    assert run(capsys, "ask", str(picture), "what?", *TEXT, "--compile-decoding", "--out", str(tmp_path / "c"))[0] == 0
    assert asked == [False, True, False]  # TEXT allows 4 tokens: too short to compile
    recorded = {d: json.loads((tmp_path / d / "answers.json").read_text()) for d in "abc"}
    assert recorded["b"]["options"]["compile_decoding"] is recorded["c"]["options"]["compile_decoding"] is True
    # each answer records what it ran: the short one was asked compiled but decoded uncompiled
    assert [recorded[d]["answers"][0]["compiled_decoding"] for d in "abc"] == asked
    code, _, err = run(capsys, "mixed", "a cube", "--compile-decoding", *TEXT)
    assert code == 2 and "--compile-decoding" in err


def test_single_answer_prints_plain_and_streams_the_same(capsys, tmp_path, picture):
    code, plain, _ = run(capsys, "ask", str(picture), "what?", *TEXT, "--out", str(tmp_path / "a"))
    code2, streamed, _ = run(capsys, "ask", str(picture), "what?", *TEXT, "--stream", "--out", str(tmp_path / "b"))
    assert code == code2 == 0 and plain == streamed
    answer = json.loads((tmp_path / "a" / "answers.json").read_text())["answers"][0]["answer"]
    assert plain == answer + "\n"


def test_caption_several_images_streams_labelled_blocks(capsys, tmp_path, picture):
    other = tmp_path / "other.png"
    Image.new("RGB", (8, 8)).save(other)
    code, out, err = run(capsys, "caption", str(picture), str(other), *TEXT, "--stream", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert f"[1/2] {picture}\n" in out and f"[2/2] {other}\n" in out
    data = json.loads((tmp_path / "o" / "answers.json").read_text())
    assert [a["task"] for a in data["answers"]] == ["caption", "caption"]


def test_write_matches_api_and_stream(capsys, tmp_path, pipe):
    argv = ["write", "Once upon a time", "--temperature", "1", "--top-k", "20", "--seed", "3", *TEXT]
    code, out, _ = run(capsys, *argv, "--out", str(tmp_path / "a"))
    code2, streamed, _ = run(capsys, *argv, "--stream", "--out", str(tmp_path / "b"))
    api = pipe.write("Once upon a time", max_new_tokens=4, temperature=1.0, top_k=20, seed=3)
    data = json.loads((tmp_path / "a" / "answers.json").read_text())
    assert code == code2 == 0 and data["answers"][0]["token_ids"] == api.token_ids[0]
    assert out == streamed == api.texts[0] + "\n"


def test_text_commands_ignore_image_options_with_a_warning(capsys, tmp_path):
    code, _, err = run(capsys, "write", "hello", *TEXT, "--steps", "3", "--out", str(tmp_path / "o"))
    assert code == 0 and "showo: warning: --steps has no effect on 'write'" in err


def test_mixed_writes_markdown_html_images_and_matches_api(capsys, tmp_path, pipe):
    argv = ["mixed", "One. Two.", "--force-image-every-sentence", "--max-images", "2", "--max-new-tokens", "6",
            "--seed", "4", *FAST]
    code, out, err = run(capsys, *argv, "--out", str(tmp_path / "o"))
    assert code == 0, err
    api = pipe.mixed("One. Two.", max_images=2, max_new_tokens=6, num_inference_steps=2, seed=4,
                     force_image_every_sentence=True)
    images = [s for s in api.segments if isinstance(s, Image.Image)]
    assert images, "the forced sentence end must produce an image"
    o = tmp_path / "o"
    assert {"answer.md", "index.html", "answers.json", "answer_0.png", "answer_0.json"} <= {p.name for p in o.iterdir()}
    assert (o / "answer_0.png").read_bytes() == png(images[0])
    assert json.loads((o / "answers.json").read_text())["token_ids"] == list(api.token_ids)
    assert "answer_0.png" in (o / "answer.md").read_text() and f"[image 0: {o / 'answer_0.png'}]" in out
    assert json.loads((o / "answer_0.json").read_text())["codes"] == api.metadata["image_codes"][0]
    assert len(api.metadata["image_codes"][0]) == pipe.model.config.num_vq_tokens
    code, streamed, _ = run(capsys, *argv, "--stream", "--out", str(tmp_path / "s"))
    assert code == 0 and streamed.startswith("[image 0]")


@pytest.mark.parametrize("seed", range(4))
def test_mixed_stream_shows_the_whole_answer(capsys, tmp_path, seed):
    """The streamed text is the saved answer's: text held back by the token stream (an unfinished character)
    used to be dropped at the next image or at the end (26 of 29 characters on seed 0, before)."""
    argv = ["mixed", "A red circle.", "--max-images", "2", "--force-image-every-sentence", "--max-new-tokens", "12",
            "--temperature", "1", "--seed", str(seed), "--stream", *FAST, "--out", str(tmp_path / "o")]
    code, streamed, err = run(capsys, *argv)
    assert code == 0, err
    saved = json.loads((tmp_path / "o" / "answers.json").read_text())
    texts = [part["text"] for part in saved["segments"] if "text" in part]
    assert "".join(texts) == "".join(line for line in streamed.split("\n") if not line.startswith("[image "))


def test_mixed_with_no_images_writes_text_only(capsys, tmp_path):
    """--max-images 0 (as pipe.mixed(max_images=0)): the forced image after the sentence is never made."""
    argv = ["mixed", "A red circle.", "--max-images", "0", "--force-image-every-sentence", "--max-new-tokens", "6",
            "--seed", "0", *FAST, "--out", str(tmp_path / "o")]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    saved = json.loads((tmp_path / "o" / "answers.json").read_text())
    assert saved["segments"] and all("text" in part for part in saved["segments"])
    assert not list((tmp_path / "o").glob("*.png"))


@pytest.mark.parametrize("mode", ["L", "1", "LA", "RGBA", "P", "CMYK", "I;16"])
def test_every_image_mode_works(capsys, tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray(np.arange(120, dtype=np.uint16).reshape(12, 10) * 500)
    else:
        image = rgb.convert(mode)
    path = tmp_path / ("img.tiff" if mode == "CMYK" else "img.png")
    image.save(path)
    assert Image.open(path).mode == mode
    code, _, err = run(capsys, "caption", str(path), *TEXT, "--out", str(tmp_path / "o"))
    assert code == 0, err


def test_long_prompt_is_truncated_with_one_warning(capsys, tmp_path):
    code, _, err = run(capsys, "generate", "word " * 40, "-n", "2", *FAST, "--out", str(tmp_path / "o"))
    warnings = [line for line in err.splitlines() if line.startswith("showo: warning:")]
    assert code == 0 and len(warnings) == 1 and "only the first" in warnings[0]


def test_other_libraries_warnings_are_one_line_each(capsys):
    """Pillow's and torch's warnings printed the message and the source line that raised it: several lines,
    unlike every other thing the CLI says."""
    import warnings

    from showo.errors import ShowoWarning

    with progress.one_line_warnings():
        for _ in range(2):
            warnings.warn("Corrupt EXIF data.\n  Expecting to read 12 bytes", UserWarning)
        warnings.warn("a note of ours", ShowoWarning)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("showo: warning: Corrupt EXIF data. Expecting to read 12 bytes (UserWarning from ")
    assert "tests/test_cli.py:" in lines[0]
    assert lines[1] == "showo: warning: a note of ours"


def test_progress_bars_on_a_terminal_change_nothing(capsys, tmp_path, monkeypatch):
    argv = ["generate", "a cube", "--seed", "1", *FAST]
    assert run(capsys, *argv, "--out", str(tmp_path / "a"))[0] == 0
    monkeypatch.setattr(cli_main, "stderr_is_tty", lambda: True)
    code, _, err = run(capsys, *argv, "--out", str(tmp_path / "b"))
    assert code == 0 and "generate:" in err and "/2 [" in err
    assert (tmp_path / "a" / "000-a-cube.png").read_bytes() == (tmp_path / "b" / "000-a-cube.png").read_bytes()
    code, _, err = run(capsys, "write", "hi", *TEXT, "--out", str(tmp_path / "c"))
    assert code == 0 and "tok" in err
    code, _, err = run(capsys, *argv, "--quiet", "--out", str(tmp_path / "d"))
    assert code == 0 and "/2 [" not in err and "showo: done" not in err


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    from showo.files import atomic_write

    atomic_write(tmp_path / "a.txt", b"one")
    atomic_write(tmp_path / "a.txt", b"two")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"] and (tmp_path / "a.txt").read_bytes() == b"two"


def test_token_stream_holds_back_partial_utf8(capsys):
    pieces = {1: b"\xc3", 2: b"\xa9"}  # "é" split over two tokens

    def decode(ids):
        return b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace")

    stream = progress.TokenStream(decode, 1)
    stream(0, torch.tensor([1]), torch.tensor([False]))
    assert capsys.readouterr().out == ""
    stream(1, torch.tensor([2]), torch.tensor([True]))
    stream.finish()
    assert capsys.readouterr().out == "é\n"


def test_results_of_an_earlier_run_in_out_are_noted(capsys, tmp_path):
    """A second run into the same --out replaced the files whose names it shared and left the others, which its
    index.html no longer listed: say so (the same run again leaves nothing behind, and says nothing)."""
    out = str(tmp_path / "o")
    assert run(capsys, "generate", "a b", "c d", *FAST, "--seed", "1", "--out", out)[0] == 0
    code, _, err = run(capsys, "generate", "a b", "c d", *FAST, "--seed", "1", "--out", out)
    assert code == 0 and "earlier run" not in err
    code, _, err = run(capsys, "generate", "e f", *FAST, "--seed", "1", "--out", out)
    assert code == 0 and f"showo: note: --out {out} also holds 000-a-b.json, 000-a-b.png, 001-c-d.json and 1 more from an " \
        "earlier run" in err
    for mine in ("holiday.png", "notes.md", "index.htm"):  # a user's own files are no earlier run's
        (tmp_path / "o" / mine).write_text("x")
    code, _, err = run(capsys, "generate", "e f", *FAST, "--seed", "1", "--out", out)
    assert code == 0 and "holiday" not in err and "notes.md" not in err and "001-c-d.json" in err
