"""Batch-8 prompt pass at full depth, fp32 packed weights: one batched forward vs row by row (each row's real
positions only, written into its row of the same cache, or into a cache of its own then copied: "own"),
alternating. Same prompts as showo bench's batch rows.
Usage: .venv/bin/python docs/benchmarks/avx2-products/prefill_rows.py [LAYERS [REPEATS [ROWS,ROWS...]]] [--dense]"""
import sys, time
import torch
from showo.backbone.cache import KVCache
from showo.bench.harness import Bench, BenchConfig
from showo.prompting.masks import mmu_mask, pad_after_prefix

layers = int(sys.argv[1]) if len(sys.argv) > 1 else 24
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
chunks = [int(c) for c in sys.argv[3].split(",")] if len(sys.argv) > 3 else [1]
cfg = BenchConfig(**{**BenchConfig.preset("full").__dict__, "layers": layers})
b = Bench(cfg)
model = b.packed() if "--dense" not in sys.argv else b.model
b._mmu_batch_fns(8, model)
prompts = b._batch_prompts[False][:8]
seqs, masks = [p[0] for p in prompts], [mmu_mask(p, b.vocab)[0, 0] for p in prompts]
mask, positions, slots = pad_after_prefix(masks, 0)
length = mask.shape[-1]
tokens = torch.zeros(8, length, dtype=torch.long)
for i, s in enumerate(seqs):
    tokens[i, slots[i]] = s
x = model.embed(tokens)
lens = [len(s) for s in seqs]

def view(cache, lo, hi):
    v = object.__new__(KVCache)
    v.k, v.v, v.max_len = [k[lo:hi] for k in cache.k], [t[lo:hi] for t in cache.v], cache.max_len
    return v

@torch.inference_mode()
def batched():
    cache = model.new_cache(8, length + 100)
    return model(input_embeddings=x, attention_mask=mask, position_ids=positions, cache=cache, start=0,
                 logits_slice=slice(-1, None))[:, -1]

@torch.inference_mode()
def by_rows(rows):
    cache = model.new_cache(8, length + 100)
    out = []
    for lo in range(0, 8, rows):
        hi = min(lo + rows, 8)
        off = length - max(lens[lo:hi])  # these rows' padding that all of them share is skipped
        out.append(model(input_embeddings=x[lo:hi, off:], attention_mask=mask[lo:hi, :, off:, :],
                         position_ids=positions[lo:hi, off:], cache=view(cache, lo, hi), start=off,
                         logits_slice=slice(-1, None))[:, -1])
    return torch.cat(out)

@torch.inference_mode()
def own_caches():
    """Row by row, each into a cache of its own (as one answer alone), then copied into the batch's cache."""
    cache = model.new_cache(8, length + 100)
    out = []
    for i in range(8):
        off = length - lens[i]
        own = model.new_cache(1, length + 100)
        out.append(model(input_embeddings=x[i:i + 1, off:], attention_mask=mask[i:i + 1, :, off:, :],
                         position_ids=positions[i:i + 1, off:], cache=own, start=off,
                         logits_slice=slice(-1, None))[:, -1])
        for mine, theirs in zip(cache.k + cache.v, own.k + own.v):
            mine[i] = theirs[0]
    return torch.cat(out)

ref = batched()
got = own_caches()
print(f"own caches: same argmax {bool((got.argmax(-1) == ref.argmax(-1)).all())}, max |diff| "
      f"{(got - ref).abs().max().item():.2e}", flush=True)
for c in chunks:
    got = by_rows(c)
    print(f"rows {c}: same argmax {bool((got.argmax(-1) == ref.argmax(-1)).all())}, max |diff| "
          f"{(got - ref).abs().max().item():.2e}", flush=True)
times = {"batched": [], "own": [], **{f"rows{c}": [] for c in chunks}}
for r in range(reps):
    for name in times:
        s = time.perf_counter()
        batched() if name == "batched" else own_caches() if name == "own" else by_rows(int(name[4:]))
        times[name].append(time.perf_counter() - s)
    print(r, {k: round(v[-1], 2) for k, v in times.items()}, flush=True)
print("medians", {k: round(sorted(v)[len(v) // 2], 2) for k, v in times.items()})
