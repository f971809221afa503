"""What this machine is: CPU model and the flags that decide which path is fastest, GPU, driver, versions.

Torch-free (the runtime must not need torch): the GPU is read from the NVIDIA driver's
files and ``libcuda``, not from ``torch.cuda``. Every report (export, bench) and ``auto``'s
cache key describe the machine through :func:`machine_info`.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
import sys
import time
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

SPEED_FLAGS = ("avx2", "fma", "f16c", "avx512", "avx_vnni", "amx")  # prefixes of the flags that matter here
LIBRARIES = ("torch", "onnxruntime-gpu", "onnxruntime", "openvino", "nncf", "numpy", "opencv-python")


@lru_cache(maxsize=1)
def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _cpuinfo_field(name: str) -> str:
    return next((ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith(name)), "")


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    return set(_cpuinfo_field("flags").split())


def speed_flags() -> str:
    """The CPU features that decide which path is fastest (AVX2, AVX-512, VNNI, bf16, AMX), sorted."""
    return " ".join(sorted(f for f in cpu_flags() if f.startswith(SPEED_FLAGS)))


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (AVX-512 BF16 or AMX); without it bf16 is emulated and slower than fp32."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def cuda_driver_present() -> bool:
    """Whether an NVIDIA driver is installed (without it, asking ORT for CUDA only prints load errors)."""
    for name in (["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.dylib"]):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def gpu_name() -> str | None:
    """The first NVIDIA GPU's model, from the driver's files (None without one)."""
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            continue
    torch = sys.modules.get("torch")  # elsewhere (Windows, containers without /proc/driver), ask torch if loaded
    if torch is not None:
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    return None


def nvidia_driver() -> str | None:
    path = Path("/proc/driver/nvidia/version")
    try:
        return path.read_text().splitlines()[0].strip() if path.is_file() else None
    except OSError:
        return None


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict:
    """The machine block of every report: CPU (model, cores, speed flags), GPU and driver, versions, date."""
    from .version import __version__

    libs = library_versions()
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "cpu_flags": speed_flags(), "gpu": gpu_name(),
            "gpu_driver": nvidia_driver(), "python": platform.python_version(), "platform": platform.platform(),
            "torch": libs["torch"], "onnxruntime": libs["onnxruntime-gpu"] or libs["onnxruntime"],
            "openvino": libs["openvino"], "nncf": libs["nncf"], "date": time.strftime("%Y-%m-%d"),
            "c3d_rt": __version__}


def library_installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


MATRIX_N = 2048  # square operands: large enough that the rate is the arithmetic's, small enough to take a second


def matrix_rates(seconds: float = 0.3, n: int = MATRIX_N) -> dict[str, float | str | None]:
    """This machine's measured dense matrix-product rate per precision, in TFLOP/s: the floor a C3D clip's
    arithmetic (``ModelConfig.gflops``) can reach on the CPU, for the bench to hold every row against.

    fp32 and bf16 through torch (oneDNN: AMX where the CPU has it), int8 through ``torch._int_mm`` where this
    torch exposes it on the CPU; without torch, fp32 through NumPy and the others None. Each figure is the best
    of the products that fit in ``seconds`` (at least two, after one untimed), on torch's or NumPy's own threads.
    """
    if importlib.util.find_spec("torch") is None:
        import numpy as np

        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        return {"library": f"numpy {np.__version__}", "fp32": _best_rate(lambda: a @ a, n, seconds),
                "bf16": None, "int8": None}
    import torch

    rates: dict[str, float | str | None] = {"library": f"torch {torch.__version__}"}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if dtype == torch.bfloat16 and not cpu_has_bf16():
            rates[name] = None  # emulated: slower than fp32, no floor worth the name (and seconds to measure)
            continue
        a = torch.randn(n, n).to(dtype)
        rates[name] = _best_rate(lambda: a @ a, n, seconds)
    q = torch.randint(-128, 128, (n, n), dtype=torch.int8)
    try:
        rates["int8"] = _best_rate(lambda: torch._int_mm(q, q), n, seconds)
    except (AttributeError, RuntimeError, NotImplementedError):  # not exposed for the CPU by this torch
        rates["int8"] = None
    return rates


def _best_rate(product, n: int, seconds: float) -> float:
    product()
    best, spent, runs = float("inf"), 0.0, 0
    while runs < 2 or spent < seconds:
        start = time.perf_counter()
        product()
        took = time.perf_counter() - start
        best, spent, runs = min(best, took), spent + took, runs + 1
    return round(2 * n**3 / best / 1e12, 4)
