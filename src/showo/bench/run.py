"""Run the benchmark suite: a table on stdout and one JSON object with every ratio and its raw timings."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from ..files import write_file
from ..hardware import environment, native_bf16
from . import SECTIONS
from .harness import Bench, BenchConfig, can_pack
from .timing import Comparison, as_dict, peak_rss_bytes
from .plots import line_plot


def in_fresh_process(what: str, mode: str, device: str = "cpu") -> dict:
    """Peak memory of one workload in a fresh process (peaks are per process and never go down)."""
    code = ("import json;from showo.bench.run import _memory_child;"
            f"print(json.dumps(_memory_child({what!r}, {mode!r}, {device!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_bytes(device: torch.device) -> int:
    """This process's peak memory so far: resident memory on the CPU, allocated device memory on CUDA."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes()


def _memory_child(what: str, mode: str, device: str = "cpu") -> dict:
    """`inference`: our mmu answer + our t2i image; peak memory minus the interpreter's own footprint (measured
    after imports, before the model exists), over the weights' (dense float32) size. `inference_packed`: the
    same with the weights packed for oneDNN first (`Showo.pack_weights`).
    `train_official` / `train_checkpointing`: a training step of the official loop / ours with gradient
    checkpointing, with the gradients already allocated (as in every step after the first): the activation peak
    is the peak above the interpreter minus weights and gradients. On CUDA the peak is of allocated device
    memory (the interpreter's footprint is then 0)."""
    dev = torch.device(device)
    base = peak_bytes(dev)
    bench = Bench(BenchConfig.preset(mode), dev)
    if what.startswith("inference"):
        if what == "inference_packed":
            bench.model.pack_weights()
        ours_mmu, _ = bench.mmu_fns(bench.cfg.answer_tokens)
        ours_t2i, _ = bench.t2i_fns(1, bench.cfg.image_tokens[0])
        ours_mmu(), ours_t2i()  # ours only: the official re-creations are not what this measures
    else:
        ours, official = bench.train_fns(checkpointing=True, keep_grads=True)
        for p in bench.model.parameters():  # gradients already allocated, as in every step after the first
            p.grad = torch.zeros_like(p)
        (ours if what == "train_checkpointing" else official)()
    peak = peak_bytes(dev)
    out = {"peak_bytes": peak, "baseline_bytes": base, "weights_bytes": bench.weights_bytes,
           "above_baseline_bytes": peak - base, "ratio": (peak - base) / bench.weights_bytes,
           "measure": "cuda max_memory_allocated" if dev.type == "cuda" else "resident set (VmHWM)"}
    if what.startswith("train"):
        out["activation_peak_bytes"] = peak - base - 2 * bench.weights_bytes
    return out


def bf16_skip_reason(mode: str, device: torch.device) -> str | None:
    """Why the bf16 rows are not measured, or None: where bf16 products are emulated (an AVX2-only CPU) they
    would time PyTorch's fallback loop, not bf16 (by the 400x product ratio measured there, hours at Phi-1.5
    widths: an estimate, not run). The tiny mode, a check of the code
    paths rather than a measurement, runs them anywhere."""
    if mode == "tiny" or native_bf16(device):
        return None
    cap = f" (PyTorch's CPU capability {torch.backends.cpu.get_cpu_capability()})" if device.type == "cpu" else ""
    return f"bf16 matrix products are not native on this {device.type}{cap}: bf16 rows not measured"


def run(mode: str = "quick", json_path: str | None = None, plot_dir: str | None = None, log=print,
        only: Sequence[str] = SECTIONS, device: str = "cpu") -> dict:
    """Every section of `only` (default all), in the order of `SECTIONS`, on `device` ("cpu" or "cuda")."""
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown benchmark section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    cfg = BenchConfig.preset(mode)
    t0 = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    sections = [s for s in SECTIONS if s in only]
    shapes = {"config": cfg.__dict__.copy()} if set(sections) - {"serve"} else {}  # (serve: the embedded model)
    size = f"hidden {cfg.hidden}, {cfg.layers} layers, {cfg.heads} heads, mlp {cfg.mlp}, " if shapes else ""
    log(f"showo bench ({mode}): {size}{name}, {torch.get_num_threads()} threads")
    results: dict = {"mode": mode, "sections": sections, **shapes, **environment(device),
                     "threads": torch.get_num_threads(), "device": device, "device_name": name, "complete": False}
    skip_bf16 = bf16_skip_reason(mode, torch.device(device)) if {"bf16", "batch"} & set(sections) else None
    if skip_bf16:
        results["bf16_skipped"] = skip_bf16
        log(f"  {skip_bf16}")
    rows: list[Comparison] = []

    def save(final: bool = False) -> None:
        """FILE.partial is rewritten after every measurement, so a long run that is stopped keeps what it measured
        without replacing FILE; FILE is written once the run is complete (and FILE.partial removed)."""
        if json_path:
            path = Path(json_path if final else f"{json_path}.partial")
            write_file(path, json.dumps(results, indent=2).encode(), "--json")
            if final:
                Path(f"{json_path}.partial").unlink(missing_ok=True)

    def record(key: str, c: Comparison) -> Comparison:
        rows.append(c)
        results[key] = {"value": c.ratio if c.agree else None, **as_dict(c)}
        work = f"  work ratio x{c.detail['work_ratio']:.2f}" if "work_ratio" in c.detail else ""
        ratio = f"x{c.ratio:6.2f}  agree" if c.agree else "no ratio: outputs DISAGREE"
        log(f"  {c.name:34s} ours {c.ours_s:8.3f}s  reference {c.reference_s:8.3f}s  {ratio}{work}")
        save()
        return c

    # memory first, in fresh processes, while this one holds no model (at full depth the official training
    # step alone needs most of a 24 GB machine)
    if "memory" in sections:
        _memory(results, mode, log, device)
        save()
    if "serve" in sections:  # (its own model, the embedded one: measured while this process holds no other)
        from .serving import serve_batching

        record("serve_batching_throughput_gain", serve_batching(mode, device))
    bench = Bench(cfg, device) if set(sections) - {"memory", "serve"} else None  # (what the sections below use)
    if bench is not None:
        params = sum(p.numel() for p in bench.model.parameters())
        log(f"  {params / 1e6:.0f}M parameters" if params >= 1e6 else f"  {params:,} parameters")

    def curve(key: str, points: dict[int, Comparison]) -> None:
        results[key] = {str(n): {"ours_s": c.ours_s, "official_s": c.reference_s, "agree": c.agree}
                        for n, c in sorted(points.items())}
        save()

    lengths: dict[int, Comparison] = {}
    by_tokens: dict[int, Comparison] = {}
    if "mmu" in sections:
        mmu = record("mmu_speedup", bench.mmu())
        _utilization(results, bench, mmu, log)
        if bench.device.type == "cuda":
            record("mmu_cuda_graph_vs_eager", bench.mmu_cuda_graph())
            record("mmu_compiled_graph_vs_graph", bench.mmu_compiled())
            record("mmu_compiled_speedup", bench.mmu_compiled_speedup())
        lengths[cfg.answer_tokens] = mmu
        for n in cfg.answer_lengths:  # the code paths are warm: no second warm-up
            if n not in lengths:
                lengths[n] = bench.mmu(n, warmup=False)
                rows.append(lengths[n])
                if not lengths[n].agree:
                    log(f"  {lengths[n].name:34s} outputs DISAGREE")
            curve("mmu_time_vs_answer_length", lengths)
    if "t2i" in sections:
        for b in cfg.t2i_batches:  # later batch sizes run warm code paths
            first = b == cfg.t2i_batches[0]
            c = record("t2i_speedup" if first else f"t2i_speedup_batch{b}",
                       bench.t2i(b, cfg.image_tokens[0], warmup=first))
            if b == 1:
                by_tokens[cfg.image_tokens[0]] = c
        if bench.device.type == "cuda":
            record("t2i_cuda_graph_vs_eager", bench.t2i_cuda_graph())
        for n in cfg.image_tokens:
            if n not in by_tokens:
                by_tokens[n] = record(f"t2i_speedup_n{n}", bench.t2i(1, n))
            curve("t2i_time_vs_image_tokens", by_tokens)
    if "bf16" in sections and not skip_bf16:
        b, n = cfg.t2i_batches[0], cfg.image_tokens[0]
        record("bf16_t2i_speedup", bench.t2i(b, n, dtype=torch.bfloat16))
        record("bf16_t2i_compiled_speedup", bench.t2i(b, n, dtype=torch.bfloat16, compiled=True))
    if "batch" in sections:
        if can_pack(bench.device):
            packed, dense, single = bench.mmu_batch_fp32(8, warmup=True)
            record("mmu_batch8_throughput_gain", packed)
            record("mmu_batch8_throughput_gain_dense", dense)
            record("mmu_batch1_packed_vs_dense", single)
        else:
            log("  (weights cannot be packed for oneDNN here: batch 8 measured with dense weights only)")
            # the dense fp32 decoding paths are warm when the mmu section ran
            record("mmu_batch8_throughput_gain", bench.mmu_batch(8, warmup="mmu" not in sections))
        record("mmu_batch8_one_image_throughput_gain", bench.mmu_batch_one_image(8))
        if not skip_bf16:
            record("mmu_batch8_throughput_gain_bf16", bench.mmu_batch(8, torch.bfloat16))
    if bench is not None:
        bench.drop_casts()  # the training steps below need the memory
    if "train" in sections:
        record("train_step_speedup", bench.train_step(checkpointing=False))
        record("train_step_checkpointing_speed_ratio", bench.train_step(checkpointing=True, warmup=False))
    results["all_outputs_agree"] = all(c.agree for c in rows)
    results["disagree"] = [c.name for c in rows if not c.agree]
    results["seconds"] = time.perf_counter() - t0
    results["complete"] = True
    if plot_dir:
        _plot(plot_dir, "mmu_time_vs_answer_length", "answer tokens", "ours (KV cache)", lengths, log)
        _plot(plot_dir, "t2i_time_vs_image_tokens", "image tokens", "ours (cached prompt)", by_tokens, log)
    save(final=True)
    log(f"done in {results['seconds']:.0f}s; outputs agree: {results['all_outputs_agree']}")
    return results


def _plot(plot_dir: str, name: str, x_label: str, ours_label: str, points: dict[int, Comparison], log) -> None:
    """Seconds against `x_label` for ours and the official re-creation, at the points whose outputs agree."""
    points = {n: c for n, c in sorted(points.items()) if c.agree}
    if len(points) < 2:
        log(f"  no plot {name}.png: {len(points)} point(s) with agreeing outputs in this run "
            f"(the section did not run, or this mode measures one size)")
        return
    series = {ours_label: [(n, c.ours_s) for n, c in points.items()],
              "official (recompute)": [(n, c.reference_s) for n, c in points.items()]}
    line_plot(f"{plot_dir}/{name}.png", x_label, "seconds", series)


def _memory(results: dict, mode: str, log, device: str) -> None:
    """Inference peak over the weights, and the training activation peak with checkpointing vs the official."""
    mem = in_fresh_process("inference", mode, device)
    results["peak_rss_ratio_inference"] = {"value": mem["ratio"], **mem}
    log(f"  peak memory of inference / weights   {mem['ratio']:.2f}  ({mem['measure']})")
    if can_pack(torch.device(device)):
        mem = in_fresh_process("inference_packed", mode)
        results["peak_rss_ratio_inference_packed"] = {"value": mem["ratio"], **mem}
        log(f"  the same, weights packed for oneDNN  {mem['ratio']:.2f}")
    official, ckpt = (in_fresh_process(what, mode, device) for what in ("train_official", "train_checkpointing"))
    ratio = ckpt["activation_peak_bytes"] / official["activation_peak_bytes"]
    results["train_activation_memory_checkpointing_vs_official"] = {"value": ratio, "ours_checkpointing": ckpt,
                                                                    "official": official}
    log(f"  training activation peak, ours with checkpointing / official  "
        f"{ckpt['activation_peak_bytes'] / 2**20:.0f} / {official['activation_peak_bytes'] / 2**20:.0f} MiB = {ratio:.2f}")


def _utilization(results: dict, bench: Bench, mmu: Comparison, log) -> None:
    """Achieved FLOP/s of our cached fp32 decoding over a matmul peak measured now."""
    peak32 = Bench.matmul_peak(torch.float32, device=bench.device)
    context = mmu.detail["prompt_tokens"] + mmu.detail["new_tokens"] // 2  # mean context while decoding
    achieved = bench.decode_flops_per_token(context) * mmu.detail["new_tokens"] / mmu.ours_s
    results["flops_utilization"] = {"value": achieved / peak32, "achieved_flops": achieved,
                                    "matmul_peak_flops_fp32": peak32, "what": "cached mmu decoding, fp32"}
    log(f"  flops utilisation (mmu decode fp32)   {achieved / 1e9:8.1f} GFLOP/s of {peak32 / 1e9:.1f} measured peak"
        f" = {achieved / peak32:.2f}")
