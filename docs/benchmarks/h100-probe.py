"""The probe behind docs/benchmarks/README.md, "On a GPU: text-to-image" (one H100, 2026-11-28), as run there:
GEMM times of the benchmark's shapes under cuBLAS and cuBLASLt; the embedded pipeline's text-to-image with and
without the step graph; full-size guided text-to-image, ours (no graph) and the official algorithm, under both
libraries. Output: h100-probe.txt. Run: PYTHONPATH=src python docs/benchmarks/h100-probe.py (needs a CUDA device)."""
import time

import torch
import torch.nn.functional as F

import showo.sampling.maskgit as mg
from showo.bench.harness import Bench, BenchConfig
from showo.embedded import load_embedded

dev = torch.device("cuda")
def t(fn, reps=5):
    fn(); torch.cuda.synchronize(); best = 1e9
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); torch.cuda.synchronize(); best = min(best, time.perf_counter() - t0)
    return best

print("== GEMM us (best of 5 x 20 calls)", flush=True)
shapes = [(2048, 2048), (2048, 8192), (8192, 2048)]
for lib in ("cublas", "cublaslt"):
    torch.backends.cuda.preferred_blas_library(lib)
    for m in (260, 512, 516, 640, 772, 1032, 2064):
        row = []
        for k, n in shapes:
            x = torch.randn(m, k, device=dev); w = torch.randn(n, k, device=dev); b = torch.randn(n, device=dev)
            row.append(t(lambda: [F.linear(x, w, b) for _ in range(20)]) / 20 * 1e6)
        print(lib, m, " ".join(f"{v:8.1f}" for v in row), flush=True)
torch.backends.cuda.preferred_blas_library("cublas")

print("== embedded t2i 16 steps, graph vs eager (s, best of 5)", flush=True)
pipe = load_embedded(device="cuda")
for label, thr in (("eager", 10**6), ("graph", 1), ("eager", 10**6), ("graph", 1)):
    mg.GRAPH_MIN_STEPS = thr
    s = t(lambda: pipe.text_to_image("a red circle", num_inference_steps=16, seed=1))
    print(label, f"{s:.4f}", flush=True)
mg.GRAPH_MIN_STEPS = 10**6
del pipe

print("== full t2i b1 n256 16 steps (s, best of 3)", flush=True)
bench = Bench(BenchConfig.preset("full"), dev)
ours, ref = bench.t2i_fns(1, 256)
outs = {}
for lib in ("cublas", "cublaslt", "cublas", "cublaslt"):
    torch.backends.cuda.preferred_blas_library(lib)
    a, b = t(ours, 3), t(ref, 3)
    outs[lib] = (ours(), ref())
    print(lib, f"ours {a:.3f} official {b:.3f} ratio {b / a:.3f}", flush=True)
print("tokens equal across libs:", all(torch.equal(x, outs["cublas"][0]) for x in (*outs["cublas"], *outs["cublaslt"])))
