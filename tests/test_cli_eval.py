"""`showo eval` writes the metrics JSON (a key per task, seen and held-out) and the report."""
import json

import pytest

from showo.cli.main import main


def test_eval_writes_json_and_report(tmp_path, capsys):
    out, js = tmp_path / "report", tmp_path / "metrics.json"
    code = main(["eval", "--model", "tiny-random", "--samples", "1", "--seed", "2", "--tasks", "vqa", "tokenizer",
                 "--json", str(js), "--out", str(out), "-q"])
    assert code == 0
    data = json.loads(js.read_text())
    assert data["seed"] == 2 and data["samples"] == 1
    for task in ("vqa", "tokenizer"):
        assert set(data[task]) == {"seen", "heldout"}
        assert all(isinstance(data[task][s]["overall"], float) for s in ("seen", "heldout"))
    assert 0.0 <= data["vqa"]["seen"]["overall"] <= 1.0
    assert (out / "report.md").is_file()
    assert "vqa" in capsys.readouterr().out


def test_eval_rejects_unknown_task(tmp_path, capsys):
    assert main(["eval", "--tasks", "dance", "--json", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


def test_eval_generation_settings_reach_the_evaluation_and_the_json(tmp_path, monkeypatch):
    import showo.evaluation.harness as harness

    seen = []
    real = harness.run_evaluation
    monkeypatch.setattr(harness, "run_evaluation", lambda *a, **k: seen.append(k["settings"]) or real(*a, **k))
    js = tmp_path / "m.json"
    code = main(["eval", "--model", "tiny-random", "--samples", "1", "--tasks", "tokenizer", "--steps", "3",
                 "--guidance", "2.5", "--story-guidance", "0", "--image-temperature", "0.5", "--json", str(js),
                 "--out", str(tmp_path / "r"), "-q"])
    assert code == 0
    expected = {"image_steps": 3, "guidance_scale": 2.5, "story_guidance_scale": 0.0, "image_temperature": 0.5}
    assert {k: getattr(seen[0], k) for k in expected} == expected
    assert {k: json.loads(js.read_text())["settings"][k] for k in expected} == expected


def test_eval_rejects_bad_generation_settings(tmp_path, capsys):
    for flag, value in (("--steps", "0"), ("--guidance", "-1"), ("--story-guidance", "x"),
                        ("--image-temperature", "-0.5")):
        assert main(["eval", flag, value, "--json", str(tmp_path / "x.json")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0], err
    assert not (tmp_path / "x.json").exists()


EVAL = ["eval", "--model", "tiny-random", "--samples", "1", "--tasks", "tokenizer"]


def test_eval_json_records_how_the_model_ran(tmp_path):
    js = tmp_path / "m.json"
    assert main([*EVAL, "--dtype", "bfloat16", "--json", str(js), "--out", str(tmp_path / "r"), "-q"]) == 0
    run = json.loads(js.read_text())["run"]
    assert run["model_source"]["dtype"] == "bfloat16" and run["model_source"]["device"] == "cpu"
    assert "--dtype bfloat16" in run["command_line"] and run["showo_version"]


def test_eval_writes_the_report_and_the_json_together_or_not_at_all(tmp_path, monkeypatch, capsys):
    """A --json path that turns unwritable during the run (here: a directory appears there) leaves no report."""
    import showo.evaluation.harness as harness

    js, out = tmp_path / "m.json", tmp_path / "r"
    real = harness.run_evaluation
    monkeypatch.setattr(harness, "run_evaluation", lambda *a, **k: js.mkdir() or real(*a, **k))
    assert main([*EVAL, "--json", str(js), "--out", str(out), "-q"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("showo: error:")]
    assert len(errors) == 1 and "m.json" in errors[0], errors
    assert not out.exists() or list(out.iterdir()) == []


def test_eval_json_may_not_replace_a_report_file(tmp_path, capsys):
    out = tmp_path / "r"
    for name in ("report.md", "tokenizer_seen.png"):
        assert main([*EVAL, "--json", str(out / name), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "writes a file of that name" in err[0], err
    assert not out.exists()
    assert main([*EVAL, "--json", str(out / "vqa_seen.png"), "--out", str(out), "-q"]) == 0  # not in this report


def test_eval_progress_on_a_terminal_and_stale_grids_noted(tmp_path, monkeypatch, capsys):
    import showo.cli.main as cli_main

    out = tmp_path / "r"
    out.mkdir()
    (out / "vqa_seen.png").write_bytes(b"old")
    monkeypatch.setattr(cli_main, "stderr_is_tty", lambda: True)
    assert main([*EVAL, "tokenizer", "--json", str(tmp_path / "m.json"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "eval:" in err and "/2 [" in err  # one task (named twice, run once), two splits
    assert "vqa_seen.png from an earlier evaluation" in err
    assert list(json.loads((tmp_path / "m.json").read_text())) == ["model", "seed", "samples", "tokenizer",
                                                                   "settings", "run"]


@pytest.mark.parametrize("flag, value, match", [
    ("--story-guidance", "1000", "argument --story-guidance: must be a number in [0, 100]"),
    ("--image-temperature", "101", "argument --image-temperature: must be a number in [0, 100]"),
    ("--steps", "1001", "argument --steps: must be an integer in [1, 1000]"),
])
def test_eval_settings_out_of_range_are_refused_before_the_model_loads(tmp_path, capsys, monkeypatch, flag, value,
                                                                      match):
    from showo.cli import commands

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(commands.Context, "load", no_load)
    assert main(["eval", "--json", str(tmp_path / "m.json"), flag, value, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not (tmp_path / "o").exists()
