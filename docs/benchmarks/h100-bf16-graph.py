"""The third call behind docs/benchmarks/README.md, "On a GPU: text-to-image" (one H100, 2026-11-28): bf16 at Phi-1.5
size, guided text-to-image (16 steps) with the step graph vs without, batch 1 and 4. Output: h100-bf16-graph.txt.
Run: PYTHONPATH=src python docs/benchmarks/h100-bf16-graph.py (needs a CUDA device)."""
import time

import torch

from showo.bench.harness import Bench, BenchConfig
from showo.sampling.maskgit import uses_image_graph

bench = Bench(BenchConfig.preset("full"), "cuda")
model = bench.cast(torch.bfloat16)
for batch, reps in ((1, 3), (4, 2)):
    cond, uncond = bench._t2i_inputs(batch, 256)
    run = {g: bench._t2i_ours(model, cond, uncond, 256, None, g) for g in (True, False)}
    out = {g: run[g]() for g in run}  # warm-up
    best = {True: 1e9, False: 1e9}
    for _ in range(reps):
        for g in (True, False):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out[g] = run[g]()
            torch.cuda.synchronize()
            best[g] = min(best[g], time.perf_counter() - t0)
    default = uses_image_graph(model, 2 * batch, 258, True, 16)  # the rule of that time: see the README
    print(f"bf16 batch {batch}: graph {best[True]:.4f} s, eager {best[False]:.4f} s, "
          f"ratio {best[False] / best[True]:.3f}, tokens equal {torch.equal(out[True], out[False])}, "
          f"default graph {default}", flush=True)
