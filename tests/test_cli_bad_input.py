"""Every user error of the `showo` command line: exit code 2, exactly one `showo: error: ...` line on stderr,
no traceback, and nothing written (the --out directory is never created)."""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageFile

from showo.cli.main import main
from showo.tokenizers.image_io import MAX_IMAGE_PIXELS
from showo.tiny import tiny_random_pipeline

FAST = ["--model", "tiny-random", "--device", "cpu", "--steps", "2"]
TEXT = ["--model", "tiny-random", "--device", "cpu", "--max-new-tokens", "4"]


def fails(capsys, tmp_path: Path, *argv: str, match: str = "") -> str:
    """Run `showo argv --out <tmp>/out`; assert a clean user error and return its message."""
    out_dir = tmp_path / "out"
    code = main([*argv, "--out", str(out_dir)])
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("showo: error:")]
    assert code == 2, (argv, err)
    assert len(errors) == 1, err
    assert all(line.startswith("showo: ") for line in err.splitlines()), err  # notes at most, no traceback
    assert "Traceback" not in err and out == ""
    assert not out_dir.exists()
    assert match.lower() in errors[0].lower(), errors[0]
    return errors[0]


def png_header(width: int, height: int, bit_depth: int = 1, color_type: int = 0) -> bytes:
    """A PNG that declares `width`x`height` pixels but carries almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


@pytest.fixture
def picture(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (32, 24), (120, 30, 200)).save(path)
    return path


def _bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.png"
    good = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(good, format="PNG")
    data = {"empty": b"", "corrupt": b"\x89PNG\r\n\x1a\n" + os.urandom(200), "truncated": good.getvalue()[:60],
            "text": b"just some text, not an image\n", "bomb": png_header(20000, 20000)}[kind]
    path.write_bytes(data)
    return path


@pytest.fixture
def big_decodes(monkeypatch) -> list[tuple[int, int]]:
    """The sizes of images over the pixel limit whose pixels Pillow started to decode (a bomb must be refused
    from its header, before any decoding)."""
    seen: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def watched(self):
        if self.size[0] * self.size[1] > MAX_IMAGE_PIXELS:
            seen.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", watched)
    return seen


@pytest.mark.parametrize("kind, match", [("empty", "empty file"), ("corrupt", ""), ("truncated", ""),
                                         ("text", "not an image"), ("bomb", "too large")])
def test_bad_image_files(capsys, tmp_path, big_decodes, kind, match):
    bad = _bad_file(tmp_path, kind)
    fails(capsys, tmp_path, "caption", str(bad), *TEXT, match=match)
    fails(capsys, tmp_path, "ask", str(bad), "what?", *TEXT, match=match)
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    fails(capsys, tmp_path, "inpaint", str(good), str(bad), "x", *FAST, match=match)
    fails(capsys, tmp_path, "extrapolate", str(bad), "x", "--direction", "left", *FAST, match=match)
    assert big_decodes == []


def test_missing_image_and_empty_directory(capsys, tmp_path):
    fails(capsys, tmp_path, "caption", str(tmp_path / "nope.png"), *TEXT, match="not found")
    (tmp_path / "empty").mkdir()
    fails(capsys, tmp_path, "ask", str(tmp_path / "empty"), "q?", *TEXT, match="no image files")


def test_bomb_just_over_the_limit_is_refused(capsys, tmp_path, big_decodes):
    path = tmp_path / "big.png"
    path.write_bytes(png_header(9000, 9000, bit_depth=8))  # 81 Mpx: over the 64 Mpx limit, under 2x
    fails(capsys, tmp_path, "caption", str(path), *TEXT, match="too large")
    assert big_decodes == []


def test_masks(capsys, tmp_path, picture):
    Image.new("L", (32, 24), 0).save(tmp_path / "black.png")
    fails(capsys, tmp_path, "inpaint", str(picture), str(tmp_path / "black.png"), "x", *FAST, match="all black")
    tiny = Image.new("L", (32, 24), 0)
    tiny.putpixel((0, 0), 255)  # white, but not enough to cover one token after reduction to the grid
    tiny.save(tmp_path / "speck.png")
    fails(capsys, tmp_path, "inpaint", str(picture), str(tmp_path / "speck.png"), "x", *FAST, match="selects nothing")


@pytest.mark.parametrize("argv, match", [
    (["generate", ""], "empty prompt"),
    (["generate", "a cube", "   "], "empty prompt"),
    (["write", "  "], "empty prompt"),
    (["mixed", ""], "empty prompt"),
    (["generate", "x", "--steps", "0"], "--steps"),
    (["generate", "x", "--steps", "-3"], "--steps"),
    (["generate", "x", "--steps", "two"], "--steps"),
    (["generate", "x", "--guidance", "-1"], "--guidance"),
    (["generate", "x", "--guidance", "nan"], "--guidance"),
    (["generate", "x", "--temperature", "-0.5"], "--temperature"),
    (["generate", "x", "-n", "0"], "--images-per-prompt"),
    (["generate", "x", "--seed", "-1"], "--seed"),
    (["generate", "x", "--schedule", "wobbly"], "schedule"),
    (["generate", "x", "--dtype", "float8"], "--dtype"),
    (["generate", "x", "--pack-weights", "--dtype", "bfloat16"], "--pack-weights is for float32"),
    (["generate", "x", "--device", "tpu"], "--device"),
    (["write", "x", "--top-p", "0"], "--top-p"),
    (["write", "x", "--top-k", "0"], "--top-k"),
    (["write", "x", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["mixed", "x", "--max-images", "-1"], "--max-images"),
    # the pipeline's bounds (showo.limits), checked while parsing under the option's name, not after loading
    (["generate", "x", "--steps", "1001"], "argument --steps: must be an integer in [1, 1000]"),
    (["generate", "x", "-n", "4097"], "argument -n/--images-per-prompt: must be an integer in [1, 4096]"),
    (["generate", "x", "y", "-n", "2049"], "2 prompts x -n asks for 4098 images in one call; at most 4096"),
    (["inpaint", "a.png", "m.png", "x", "--num-images", "5000"], "argument -n/--num-images"),
    (["mixed", "x", "--image-temperature", "100.5"], "argument --image-temperature: must be a number in [0, 100]"),
    (["mixed", "x", "--guidance", "1e9"], "argument --guidance"),
    (["eval", "--json", "e.json", "--samples", "10001"], "argument --samples: must be an integer in [1, 10000]"),
    (["eval", "--json", "e.json", "--story-guidance", "101"], "argument --story-guidance"),
    (["generate", "x", "--vq", "somewhere"], "tiny-random model"),
    (["generate", "x", "--bogus"], "unrecognized arguments"),
    (["paint", "x"], "invalid choice"),
])
def test_bad_options(capsys, tmp_path, argv, match):
    base = [] if not argv or argv[0] == "paint" else ["--model", "tiny-random", "--device", "cpu"]
    fails(capsys, tmp_path, *argv, *base, match=match)


def test_no_command(capsys):
    assert main([]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "showo: error: the following arguments are required: COMMAND (see 'showo --help')"]


def test_unavailable_device(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on machines that have a GPU
    fails(capsys, tmp_path, "generate", "x", "--model", "tiny-random", "--device", "cuda", match="not available")


def test_empty_question(capsys, tmp_path, picture):
    fails(capsys, tmp_path, "ask", str(picture), "what?", " ", *TEXT, match="empty question")
    fails(capsys, tmp_path, "caption", str(picture), "--question", "", *TEXT, match="empty question")


def test_extrapolate_directions(capsys, tmp_path, picture):
    fails(capsys, tmp_path, "extrapolate", str(picture), "x", "--direction", "sideways", *FAST,
          match="unknown extrapolation direction 'sideways'")
    fails(capsys, tmp_path, "extrapolate", str(picture), "a", "b", "c", "--direction", "left", "up", *FAST,
          match="3 prompts for 2 directions")
    fails(capsys, tmp_path, "extrapolate", str(picture), "x", "--direction", "up", "--offset", "9", *FAST,
          match="offset")
    fails(capsys, tmp_path, "extrapolate", str(picture), "x", *FAST, match="--direction")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("model")
    tiny_random_pipeline(seed=0).save_pretrained(root / "pipe")
    return root / "pipe"


def test_missing_or_incomplete_model_directories(capsys, tmp_path, saved_model):
    run = ["generate", "x", "--device", "cpu", "--steps", "2", "--model"]
    fails(capsys, tmp_path, *run, str(tmp_path / "no-such-model"), match="not found")
    (tmp_path / "empty").mkdir()
    fails(capsys, tmp_path, *run, str(tmp_path / "empty"), match="no config.json")
    shutil.copytree(saved_model, tmp_path / "run" / "model")  # a finetune run: its model is RUN/model
    run_dir = tmp_path / "run"
    fails(capsys, tmp_path, *run, str(run_dir), match=f"no config.json in {run_dir}: did you mean {run_dir / 'model'}?")
    no_weights = tmp_path / "no-weights"
    shutil.copytree(saved_model, no_weights)
    for weights in (no_weights / "showo").glob("*.safetensors"):
        weights.unlink()
    fails(capsys, tmp_path, *run, str(no_weights), match="no weights")
    broken = tmp_path / "broken"
    shutil.copytree(saved_model, broken)
    for weights in (broken / "showo").glob("*.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])
    fails(capsys, tmp_path, *run, str(broken), match="safetensors")
    fails(capsys, tmp_path, *run, str(saved_model / "showo" / "config.json"), match="directory")


@pytest.mark.parametrize("edit, match", [
    (lambda w: {k: v.to(torch.int32) if k.endswith("final_layernorm.bias") else v for k, v in w.items()},
     "keys of another kind of number (integer vs floating point): showo.model.final_layernorm.bias torch.int32"),
    (lambda w: {k: v.fill_(float("nan")) if k.endswith("lm_head.weight") else v for k, v in w.items()},
     "the model's scores are NaN or infinite"),
])
def test_weights_of_the_wrong_kind_or_not_finite_are_one_line(capsys, tmp_path, saved_model, edit, match):
    from safetensors.torch import load_file, save_file

    damaged = tmp_path / "damaged"
    shutil.copytree(saved_model, damaged)
    for weights in (damaged / "showo").glob("*.safetensors"):
        save_file(edit(load_file(weights)), weights)
    fails(capsys, tmp_path, "generate", "x", "--device", "cpu", "--steps", "2", "--model", str(damaged), match=match)


def test_out_is_a_file(capsys, tmp_path):
    (tmp_path / "out").write_text("occupied")
    code = main(["generate", "x", *FAST, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "showo: error: --out" in err and (tmp_path / "out").read_text() == "occupied"


def test_subprocess_has_no_traceback(tmp_path):
    """The real process: python -m showo.cli.main, python -m showo and the console script print one line and exit 2."""
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    out_dir = tmp_path / "o"
    result = subprocess.run([sys.executable, "-m", "showo.cli.main", "generate", "", "--out", str(out_dir)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == ["showo: error: empty prompt"]
    result = subprocess.run([sys.executable, "-m", "showo", "write", "--max-new-tokens", "0", "x"],
                            capture_output=True, text=True, env=env, timeout=120)  # `python -m showo` too
    assert result.returncode == 2 and result.stderr.startswith("showo: error: ") and "max" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    script = Path(sys.executable).with_name("showo")
    if script.is_file():
        (tmp_path / "bad.png").write_bytes(b"not a png")
        result = subprocess.run([str(script), "caption", str(tmp_path / "bad.png"), "--out", str(out_dir)],
                                capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("showo: error:") and "Traceback" not in result.stderr
    assert not out_dir.exists()


def test_a_blocked_result_name_leaves_no_result_behind(capsys, tmp_path):
    """Every file of a result is staged before any is renamed into place: one name taken by a directory
    (index.html here, written last) leaves none of the others behind."""
    out = tmp_path / "out"
    (out / "index.html").mkdir(parents=True)
    code = main(["generate", "a ball", *FAST, "--seed", "0", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("showo: error:") == 1 and "index.html" in err and "Traceback" not in err, err
    assert [p.name for p in out.iterdir()] == ["index.html"]  # no PNG, no JSON, no temporary file


@pytest.mark.parametrize("argv, match", [
    (["generate", "a \udcff ball", *FAST], "not valid UTF-8"),
    (["write", "hi \udcfe", *TEXT], "not valid UTF-8"),
    (["generate", "a ball", *FAST, "--guidance", "1e39"], "argument --guidance: must be a number in [0, 100]"),
    (["generate", "a ball", *FAST, "--temperature", "101"], "argument --temperature: must be a number in [0, 100]"),
    (["write", "hi", *TEXT, "--temperature", "1e-45"],
     "argument --temperature: must be 0 (greedy) or a number in [0.0001, 100]"),
])
def test_odd_text_and_extreme_numbers(capsys, tmp_path, argv, match):
    """Bytes that are not UTF-8 (kept as surrogates by Python) and finite numbers that overflow float32 in the
    samplers were tracebacks (the numbers are now refused while parsing, under the option's name)."""
    fails(capsys, tmp_path, *argv, match=match)


def test_an_empty_output_path_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty path used to mean the current directory
    assert main(["generate", "a ball", *FAST, "--out", ""]) == 2
    assert "an empty path" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_output_files_are_checked_before_the_work(capsys, tmp_path, monkeypatch):
    """--json / --markdown / --write-recipe paths that cannot be written fail at once, in one line: the
    evaluation, benchmark or training is never started (eval and bench used to fail only after the whole run)."""
    import showo.bench.run
    import showo.evaluation.harness
    import showo.training.embedded

    def started(*args, **kwargs):
        raise AssertionError("the work started before the output path was checked")

    monkeypatch.setattr(showo.evaluation.harness, "run_evaluation", started)
    monkeypatch.setattr(showo.bench.run, "run", started)
    monkeypatch.setattr(showo.training.embedded, "build_text_tokenizer", started)
    (tmp_path / "afile").write_text("x")
    cases = [
        (["eval", "--samples", "1", "--tasks", "t2i", "--steps", "2", "--json", str(tmp_path)], "--json"),
        (["bench", "--tiny", "--json", str(tmp_path / "afile" / "b.json")], "--json"),
        (["bench", "--tiny", "--plots", str(tmp_path / "afile")], "--plots"),
        (["train", "all", "--run", str(tmp_path / "r"), "--write-recipe", str(tmp_path / "afile" / "r.yaml")],
         "--write-recipe"),
        (["train", "all", "--run", str(tmp_path / "afile"), "--max-steps", "1", "-q"], "--run"),
    ]
    for argv, flag in cases:
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith(f"showo: error: {flag}"), (argv, err)
    assert not (tmp_path / "r").exists()


def test_an_unlistable_image_directory_is_one_line(capsys, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", denied)
    fails(capsys, tmp_path, "caption", str(folder), *TEXT, match="cannot list directory")


def test_a_file_the_system_refuses_is_one_line_and_other_os_errors_are_not_hidden(capsys, tmp_path, monkeypatch):
    """An unreadable image, data file or model file (no permission, an untraversable folder, a full disk) raises an
    OSError naming the file wherever it is first touched; the command line says it in one line."""
    from showo.pipelines import ShowoPipeline

    image = tmp_path / "locked.png"
    Image.new("RGB", (8, 8)).save(image)

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", denied)
    fails(capsys, tmp_path, "caption", str(image), *TEXT, match=f"image {image} cannot be read: permission denied")
    monkeypatch.undo()
    monkeypatch.setattr(Path, "is_dir", denied)  # what os.stat says in a folder the user may not enter
    assert fails(capsys, tmp_path, "caption", str(image), *TEXT) == f"showo: error: {image}: Permission denied"
    monkeypatch.undo()

    def unnamed(*args, **kwargs):
        raise OSError("a bug, not a user's file")

    monkeypatch.setattr(ShowoPipeline, "text_to_image", unnamed)
    with pytest.raises(OSError, match="a bug"):
        main(["generate", "a ball", *FAST, "--out", str(tmp_path / "out")])


@pytest.mark.parametrize("edit, match", [
    ({"llm_config": [1]}, "backbone config must be a mapping"),
    ({"llm_config": {"num_attention_heads": 7}}, "multiple of num_attention_heads"),
    ({"llm_config": {"hidden_size": 64.5}}, "hidden_size must be an integer"),
    ({"llm_config": {"layer_norm_eps": "x"}}, "layer_norm_eps must be a finite number"),
    ({"llm_config": {"rope_theta": None}}, "rope_theta must be a finite number"),
    ({"codebook_size": "64"}, "codebook_size must be an integer"),
    ({"max_seq_length": 0}, "max_seq_length must be >= 2"),
    ({"llm_config": {"max_position_embeddings": 10}}, "shorter than the text-to-image sequence"),
])
def test_damaged_model_configs_are_one_line(capsys, tmp_path, saved_model, edit, match):
    import json

    damaged = tmp_path / "damaged"
    shutil.copytree(saved_model, damaged)
    config = json.loads((damaged / "showo" / "config.json").read_text())
    for key, value in edit.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    (damaged / "showo" / "config.json").write_text(json.dumps(config))
    fails(capsys, tmp_path, "generate", "x", "--device", "cpu", "--steps", "2", "--model", str(damaged), match=match)


def test_out_of_memory_is_one_line_and_other_runtime_errors_are_not_hidden(capsys, tmp_path, monkeypatch):
    from showo.pipelines import ShowoPipeline

    def allocate(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(ShowoPipeline, "text_to_image", allocate)
    fails(capsys, tmp_path, "generate", "a ball", *FAST, match="out of memory")

    def bug(*args, **kwargs):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr(ShowoPipeline, "text_to_image", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["generate", "a ball", *FAST, "--out", str(tmp_path / "out")])


@pytest.mark.parametrize("argv, help_of", [(["bench", "--tiny", "--seed", "3"], "showo bench --help"),
                                           (["eval", "--json", "x.json", "--bogus"], "showo eval --help"),
                                           (["write", "hi", "--bogus"], "showo write --help")])
def test_unknown_option_points_at_the_right_help(capsys, argv, help_of):
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "unrecognized arguments" in err[0] and f"'{help_of}'" in err[0], err


def test_unreadable_model_and_clip_configs_are_one_line(tmp_path):
    """Each was a raw UnicodeDecodeError / JSONDecodeError / AttributeError / transformers validation error."""
    from showo.errors import CheckpointError
    from showo.model.clip import ClipVisionTower
    from showo.model.config import ShowoConfig

    for content, match in ((b"\xff\xfe{", "cannot read"), (b"{nope", "is not valid JSON"),
                           (b"[1, 2]", "must hold a JSON object, not a list")):
        (tmp_path / "config.json").write_bytes(content)
        for load in (ShowoConfig.from_directory, ClipVisionTower.from_pretrained):
            with pytest.raises(CheckpointError, match=match):
                load(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": "wide"}')
    with pytest.raises(CheckpointError, match="not a CLIP vision config"):
        ClipVisionTower.from_pretrained(tmp_path)


@pytest.mark.parametrize("argv", [
    ["caption", ""], ["ask", "x.png", "what?", "--image", ""], ["inpaint", "", "m.png", "x"],
    ["generate", "x", "--vq", ""], ["generate", "x", "--tokenizer", " "], ["generate", "x", "--clip", ""],
    ["finetune", "", "--run", "r"], ["finetune", "d.jsonl", "--run", "r", "--recipe", ""],
    ["finetune", "d.jsonl", "--run", "r", "--val", ""], ["train", "all", "--run", "r", "--recipe", ""],
    ["train", "model", "--run", "r", "--init-from", ""],
])
def test_an_empty_path_is_refused_not_taken_as_the_current_directory(capsys, argv):
    """`Path("")` is ".": an empty image path captioned every image in the working directory, and an empty
    --recipe or --val was taken as not given."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "an empty path" in err[0], err


def test_greedy_answers_from_non_finite_scores_are_one_line(capsys, tmp_path, saved_model):
    """Sampling refuses NaN scores, but greedy decoding would pick a token from them and exit 0."""
    from safetensors.torch import load_file, save_file

    damaged = tmp_path / "damaged"
    shutil.copytree(saved_model, damaged)
    for weights in (damaged / "showo").glob("*.safetensors"):
        save_file({k: v.fill_(float("nan")) if k.endswith("lm_head.weight") else v
                   for k, v in load_file(weights).items()}, weights)
    fails(capsys, tmp_path, "write", "hi", "--device", "cpu", "--max-new-tokens", "3", "--model", str(damaged),
          match="the model's scores are NaN or infinite")
    fails(capsys, tmp_path, "mixed", "hi", "--device", "cpu", "--max-new-tokens", "3", "--model", str(damaged),
          match="the model's scores are NaN or infinite")


def test_usage_errors_and_help_answer_without_importing_torch_or_numpy():
    """Parsing (and so --help and every usage error) must not import torch, which takes seconds: the parser used
    to pull it in through its output, evaluation and benchmark modules (4 s for `showo --help`)."""
    code = ("import sys\n"
            "from showo.cli.main import main\n"
            "from showo.cli.parser import build_parser\n"
            "build_parser().format_help()\n"
            "for argv in (['generate', 'x', '--steps', '1001'], ['eval', '--json', 'e.json', '--samples', '0'],\n"
            "             ['bench', '--profile', 'nothing'], ['train', 'model'],\n"
            "             ['train', 'model', '--run', 'r', '--max-steps', '0']):\n"
            "    assert main(argv) == 2, argv\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'numpy' not in sys.modules, 'numpy was imported'\n")  # 0.18 s of the 0.3 s of --help
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(result.stderr.splitlines()) == 5 and "Traceback" not in result.stderr
    assert "argument --max-steps: must be a positive integer, got 0" in result.stderr


def test_outputs_that_collide_or_cannot_be_directories_fail_before_the_work(capsys, tmp_path, monkeypatch):
    """A --json that is --out itself (or one of its parents), two options naming one file, and a broken symbolic
    link as --out were found only after the whole run (eval then left an empty directory behind)."""
    import showo.bench.run
    import showo.evaluation.harness

    def started(*args, **kwargs):
        raise AssertionError("the work started before the outputs were checked")

    monkeypatch.setattr(showo.evaluation.harness, "run_evaluation", started)
    monkeypatch.setattr(showo.bench.run, "run", started)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    r = str(tmp_path / "r")
    eval_args = ["eval", "--samples", "1", "--tasks", "vqa", "--model", "tiny-random", "--device", "cpu"]
    cases = [
        ([*eval_args, "--json", r, "--out", r], "--json", "--out"),
        ([*eval_args, "--json", r, "--out", str(tmp_path / "r" / "sub")], "--json", "--out"),
        ([*eval_args, "--json", str(tmp_path / "e.json"), "--out", str(tmp_path / "dangling")], "--out",
         "broken symbolic link"),
        (["generate", "x", *FAST, "--out", str(tmp_path / "dangling" / "sub")], "--out", "broken symbolic link"),
        (["bench", "--tiny", "--json", r, "--markdown", r], "--markdown", "--json writes the same file"),
        (["bench", "--tiny", "--json", r, "--plots", str(tmp_path / "r" / "plots")], "--json", "--plots"),
    ]
    for argv, flag, problem in cases:
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith(f"showo: error: {flag}"), (argv, err)
        assert problem in err[0], (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling"]


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_devices_and_pipes_are_refused_as_input_files(capsys, tmp_path, special):
    """A FIFO or a device was "not found" as an image, and as a recipe it was read forever (/dev/zero until
    memory ran out)."""
    if special == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    else:
        path = Path(special)  # on every POSIX system, as os.mkfifo above
    fails(capsys, tmp_path, "caption", str(path), *TEXT, match="is a device, pipe or socket, not a regular file")
    (tmp_path / "d.jsonl").write_text(json.dumps({"image": str(path), "caption": "x"}) + "\n")
    for argv in (["finetune", str(path), "--run", str(tmp_path / "r")],
                 ["finetune", str(tmp_path / "d.jsonl"), "--run", str(tmp_path / "r")],
                 ["train", "model", "--run", str(tmp_path / "r"), "--recipe", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].endswith("is a device, pipe or socket, not a regular file"), (argv, err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, meant", [(["generate", "x", "--num-inference-steps", "3"], "--steps"),
                                         (["generate", "x", "--guidance-scale", "3"], "--guidance"),
                                         (["inpaint", "a", "b", "c", "--num-images-per-prompt=2"], "--num-images"),
                                         (["ask", "a", "q", "--max-new-tokns", "3"], "--max-new-tokens"),
                                         (["write", "hi", "--bogus"], None),
                                         # argparse stops at the missing --json first: the typo is named anyway
                                         (["eval", "--sampels", "3"], "--samples"),
                                         (["eval", "--bogus", "3"], None)])
def test_unknown_option_names_the_one_meant(capsys, argv, meant):
    """The Python API's names (and typos) as options: say which option means it."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (f"; did you mean {meant}?" in err) if meant else "did you mean" not in err, err


def test_dtype_takes_the_short_names(capsys, tmp_path):
    from showo.cli.parser import build_parser

    assert build_parser().parse_args(["write", "hi", "--dtype", "bf16"]).dtype == "bfloat16"
    assert build_parser().parse_args(["write", "hi", "--dtype", "fp32"]).dtype == "float32"
    assert main(["write", "hi", "--dtype", "float8"]) == 2 and "invalid choice: 'float8'" in capsys.readouterr().err
