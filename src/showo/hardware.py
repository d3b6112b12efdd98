"""What the machine multiplies fast: bfloat16 and float16 are a speed-up only where the hardware has instructions
for their matrix products.

On an x86 CPU, bf16 products are native with AVX-512 BF16 or AMX; without them PyTorch emulates them: through
oneDNN where the CPU has AVX-512 (unmeasured here), and with a scalar loop on an AVX2-only CPU (many AMD EPYC and
desktop parts). Measured on a 2-core AVX2 machine: a 1024x2048 @ 2048x2048 product ran at 0.3 GFLOP/s in bf16
and in fp16 against 126 GFLOP/s in float32, about 400x slower. On a GPU, bf16 is native from compute capability
8.0 (Ampere). `precision: auto` (training) picks bf16 only where it is native; a half-precision model or an
explicit bf16 elsewhere is allowed but warned about.
"""
from __future__ import annotations

import platform
import warnings
from functools import lru_cache

import torch

from .errors import ConfigError, InputError, ShowoWarning

PRECISIONS = ("fp32", "bf16", "auto")
NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16"}
MODEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def _x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _linux_cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def _x86_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: torch's own checks where this torch has them (2.5 and later), else the kernel's flags."""
    cpu = torch.cpu
    if hasattr(cpu, "_is_avx512_bf16_supported") and hasattr(cpu, "_is_amx_tile_supported"):
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    return bool(_linux_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def _mkldnn_gate(name: str) -> bool:
    """oneDNN's own check (a private op of torch.ops.mkldnn; absent: False)."""
    try:
        return bool(getattr(torch.ops.mkldnn, name)())
    except (AttributeError, RuntimeError):
        return False


@lru_cache(maxsize=None)
def _cpu_native(dtype: torch.dtype) -> bool:
    if dtype == torch.float16:  # AVX-512 FP16, AMX-FP16 or ARM fp16
        return _mkldnn_gate("_is_mkldnn_fp16_supported")
    # on x86, oneDNN's bf16 gate also admits AVX-512 without BF16, where it emulates bf16
    return _x86_native_bf16() if _x86() else _mkldnn_gate("_is_mkldnn_bf16_supported")


def _needs(dtype: torch.dtype, device: torch.device) -> str:
    """What makes `dtype` products native on `device`, for the warning."""
    if device.type != "cpu":
        return "native needs compute capability 8.0 or newer"
    needs = ("AVX-512 BF16 or AMX" if dtype == torch.bfloat16 else "AVX-512 FP16 or AMX-FP16") if _x86() \
        else f"the CPU's {NAMES[dtype]} instructions"
    return (f"PyTorch's CPU capability is {torch.backends.cpu.get_cpu_capability()}; native needs {needs}; about "
            "400x slower on an AVX2-only CPU")


def native_products(dtype: torch.dtype, device: str | torch.device) -> bool:
    """False where matrix products in `dtype` on `device` are emulated (slower than float32)."""
    device = torch.device(device)
    if dtype not in NAMES:
        return True
    if device.type == "cpu":
        return _cpu_native(dtype)
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.version.hip:
        return torch.cuda.get_device_capability(device)[0] >= 8
    return True  # fp16 on CUDA, ROCm; other accelerators: left to the user's choice


def native_bf16(device: str | torch.device) -> bool:
    """True where bf16 matrix products on `device` run on native instructions."""
    return native_products(torch.bfloat16, device)


def warn_if_emulated(dtype: torch.dtype, device: str | torch.device, what: str, fix: str) -> None:
    """Warn (in one line) when `what` will run half-precision products on a device that emulates them."""
    device = torch.device(device)
    if not native_products(dtype, device):
        name = NAMES[dtype]
        warnings.warn(f"{what} in {name}, but {name} matrix products are not native on this {device.type} "
                      f"({_needs(dtype, device)}): expect it slower than float32; {fix}", ShowoWarning, stacklevel=3)


def environment(device: str | torch.device = "cpu") -> dict:
    """What a result's numbers depend on beyond the code and the inputs: torch's version, the CPU's vector level
    (its float32 kernels round differently on another one) and whether bf16 is native on `device`."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": native_bf16(device)}


def check_precision(value: str, name: str = "precision") -> None:
    if value not in PRECISIONS:
        raise ConfigError(f"{name} must be one of {', '.join(PRECISIONS)}, got {value!r}")


def resolve_precision(precision: str, device: str | torch.device, warn: bool = True) -> str:
    """`fp32` or `bf16` for a training precision: `auto` is bf16 where it is native on `device`, else fp32. An
    explicit bf16 where it is emulated is warned about (`warn`: by one process of several)."""
    check_precision(precision)
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and warn:
        warn_if_emulated(torch.bfloat16, device, "training autocasts", "set precision: auto or fp32")
    return precision


def check_device(device, what: str = "device") -> torch.device:
    """`device` (a name or torch.device) as a torch.device this machine has; a one-line ConfigError otherwise.
    "auto" is the best one present: CUDA, then Apple MPS, then the CPU."""
    if not isinstance(device, (str, torch.device)):
        raise ConfigError(f"{what} must be a name such as 'cpu' or 'cuda:0', or a torch.device, got "
                          f"{type(device).__name__}")
    if device == "auto":
        mps = getattr(torch.backends, "mps", None)
        return torch.device("cuda" if torch.cuda.is_available() else
                            "mps" if mps is not None and mps.is_available() else "cpu")
    try:
        d = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"{what} {device!r} is not a device name (auto, cpu, cuda, cuda:N, mps)") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what} {device}: CUDA is not available on this machine (use cpu)")
        if (d.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"{what} {device}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif d.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"{what} {device}: Apple MPS is not available on this machine (use cpu)")
    elif d.type != "cpu":  # meta holds no weights; xpu, hpu... are untested here
        raise ConfigError(f"{what} {device}: showo runs on cpu, cuda or mps")
    return d


def check_dtype(dtype) -> None:
    """None (keep the checkpoint's), or a dtype the model computes in; float8 and complex ones are refused here
    rather than at the first product."""
    if dtype is not None and dtype not in MODEL_DTYPES:
        raise ConfigError(f"dtype must be torch.float32, torch.bfloat16, torch.float16 or torch.float64, got "
                          f"{dtype!r}")


def check_generator(generator, device: torch.device) -> None:
    """None, or a torch.Generator on the model's kind of device (the pipeline's and the samplers' one check:
    another kind failed inside torch.multinomial)."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise InputError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise InputError(f"generator is on {generator.device.type}, the model on {device.type}: make it with "
                         f"torch.Generator(device={str(device)!r})")
