"""The one table of engines, read by the exporter, the CLI, the bench, the live runner and ``auto``.

An *engine* is a runtime that reads some formats (:mod:`c3d_rt.artifacts.formats`) and runs them at some
precisions on some devices. This module says which, whether its library and the device are here, and loads
a plan's engine; :mod:`.resolve` turns a request into a plan.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..artifacts.formats import CHECKPOINT
from ..core.machine import cpu_has_bf16, cuda_driver_present, library_installed
from .base import DEVICES, Engine, EngineError, Plan

TORCH_INSTALL = "pip install 'c3d-rt[train]'"


@dataclass(frozen=True)
class EngineSpec:
    name: str
    loader: str  # "module:function" under c3d_rt.engines, imported only when used
    library: str  # the Python package it needs
    install: str  # what brings the library
    devices: tuple[str, ...]
    formats: dict[str, tuple[str, ...]]  # precision -> formats it runs at that precision, preferred first
    # (c3d.features.onnx last: it runs the logits too, but a folder's c3d.onnx is the file for them)
    summary: str
    remote: bool = False  # runs on a server (--triton-url): never chosen by auto; the plan's file is the reference


ENGINES: dict[str, EngineSpec] = {e.name: e for e in (
    EngineSpec("torch", "pytorch:load_eager", "torch", TORCH_INSTALL, ("cpu", "cuda"),
               {"fp32": (CHECKPOINT,), "bf16": (CHECKPOINT,), "fp16": (CHECKPOINT,)},
               "eager PyTorch from the training checkpoint (bf16 by autocast; fp16 on CUDA)"),
    EngineSpec("torchscript", "pytorch:load_torchscript", "torch", TORCH_INSTALL, ("cpu", "cuda"),
               {"fp32": ("torchscript",)}, "TorchScript (LibTorch users' format)"),
    EngineSpec("torch-export", "pytorch:load_exported", "torch", TORCH_INSTALL, ("cpu", "cuda"),
               {"fp32": ("torch-export",)}, "torch.export ExportedProgram (.pt2), TorchScript's successor"),
    EngineSpec("aoti", "pytorch:load_aoti", "torch", TORCH_INSTALL, ("cpu",),
               {"fp32": ("aoti",)}, "AOTInductor package (.pt2): C++ kernels compiled for the CPU at export"),
    EngineSpec("ort", "ort:load_ort", "onnxruntime", "pip install onnxruntime-gpu", ("cpu", "cuda"),
               {"fp32": ("onnx", "triton", "onnx-features"), "fp16": ("onnx-fp16",), "int8": ("onnx-int8",)},
               "ONNX Runtime; on CUDA with I/O binding and CUDA graphs"),
    # No int8 row: TensorRT takes only symmetric int8 Q/DQ; c3d.int8.onnx has asymmetric uint8 activations.
    EngineSpec("tensorrt", "ort:load_tensorrt", "onnxruntime", "pip install onnxruntime-gpu, and TensorRT", ("cuda",),
               {"fp32": ("onnx", "onnx-features"), "fp16": ("onnx",)},
               "TensorRT through ONNX Runtime's provider (fp16 kernels only when fp16 is asked)"),
    EngineSpec("openvino", "openvino:load_openvino", "openvino", "pip install 'c3d-rt[openvino]'", ("cpu",),
               {"fp32": ("openvino", "onnx", "onnx-features"), "bf16": ("openvino", "onnx"),
                "int8": ("openvino-int8", "onnx-int8")},
               "OpenVINO CPU (bf16 where the CPU has it; int8 from NNCF)"),
    # The device is where the server runs the model (its instance group), not this machine's.
    EngineSpec("triton", "triton:load_triton", "tritonclient", "pip install 'c3d-rt[triton]'", ("cpu", "cuda"),
               {"fp32": ("onnx", "triton")}, "a Triton Inference Server (--triton-url http:// or grpc://), "
               "checked against the local ONNX model at start", remote=True),
)}


def missing_library(spec: EngineSpec) -> str:
    """Empty if the engine's library is installed, else what to install."""
    if library_installed(spec.library):
        return ""
    return f"{spec.library} is not installed ({spec.install})"


def gpu_available() -> bool:
    """An NVIDIA driver is here (each engine then says whether its runtime can use the GPU)."""
    return cuda_driver_present()


def device_unavailable(plan: "Plan") -> str:
    """Why this engine cannot use this device here (empty if it can). Asked per engine: a CPU build of
    torch beside onnxruntime-gpu still lets ONNX Runtime use the GPU."""
    if plan.device != "cuda" or ENGINES[plan.engine].remote:  # a server's GPU is the server's to check
        return ""
    if not cuda_driver_present():
        return "no usable NVIDIA GPU here (no NVIDIA driver: libcuda.so.1 not found)"
    if ENGINES[plan.engine].library == "torch":
        import torch

        return "" if torch.cuda.is_available() else "torch here sees no CUDA GPU (a CPU build of torch?)"
    if plan.engine in ("ort", "tensorrt"):
        import onnxruntime as ort

        wanted = "TensorrtExecutionProvider" if plan.engine == "tensorrt" else "CUDAExecutionProvider"
        if wanted not in ort.get_available_providers():
            return f"ONNX Runtime {ort.__version__} here has no {wanted} (pip install onnxruntime-gpu)"
    return ""


def precision_unavailable(plan: "Plan") -> str:
    """Why this precision cannot run on this device here (empty if it can)."""
    if plan.device != "cpu":
        return ""
    if plan.engine == "torch" and plan.precision == "fp16":
        return "fp16 convolutions are not a CPU path in PyTorch (use bf16 where the CPU has it)"
    if plan.precision == "bf16" and not cpu_has_bf16():
        return "this CPU has no native bf16 (AVX-512 BF16 or AMX); emulated bf16 would be slower than fp32"
    return ""


def engine_options(engine: str, *, url: str | None = None, batch: int = 1) -> dict:
    """What ``open_engine`` needs for ``engine`` beyond the model: a remote engine's server URL, and the batch
    size ``auto`` times its candidates at; other engines take neither."""
    if engine == "auto":
        return {"batch": batch} if batch > 1 else {}
    return {"url": url} if engine in ENGINES and ENGINES[engine].remote else {}


def resolve_device(device: str, engine: str | None = None) -> str:
    """``auto``: cuda where the engine (or, without one, the driver) can use a GPU here, else cpu."""
    if device not in (*DEVICES, "auto"):
        raise EngineError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device != "auto":
        return device
    if engine is not None and ENGINES[engine].remote:
        return "cpu"  # the server decides: a remote engine reports the device of the server's instances
    if engine is None:
        return "cuda" if gpu_available() else "cpu"
    spec = ENGINES[engine]
    if "cuda" in spec.devices and not missing_library(spec) and not device_unavailable(
            Plan(engine, "fp32", "cuda", Path(), "")):
        return "cuda"
    return spec.devices[0] if "cpu" not in spec.devices else "cpu"


def load_plan(plan: Plan, **options) -> Engine:
    """Build the engine of a plan (imports its runtime only now)."""
    module, function = ENGINES[plan.engine].loader.split(":")
    loader = getattr(importlib.import_module(f"{__package__}.{module}"), function)
    return loader(plan, **options)
