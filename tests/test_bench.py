"""`showo bench --tiny`: every comparison runs and the fast paths agree with the official algorithms.
(Timings are not asserted: unit tests never judge speed.)"""
import json

import pytest

from showo.cli.main import main


def test_bench_tiny_outputs_agree(tmp_path, capsys):
    js, plots, md = tmp_path / "bench.json", tmp_path / "plots", tmp_path / "bench.md"
    assert main(["bench", "--tiny", "--json", str(js), "--plots", str(plots), "--markdown", str(md)]) == 0
    data = json.loads(js.read_text())
    assert data["all_outputs_agree"] is True and data["complete"] is True
    assert data["t2i_speedup_n25"]["agree"] is True  # the second image size is a checked comparison too
    for key in ("mmu_speedup", "t2i_speedup", "bf16_t2i_speedup", "mmu_batch8_throughput_gain", "train_step_speedup",
                "peak_rss_ratio_inference", "peak_rss_ratio_inference_packed", "flops_utilization",
                "bf16_t2i_compiled_speedup", "mmu_batch8_throughput_gain_bf16",
                "train_activation_memory_checkpointing_vs_official"):
        assert isinstance(data[key]["value"], float), key
    for key in ("mmu_speedup", "t2i_speedup", "train_step_speedup", "mmu_batch8_throughput_gain",
                "mmu_batch8_throughput_gain_dense", "mmu_batch1_packed_vs_dense",
                "mmu_batch8_one_image_throughput_gain", "serve_batching_throughput_gain"):
        assert data[key]["agree"] is True and data[key]["ours_s"] > 0 and data[key]["reference_s"] > 0
    assert data["t2i_speedup_n25"]["detail"]["work_ratio"] > 1  # skipped work: the prompt, the LM head's text rows
    assert data["mmu_batch8_throughput_gain"]["detail"]["batch1_run"] in ("single_dense", "single_packed")
    assert data["device"] == "cpu" and data["peak_rss_ratio_inference"]["measure"] == "resident set (VmHWM)"
    served = data["serve_batching_throughput_gain"]["detail"]  # 4 clients asking twice each, over 2 + 1 runs
    assert sum(served["requests_by_batch_size"].values()) == 4 * 2 * 2 and served["model"] == "tiny-random(seed=0)"
    assert set(data["mmu_time_vs_answer_length"]) == {"3", "6"}
    assert set(data["t2i_time_vs_image_tokens"]) == {"16", "25"}
    assert (plots / "mmu_time_vs_answer_length.png").is_file() and (plots / "t2i_time_vs_image_tokens.png").is_file()
    assert "x" in capsys.readouterr().out
    table = md.read_text().splitlines()
    assert len(table) == 2 + 14 + 4 and all(line.startswith("| ") for line in table)
    assert f"{data['mmu_speedup']['value']:.2f}x" in table[2]
    assert "25 image tokens" in md.read_text() and "% of tokens equal" in md.read_text()


def test_bench_keeps_partial_results_when_stopped(tmp_path):
    """A long (full-depth) run writes FILE.partial after every measurement: stopping it keeps what was measured,
    and FILE (here: the results of an earlier run) is left as it was."""
    from showo.bench.run import run

    class Stop(Exception):
        pass

    def log(line: str) -> None:
        if "t2i_b1_n16" in line:
            raise Stop

    js = tmp_path / "bench.json"
    js.write_text('{"earlier": "run"}')
    with pytest.raises(Stop):
        run("tiny", str(js), log=log)
    assert json.loads(js.read_text()) == {"earlier": "run"}
    data = json.loads((tmp_path / "bench.json.partial").read_text())
    assert data["complete"] is False and data["mmu_speedup"]["agree"] is True
    assert "peak_rss_ratio_inference" in data and "mmu_time_vs_answer_length" in data and "t2i_speedup" not in data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.json.partial"]  # no temporary file


@pytest.mark.parametrize("wrong_length", [6, 3])  # 6: the headline comparison; 3: a point of the length curve only
def test_bench_reports_no_ratio_when_outputs_disagree(tmp_path, capsys, monkeypatch, wrong_length):
    import showo.bench.harness as harness

    real = harness.official_mmu_generate

    def broken(model, ids, mask, n):  # the official re-creation made to answer differently
        out = real(model, ids, mask, n)
        return [*out[:-1], (out[-1] + 1) % 7] if n == wrong_length else out

    monkeypatch.setattr(harness, "official_mmu_generate", broken)
    js, md = tmp_path / "b.json", tmp_path / "b.md"
    assert main(["bench", "--tiny", "--only", "mmu", "--json", str(js), "--markdown", str(md)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("showo: error:")]
    assert len(errors) == 1 and f"mmu_{wrong_length}_tokens" in errors[0], errors
    data = json.loads(js.read_text())
    assert data["all_outputs_agree"] is False and data["disagree"] == [f"mmu_{wrong_length}_tokens"]
    assert data["mmu_time_vs_answer_length"][str(wrong_length)]["agree"] is False
    if wrong_length == 6:
        assert data["mmu_speedup"]["value"] is None and data["mmu_speedup"]["ratio"] is None
        assert "| - | NO |" in md.read_text()


def test_bench_only_runs_the_chosen_sections(tmp_path, capsys):
    js = tmp_path / "batch.json"
    assert main(["bench", "--tiny", "--only", "batch", "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    assert data["sections"] == ["batch"] and data["complete"] is True and data["all_outputs_agree"] is True
    assert "mmu_batch8_throughput_gain_bf16" in data and "mmu_speedup" not in data
    assert "peak_rss_ratio_inference" not in data and "train_step_speedup" not in data
    capsys.readouterr()
    assert main(["bench", "--tiny", "--only", "everything"]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("batch,n_image", [(1, 16), (2, 25)])
def test_t2i_work_count_matches_the_matmuls_run(batch, n_image):
    """`t2i_flops` (the work each algorithm does, behind the reported work ratio) equals the matmul FLOPs
    PyTorch counts while both generations run (math attention, so its products are counted too)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from showo.bench.harness import Bench, BenchConfig

    bench = Bench(BenchConfig.preset("tiny"))
    for official, fn in zip((False, True), bench.t2i_fns(batch, n_image)):
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            fn()
        assert counter.get_total_flops() == bench.t2i_flops(batch, n_image, official), official


def test_compiled_decoding_comparison_agrees():
    """The GPU rows `mmu_compiled_graph_vs_graph` and `mmu_compiled_speedup`, run on the CPU (the fixed-shape step
    without graphs): the compiled step gives the plain step's and the official algorithm's tokens, and the
    compile time is kept."""
    from showo.bench.harness import Bench, BenchConfig

    bench = Bench(BenchConfig.preset("tiny"))
    c = bench.mmu_compiled()
    assert c.agree and len(c.outputs[0]) == BenchConfig.preset("tiny").answer_tokens
    assert c.detail["compile_and_first_run_s"] > 0
    c = bench.mmu_compiled_speedup()
    assert c.agree and c.name == "mmu_6_tokens_compiled" and len(c.outputs[0]) == 6


@pytest.mark.parametrize("device, match", [("tpu", "--device"), ("cuda", "CUDA is not available"),
                                           ("mps", "runs on cpu or cuda")])
def test_bench_bad_device_is_one_line_error(capsys, monkeypatch, device, match):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on machines that have a GPU
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert main(["bench", "--tiny", "--device", device]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("showo: error:") and match in err, err


def test_profile_prints_where_the_time_goes(capsys, monkeypatch):
    """`showo bench --profile`: a table of the costliest operations for each workload, ours and the official's, on
    one prompt (the workload's random prompt is drawn once for both)."""
    from showo.bench.harness import Bench

    drawn = []
    for name in ("mmu_fns", "t2i_fns"):
        original = getattr(Bench, name)
        spy = lambda self, *a, _f=original, _n=name, **k: (drawn.append(_n), _f(self, *a, **k))[1]  # noqa: E731
        monkeypatch.setattr(Bench, name, spy)
    assert main(["bench", "--tiny", "--profile", "mmu", "t2i", "--profile-official"]) == 0
    assert drawn == ["mmu_fns", "t2i_fns"]
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.endswith(("(ours)", "(official)"))]
    assert headers == ["mmu (ours)", "mmu (official)", "t2i (ours)", "t2i (official)"]
    assert "aten::addmm" in out and out.count("Self CPU time total") == 4


@pytest.mark.parametrize("argv, match", [(["--profile", "mmu", "--json", "x.json"], "runs no sections: drop --json"),
                                         (["--profile", "mmu", "--only", "t2i"], "drop --only"),
                                         (["--profile-official"], "--profile-official goes with --profile"),
                                         (["--profile", "train"], "invalid choice")])
def test_profile_misuse_is_one_line_error(capsys, argv, match):
    assert main(["bench", "--tiny", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_markdown_names_what_a_cuda_graph_replays():
    from showo.bench.report import markdown_table

    row = lambda **detail: {"value": 2.0, "ours_s": 1.0, "reference_s": 2.0, "agree": True, "detail": detail}  # noqa: E731
    table = markdown_table({"mmu_speedup": row(cuda_graph=True),
                            "t2i_speedup": row(cuda_graph=True, image_tokens=256),
                            "t2i_cuda_graph_vs_eager": row(image_tokens=256),
                            "t2i_speedup_batch4": row(cuda_graph=False, image_tokens=256),
                            "bf16_t2i_speedup": row(cuda_graph=True, reference_cuda_graph=False,
                                                    image_tokens=256)}).splitlines()
    assert "(tokens replayed as CUDA graphs)" in table[2] and "(steps replayed as CUDA graphs)" in table[3]
    assert "(ours: steps replayed as CUDA graphs)" in table[6]
    assert "CUDA graphs vs without" in table[5] and "replayed" not in table[4] + table[5]
