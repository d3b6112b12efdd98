"""The benchmark's results as a Markdown table (for docs/benchmarks): every ratio with its raw timings and the
target the performance issue sets, so published numbers are copied by code, not by hand."""
from __future__ import annotations

import re

# key -> (what is compared, target as the issue states it; "" where there is none)
ROWS = {
    "mmu_speedup": ("understanding, greedy, batch 1: ours (KV cache) vs official recompute", ">= 10x at 100 tokens"),
    "mmu_cuda_graph_vs_eager": ("understanding, greedy, batch 1, GPU: ours with CUDA graphs vs without", ""),
    "mmu_compiled_graph_vs_graph": ("understanding, greedy, batch 1, GPU: CUDA graphs of the torch.compile'd step "
                                    "vs of the plain step", "optional; measured"),
    "mmu_compiled_speedup": ("understanding, greedy, batch 1, GPU: ours compiled (`compiled=True`) vs official "
                             "recompute", ">= 10x at 100 tokens"),
    "t2i_speedup": ("text-to-image with guidance, batch 1: ours vs official", ">= 1.5x"),
    "t2i_speedup_batch4": ("text-to-image with guidance, batch 4: ours vs official", ">= 1.5x"),
    "t2i_cuda_graph_vs_eager": ("text-to-image with guidance, batch 1, GPU: ours with CUDA graphs vs without", ""),
    "bf16_t2i_speedup": ("text-to-image, ours bf16 vs ours fp32, batch 1", ">= 3x"),
    "bf16_t2i_compiled_speedup": ("text-to-image bf16, torch.compile vs eager", "optional; measured"),
    "mmu_batch8_throughput_gain": ("understanding fp32: answers/s at batch 8 vs batch 1", ">= 4x"),
    "mmu_batch8_throughput_gain_dense": ("understanding fp32, dense weights: answers/s at batch 8 vs batch 1", ""),
    "mmu_batch1_packed_vs_dense": ("understanding fp32, batch 1: packed weights vs dense", ""),
    "mmu_batch8_one_image_throughput_gain": ("understanding fp32, 8 questions about one image (its prefix computed "
                                            "once): answers/s at batch 8 vs batch 1", ""),
    "mmu_batch8_throughput_gain_bf16": ("understanding bf16: answers/s at batch 8 vs batch 1", ">= 4x"),
    "serve_batching_throughput_gain": ("`showo serve`, clients asking at once: answers/s batching requests that "
                                       "wait together vs each alone", ""),
    "train_step_speedup": ("training step (mixed t2i/lm/mmu): ours vs official loop", ">= 1x"),
    "train_step_checkpointing_speed_ratio": ("training step, ours with gradient checkpointing vs official loop", ""),
}
MEMORY_ROWS = {
    "peak_rss_ratio_inference": ("inference peak memory / weights (ours, fresh process)", "<= 1.2"),
    "peak_rss_ratio_inference_packed": ("the same with the weights packed for oneDNN", "<= 1.2"),
    "train_activation_memory_checkpointing_vs_official": (
        "training activation peak: ours with checkpointing / official loop", "< 1"),
    "flops_utilization": ("FLOP utilisation of cached fp32 decoding vs measured matmul peak", ""),
}


IMAGE_SIZE_ROW = re.compile(r"t2i_speedup_n(\d+)")


def _rows(results: dict) -> dict[str, tuple[str, str]]:
    """ROWS with a row for each further image size the run measured, after the other text-to-image rows."""
    rows = {}
    for key, row in ROWS.items():
        if key == "bf16_t2i_speedup":
            sizes = sorted(int(m[1]) for k in results if (m := IMAGE_SIZE_ROW.fullmatch(k)))
            for n in sizes:
                rows[f"t2i_speedup_n{n}"] = (f"text-to-image with guidance, batch 1, {n} image tokens: ours vs "
                                             "official", ">= 1.5x")
        rows[key] = row
    return rows


def _agreement(r: dict) -> str:
    if not r["agree"]:
        return "NO"
    if "token_match_fraction" in r["detail"]:  # reduced precision: valid outputs, tokens not all identical
        return f"valid; {r['detail']['token_match_fraction']:.0%} of tokens equal"
    return "yes"


def markdown_table(results: dict) -> str:
    lines = ["| measurement | ours | reference | ratio | agree | target |", "| --- | --- | --- | --- | --- | --- |"]
    for key, (what, target) in _rows(results).items():
        r = results.get(key)
        if r:
            if "work_ratio" in r["detail"]:  # the ratio exact work-skipping can reach at an equal FLOP rate
                what += f" (work ratio {r['detail']['work_ratio']:.2f}x)"
            if r["detail"].get("cuda_graph"):  # the default of generate_text / maskgit_generate on a GPU
                whose = "ours: " if r["detail"].get("reference_cuda_graph") is False else ""
                what += f" ({whose}{'steps' if 'image_tokens' in r['detail'] else 'tokens'} replayed as CUDA graphs)"
            if "batch1_run" in r["detail"]:  # CPU: batch 8 with oneDNN-packed weights
                what += " (batch 8 with packed weights; batch 1 the faster of dense and packed)"
            elif r["detail"].get("packed"):
                what += " (batch 8 with packed weights, batch 1 dense)"
            ratio = "-" if r["value"] is None else f"{r['value']:.2f}x"
            lines.append(f"| {what} | {r['ours_s']:.3f} s | {r['reference_s']:.3f} s | {ratio} | {_agreement(r)} | "
                         f"{target} |")
    for key, (what, target) in MEMORY_ROWS.items():
        r = results.get(key)
        if r:
            if "measure" in r:  # resident set on the CPU, allocated device memory on CUDA
                what += f" ({r['measure']})"
            value = f"{r['value']:.2f}" if r["value"] >= 0.1 else f"{r['value']:.3f}"  # GPU utilisation is ~0.005
            lines.append(f"| {what} | | | {value} | | {target} |")
    if results.get("bf16_skipped"):
        lines.append(f"\n{results['bf16_skipped']}.")
    return "\n".join(lines) + "\n"
