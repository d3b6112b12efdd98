"""Run the benchmark suite: a table on stdout and one JSON object with every ratio and its raw timings."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import torch

from .harness import Bench, BenchConfig, Comparison, as_dict, peak_rss_bytes
from .plots import line_plot


def memory_ratio(mode: str) -> dict:
    """Peak resident memory of inference (mmu + t2i, ours) over the weights' size, in a fresh process, with
    the interpreter's own footprint (measured after imports, before the model exists) subtracted."""
    code = ("import json,torch;from showo.bench.harness import *;from showo.bench.run import _memory_child;"
            f"print(json.dumps(_memory_child({mode!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _memory_child(mode: str) -> dict:
    base = peak_rss_bytes()
    bench = Bench(BenchConfig.preset(mode))
    bench.mmu()
    bench.t2i(1, bench.cfg.image_tokens[0])
    peak = peak_rss_bytes()
    return {"peak_rss_bytes": peak, "baseline_rss_bytes": base, "weights_bytes": bench.weights_bytes,
            "ratio": (peak - base) / bench.weights_bytes}


def run(mode: str = "quick", json_path: str | None = None, plot_dir: str | None = None, log=print) -> dict:
    cfg = BenchConfig.preset(mode)
    t0 = time.perf_counter()
    bench = Bench(cfg)
    log(f"showo bench ({mode}): hidden {cfg.hidden}, {cfg.layers} layers, {cfg.heads} heads, mlp {cfg.mlp}, "
        f"{sum(p.numel() for p in bench.model.parameters()) / 1e6:.0f}M parameters, {torch.get_num_threads()} threads")
    results: dict = {"mode": mode, "config": cfg.__dict__.copy(), "torch": torch.__version__,
                     "threads": torch.get_num_threads()}
    rows: list[Comparison] = []

    def record(key: str, c: Comparison) -> Comparison:
        rows.append(c)
        results[key] = {"value": c.ratio, **as_dict(c)}
        log(f"  {c.name:34s} ours {c.ours_s:8.3f}s  reference {c.reference_s:8.3f}s  x{c.ratio:6.2f}  "
            f"{'agree' if c.agree else 'DISAGREE'}")
        return c

    mmu = record("mmu_speedup", bench.mmu())
    lengths = {}
    for n in cfg.answer_lengths:
        c = bench.mmu(n)
        lengths[n] = (c.ours_s, c.reference_s)
    results["mmu_time_vs_answer_length"] = {str(n): {"ours_s": a, "official_s": b} for n, (a, b) in lengths.items()}
    for b in cfg.t2i_batches:
        record("t2i_speedup" if b == cfg.t2i_batches[0] else f"t2i_speedup_batch{b}", bench.t2i(b, cfg.image_tokens[0]))
    by_tokens = {}
    for n in cfg.image_tokens:
        c = bench.t2i(1, n)
        by_tokens[n] = (c.ours_s, c.reference_s)
    results["t2i_time_vs_image_tokens"] = {str(n): {"ours_s": a, "official_s": b} for n, (a, b) in by_tokens.items()}
    record("bf16_t2i_speedup", bench.t2i(cfg.t2i_batches[0], cfg.image_tokens[0], dtype=torch.bfloat16))
    record("mmu_batch8_throughput_gain", bench.mmu_batch(8))
    record("train_step_speedup", bench.train_step(checkpointing=False))
    record("train_step_checkpointing_speed_ratio", bench.train_step(checkpointing=True))

    peak32 = Bench.matmul_peak(torch.float32)
    context = 256 + cfg.text_len
    achieved = bench.decode_flops_per_token(context) * mmu.detail["new_tokens"] / mmu.ours_s
    results["flops_utilization"] = {"value": achieved / peak32, "achieved_flops": achieved,
                                    "matmul_peak_flops_fp32": peak32, "what": "cached mmu decoding, fp32"}
    log(f"  flops utilisation (mmu decode fp32)   {achieved / 1e9:8.1f} GFLOP/s of {peak32 / 1e9:.1f} measured peak"
        f" = {achieved / peak32:.2f}")
    mem = memory_ratio(mode)
    results["peak_rss_ratio_inference"] = {"value": mem["ratio"], **mem}
    log(f"  peak RSS of inference / weights      {mem['ratio']:.2f}")
    results["all_outputs_agree"] = all(c.agree for c in rows)
    results["seconds"] = time.perf_counter() - t0
    if plot_dir:
        line_plot(f"{plot_dir}/mmu_time_vs_answer_length.png", "answer tokens", "seconds",
                  {"ours (KV cache)": [(n, a) for n, (a, _) in lengths.items()],
                   "official (recompute)": [(n, b) for n, (_, b) in lengths.items()]})
        line_plot(f"{plot_dir}/t2i_time_vs_image_tokens.png", "image tokens", "seconds",
                  {"ours (cached prompt)": [(n, a) for n, (a, _) in by_tokens.items()],
                   "official (recompute)": [(n, b) for n, (_, b) in by_tokens.items()]})
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
    log(f"done in {results['seconds']:.0f}s; outputs agree: {results['all_outputs_agree']}")
    return results
