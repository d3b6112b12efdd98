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
