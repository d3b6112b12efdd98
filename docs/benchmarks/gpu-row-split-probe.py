"""A probe prepared for the next GPU session (not yet run on one): does splitting each image step's products into
512 rows plus the rest make fp32 guided text-to-image at batch 1 faster on a GPU?

Why (docs/benchmarks/README.md, "On a GPU: text-to-image at batch 1"): a guided step at 256 image tokens runs
2 x 258 = 516 rows through every product, and on the H100 cuBLAS took about as long for 516 rows as for 640, and
1.4x as long as for 512. This probe times our generation (`Bench.t2i_fns`, full mode, 16 steps, step graph as
by default) with `torch.nn.functional.linear` splitting inputs of SPLIT + 1 to SPLIT + 16 rows into SPLIT rows
and the rest, against the plain products, alternating, with the official algorithm once for the ratio that
counts; and says whether the image tokens stay identical (the products' sums may run in another order).

Run (about 2 minutes on an H100): PYTHONPATH=src python docs/benchmarks/gpu-row-split-probe.py
On the CPU, a check that it runs and splits, not a timing: ... gpu-row-split-probe.py --device cpu --tiny
(toy shapes: 2 x 18 rows a step, split at 32).
"""
import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from showo.bench.harness import Bench, BenchConfig

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cuda")
parser.add_argument("--tiny", action="store_true")
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()
SPLIT = 32 if args.tiny else 512
device = torch.device(args.device)
plain, split_calls = F.linear, [0]


def split_linear(x, weight, bias=None):
    rows = x.numel() // x.shape[-1]
    if not SPLIT < rows <= SPLIT + 16:
        return plain(x, weight, bias)
    split_calls[0] += 1
    flat = x.reshape(rows, x.shape[-1])
    out = torch.cat((plain(flat[:SPLIT], weight, bias), plain(flat[SPLIT:], weight, bias)))
    return out.view(*x.shape[:-1], weight.shape[0])


@contextlib.contextmanager
def splitting():
    F.linear = split_linear  # nn.Linear.forward looks it up at every call
    try:
        yield
    finally:
        F.linear = plain


def timed(fn):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


bench = Bench(BenchConfig.preset("tiny" if args.tiny else "full"), device)
n_image = bench.cfg.image_tokens[0]
ours, official = bench.t2i_fns(1, n_image)
warm, _ = bench.t2i_fns(1, n_image, steps=1)
warm()
with splitting():
    warm()
times = {"plain": [], "split": []}
tokens = {}
for _ in range(args.repeats):
    for name in ("split", "plain"):
        with splitting() if name == "split" else contextlib.nullcontext():
            seconds, tokens[name] = timed(ours)
        times[name].append(seconds)
official_s, official_tokens = timed(official)
best = {name: min(t) for name, t in times.items()}
print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), torch {torch.__version__}")
print(f"rows split at {SPLIT}: {split_calls[0]} products split; per run: "
      + ", ".join(f"{name} {' '.join(f'{t:.3f}' for t in ts)} s" for name, ts in times.items()))
print(f"best: split {best['split']:.3f} s, plain {best['plain']:.3f} s: split is {best['plain'] / best['split']:.3f}x "
      f"as fast; official {official_s:.3f} s: {official_s / best['split']:.3f}x (split), "
      f"{official_s / best['plain']:.3f}x (plain)")
print("tokens identical: split vs plain", torch.equal(tokens["split"], tokens["plain"]),
      "| plain vs official", torch.equal(tokens["plain"], official_tokens))
if split_calls[0] == 0:
    raise SystemExit("no product was split: the step's row count is not what this probe expects")
