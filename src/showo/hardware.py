"""What the machine multiplies fast: bfloat16 and float16 are a speed-up only where the hardware does their
matrix products natively.

On the CPU, PyTorch multiplies bf16 matrices with oneDNN only where the processor has AVX-512 (BW/VL/DQ) or
ARM's bf16 instructions, and fp16 ones where it has AVX-512 FP16 or AMX-FP16; elsewhere (an AVX2-only CPU, such
as many AMD EPYC and desktop parts) it falls back to a scalar loop. Measured on a 2-core AVX2 machine: a
1024x2048 @ 2048x2048 product ran at 0.3 GFLOP/s in bf16 against 126 GFLOP/s in float32, about 400x slower
(fp16 0.3 GFLOP/s too). `precision: auto` (training) picks bf16 only where it is native; a half-precision model
or an explicit bf16 where they are emulated is allowed but warned about.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import torch

from .errors import ConfigError, ShowoWarning

PRECISIONS = ("fp32", "bf16", "auto")
HALF = {torch.bfloat16: ("bfloat16", "AVX-512 or ARM bf16"), torch.float16: ("float16", "AVX-512 FP16 or AMX-FP16")}


@lru_cache(maxsize=None)
def _cpu_native(dtype: torch.dtype) -> bool:
    # torch's own gates for oneDNN half-precision matmul on the CPU (private ops: absent means not available)
    check = "_is_mkldnn_bf16_supported" if dtype == torch.bfloat16 else "_is_mkldnn_fp16_supported"
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):
        return False


def native_products(dtype: torch.dtype, device: str | torch.device) -> bool:
    """False where matrix products in `dtype` on `device` are emulated (far slower than float32)."""
    device = torch.device(device)
    if dtype not in HALF:
        return True
    if device.type == "cpu":
        return _cpu_native(dtype)
    if device.type == "cuda" and dtype == torch.bfloat16:
        return torch.cuda.is_bf16_supported()
    return True  # fp16 on CUDA; other accelerators: left to the user's choice


def native_bf16(device: str | torch.device) -> bool:
    """True where bf16 matrix products on `device` run on native kernels (so bf16 is faster than float32)."""
    return native_products(torch.bfloat16, device)


def warn_if_emulated(dtype: torch.dtype, device: str | torch.device, what: str) -> None:
    """Warn (in one line) when `what` will run half-precision products on a device that emulates them."""
    device = torch.device(device)
    if native_products(dtype, device):
        return
    name, needs = HALF[dtype]
    why = (f"PyTorch's CPU capability is {torch.backends.cpu.get_cpu_capability()}; native needs {needs}"
           if device.type == "cpu" else "native needs compute capability 8.0 or newer")
    warnings.warn(f"{what} in {name}, but {name} matrix products are not native on this {device.type} ({why}): "
                  "expect it far slower than float32", ShowoWarning, stacklevel=3)


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """`fp32` or `bf16` for a training precision: `auto` is bf16 where it is native on `device`, else fp32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16":
        warn_if_emulated(torch.bfloat16, device, "training autocasts")
    return precision
