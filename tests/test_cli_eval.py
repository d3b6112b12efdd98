"""`showo eval` writes the metrics JSON (a key per task, seen and held-out) and the report."""
import json

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
