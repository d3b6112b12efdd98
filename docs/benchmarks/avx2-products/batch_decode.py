"""Where a batch-8 fp32 answer's time goes: the prompt pass against the decoding steps, for the 8 prompts of
`showo bench`'s batch rows and for the first of them alone. The benchmark's model (Phi-1.5 widths, LAYERS layers,
default 24), packed weights. Usage: .venv/bin/python docs/benchmarks/avx2-products/batch_decode.py [LAYERS]
A step = (11 tokens - 1 token) / 10; the prompt pass = 1 token - a step."""
import sys, time
from showo.bench.harness import Bench, BenchConfig
from showo.prompting.masks import mmu_mask
from showo.sampling.autoregressive import generate_text

layers = int(sys.argv[1]) if len(sys.argv) > 1 else 24
cfg = BenchConfig.preset("full")
cfg = BenchConfig(**{**cfg.__dict__, "layers": layers})
b = Bench(cfg)
model = b.packed()
b._mmu_batch_fns(8, model)
prompts = b._batch_prompts[False][:8]
ids, masks = [p[0] for p in prompts], [mmu_mask(p, b.vocab)[0, 0] for p in prompts]
print("prompt lengths", [len(i) for i in ids], flush=True)
run = lambda k, rows=8: generate_text(model, ids[:rows], masks[:rows], max_new_tokens=k, temperature=0)
run(2)
for rows in (8, 1):
    for rep in range(2):
        t = {}
        for k in (1, 11):
            s = time.perf_counter(); run(k, rows); t[k] = time.perf_counter() - s
        step = (t[11] - t[1]) / 10
        print(f"rows {rows}: 1 token {t[1]:.2f} s, 11 tokens {t[11]:.2f} s -> {step*1000:.0f} ms a step, "
              f"prompt pass about {t[1]-step:.2f} s", flush=True)
