"""The one table of formats and engines, read by the exporter, the CLI, the bench, the live runner and ``auto``.

A *format* is a file that ``c3d-rt export`` writes (name, file name, the
precision stored in it). An *engine* is a runtime that reads some formats and
runs them at some precisions on some devices. ``resolve`` turns what a user asked
for (a folder or a file, an engine, a precision, a device) into one concrete
plan, or a message that lists what is available here and what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import ArtifactError, ArtifactInfo, read_artifact_info
from ..errors import C3DError
from .base import Engine, EngineError, EngineUnavailable

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DEVICES = ("cpu", "cuda")
CHECKPOINT = "checkpoint"  # the eager model's "format": a training checkpoint, not an export
REPORT_FILE = "report.json"  # written by the exporter: which formats were proven, and how


@dataclass(frozen=True)
class Format:
    name: str  # as `c3d-rt export --formats` takes it
    file: str  # file name inside an export folder
    precision: str  # what the stored model computes in
    kind: str  # the reader: torchscript, onnx, openvino


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("torchscript", "c3d.ts", "fp32", "torchscript"),
    Format("onnx", "c3d.onnx", "fp32", "onnx"),
    Format("onnx-fp16", "c3d.fp16.onnx", "fp16", "onnx"),
    Format("onnx-int8", "c3d.int8.onnx", "int8", "onnx"),
    Format("openvino", "c3d.openvino.xml", "fp32", "openvino"),
    Format("openvino-int8", "c3d.int8.openvino.xml", "int8", "openvino"),
)}
DEFAULT_EXPORT_FORMATS = ("torchscript", "onnx", "onnx-fp16", "onnx-int8")  # the openvino ones need the extra


@dataclass(frozen=True)
class EngineSpec:
    name: str
    loader: str  # "module:function" under c3d_rt.engines, imported only when used
    library: str  # the Python package it needs
    install: str  # what brings the library
    devices: tuple[str, ...]
    formats: dict[str, tuple[str, ...]]  # precision -> formats it runs at that precision, preferred first
    summary: str


ENGINES: dict[str, EngineSpec] = {e.name: e for e in (
    EngineSpec("torch", "torch_engines:load_eager", "torch", "pip install torch", ("cpu", "cuda"),
               {"fp32": (CHECKPOINT,), "bf16": (CHECKPOINT,), "fp16": (CHECKPOINT,)},
               "eager PyTorch from the training checkpoint (bf16 by autocast; fp16 on CUDA)"),
    EngineSpec("torchscript", "torch_engines:load_torchscript", "torch", "pip install torch", ("cpu", "cuda"),
               {"fp32": ("torchscript",)}, "TorchScript (LibTorch users' format)"),
    EngineSpec("ort", "ort:load_ort", "onnxruntime", "pip install onnxruntime-gpu", ("cpu", "cuda"),
               {"fp32": ("onnx",), "fp16": ("onnx-fp16",), "int8": ("onnx-int8",)},
               "ONNX Runtime; on CUDA with I/O binding and CUDA graphs"),
    EngineSpec("tensorrt", "ort:load_tensorrt", "onnxruntime", "pip install onnxruntime-gpu, and TensorRT", ("cuda",),
               {"fp32": ("onnx",), "fp16": ("onnx",), "int8": ("onnx-int8",)},
               "TensorRT through ONNX Runtime's provider (fp16 kernels only when fp16 is asked)"),
    EngineSpec("openvino", "openvino_engine:load_openvino", "openvino", "pip install 'c3d-rt[openvino]'", ("cpu",),
               {"fp32": ("openvino", "onnx"), "bf16": ("openvino", "onnx"), "int8": ("openvino-int8", "onnx-int8")},
               "OpenVINO CPU (bf16 where the CPU has it; int8 from NNCF)"),
)}


@dataclass(frozen=True)
class Plan:
    """One concrete way to run a model: which engine reads which file at which precision on which device."""

    engine: str
    precision: str
    device: str
    path: Path
    fmt: str  # a FORMATS name, or CHECKPOINT

    @property
    def key(self) -> str:
        return f"{self.engine}/{self.precision}/{self.device}"

    @property
    def lowered(self) -> bool:
        """Whether the runtime lowers the stored precision itself (OpenVINO bf16, TensorRT fp16, autocast)."""
        stored = "fp32" if self.fmt == CHECKPOINT else FORMATS[self.fmt].precision
        return stored != self.precision


# --- what is installed and which devices exist -------------------------------------------------------------


def library_installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def missing_library(spec: EngineSpec) -> str:
    """Empty if the engine's library is installed, else what to install."""
    if library_installed(spec.library):
        return ""
    return f"{spec.library} is not installed ({spec.install})"


def cuda_driver_present() -> bool:
    """Whether an NVIDIA driver is installed (without it, asking ORT for CUDA only prints load errors)."""
    import ctypes
    import sys

    for name in (["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.dylib"]):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def gpu_available() -> bool:
    """A usable NVIDIA GPU: torch says so where torch is installed; otherwise the driver is present."""
    if library_installed("torch"):
        import torch

        return torch.cuda.is_available()
    return cuda_driver_present()


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (AVX-512 BF16 or AMX); without it bf16 is emulated and slower than fp32."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def precision_unavailable(plan: "Plan") -> str:
    """Why this precision cannot run on this device here (empty if it can)."""
    if plan.device != "cpu":
        return ""
    if plan.engine == "torch" and plan.precision == "fp16":
        return "fp16 convolutions are not a CPU path in PyTorch (use bf16 where the CPU has it)"
    if plan.precision == "bf16" and not cpu_has_bf16():
        return "this CPU has no native bf16 (AVX-512 BF16 or AMX); emulated bf16 would be slower than fp32"
    return ""


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if gpu_available() else "cpu"
    if device not in DEVICES:
        raise EngineError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return device


# --- finding files ------------------------------------------------------------------------------------


def format_of(path: Path) -> str:
    """The FORMATS name of one file (by its metadata where the suffix is ambiguous), or CHECKPOINT."""
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth", ".tar"):
        return CHECKPOINT
    if suffix == ".ts":
        return "torchscript"
    if suffix in (".onnx", ".xml"):
        info = read_info(path)
        kind = "onnx" if suffix == ".onnx" else "openvino"
        for f in FORMATS.values():
            if f.kind == kind and f.precision == info.precision:
                return f.name
        raise ArtifactError(f"{path}: a {kind} model of precision {info.precision!r}, which no engine runs")
    raise ArtifactError(f"{path}: not a c3d-rt model (expected .onnx, .ts, .xml (OpenVINO IR), or a .pt "
                        "checkpoint). Export one with `c3d-rt export CKPT --out DIR`.")


def read_info(path: Path) -> ArtifactInfo:
    """The self-description of any artifact (an eager checkpoint describes itself too)."""
    if path.suffix.lower() in (".pt", ".pth", ".tar"):
        from .torch_engines import checkpoint_info

        return checkpoint_info(path)
    return read_artifact_info(path)


def artifact_files(path: Path) -> list[Path]:
    """The files that make up one artifact: an OpenVINO IR is an .xml and its .bin."""
    from ..openvino_ir import companion_files  # torch- and openvino-free at import

    return companion_files(path) if path.suffix == ".xml" else [path]


def artifact_size_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in artifact_files(path) if f.is_file()) / 2**20, 2)


def artifact_sha256(path: Path) -> str:
    """One SHA-256 over the files of an artifact (what the exporter's proof is bound to)."""
    import hashlib

    digest = hashlib.sha256()
    for part in artifact_files(path):
        with open(part, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def folder_files(folder: Path) -> dict[str, Path]:
    """Format name -> file, for the formats present in an export folder."""
    return {name: folder / f.file for name, f in FORMATS.items() if (folder / f.file).is_file()}


def source_checkpoint(folder: Path) -> Path | None:
    """The checkpoint an export folder's artifacts were made from, if it is still there."""
    for path in folder_files(folder).values():
        try:
            source = read_info(path).source_path
        except ArtifactError:
            continue
        if source and Path(source).is_file():
            return Path(source)
    return None


def proven_formats(folder: Path) -> set[str]:
    """Formats whose file the exporter proved equivalent (``report.json``) and that are still that file
    (same SHA-256 as proven; a file changed after its export is not proven)."""
    try:
        report = json.loads((folder / REPORT_FILE).read_text())
        entries = {a["format"]: a for a in report["artifacts"] if a.get("status") == "ok"}
        sha = report["source_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    proven = set()
    for name, path in folder_files(folder).items():
        if name in entries:
            try:
                same_file = entries[name].get("sha256", "") in ("", artifact_sha256(path))  # "": older reports
                if same_file and read_info(path).source_sha256 == sha:
                    proven.add(name)
            except (ArtifactError, OSError):
                continue
    return proven


# --- from a request to a plan ------------------------------------------------------------------------------


def plans(model: Path, *, checkpoint: Path | None = None, devices: tuple[str, ...] = DEVICES) -> list[Plan]:
    """Every (engine, precision, device) that has a file to run in ``model`` (a folder or one file)."""
    model = Path(model)
    if model.is_dir():
        files = folder_files(model)
        ckpt = checkpoint or source_checkpoint(model)
    else:
        fmt = format_of(model)
        files = {} if fmt == CHECKPOINT else {fmt: model}
        ckpt = model if fmt == CHECKPOINT else checkpoint
    if ckpt is not None:
        files[CHECKPOINT] = Path(ckpt)
    found = []
    for spec in ENGINES.values():
        for precision, fmts in spec.formats.items():
            fmt = next((f for f in fmts if f in files), None)
            if fmt is None:
                continue
            found += [Plan(spec.name, precision, d, files[fmt], fmt) for d in spec.devices if d in devices]
    return found


def availability(plan: Plan) -> str:
    """Empty when ``plan`` can be tried here; otherwise why not (library missing, no GPU)."""
    spec = ENGINES[plan.engine]
    missing = missing_library(spec)
    if missing:
        return missing
    if plan.device == "cuda" and not gpu_available():
        return "no usable NVIDIA GPU here (CUDA driver or device missing)"
    return precision_unavailable(plan)


def resolve(model: Path, engine: str, precision: str = "auto", device: str = "auto", *,
            checkpoint: Path | None = None) -> Plan:
    """The one plan for an explicit engine (``auto`` is chosen by :mod:`.auto`), or a clear error."""
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}; choose auto or one of {', '.join(ENGINES)}")
    if precision != "auto" and precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}; choose auto or one of {', '.join(PRECISIONS)}")
    spec = ENGINES[engine]
    device = resolve_device(device) if device != "auto" else next(
        (d for d in (("cuda", "cpu") if gpu_available() else ("cpu",)) if d in spec.devices), spec.devices[0])
    if device not in spec.devices:
        raise EngineUnavailable(f"engine {engine} runs on {', '.join(spec.devices)} only, not {device}")
    options = [p for p in plans(model, checkpoint=checkpoint, devices=(device,)) if p.engine == engine]
    if precision == "auto":  # the file's own precision first, then the fastest usual one
        order = {"int8": 0, "fp16": 1, "fp32": 2, "bf16": 3} if not Path(model).is_dir() else {"fp32": 0}
        options = [p for p in options if not p.lowered] or options
        options.sort(key=lambda p: order.get(p.precision, 9))
    else:
        options = [p for p in options if p.precision == precision]
    if not options:
        raise EngineUnavailable(f"{model}: nothing for engine {engine} at precision {precision} on {device}. "
                                f"{_what_is_here(model, checkpoint)}")
    plan = options[0]
    why = availability(plan)
    if why:
        raise EngineUnavailable(f"engine {plan.key} cannot run here: {why}. {_what_is_here(model, checkpoint)}")
    return plan


def _what_is_here(model: Path, checkpoint: Path | None) -> str:
    try:
        usable = [p.key for p in plans(model, checkpoint=checkpoint) if not availability(p)]
    except C3DError:
        usable = []
    if not usable:
        return "Nothing in it runs here: export it with `c3d-rt export CKPT --out DIR` (and install its engine)."
    return f"Available here: {', '.join(usable)}."


def load_plan(plan: Plan, **options) -> Engine:
    """Build the engine of a plan (imports its runtime only now)."""
    module, function = ENGINES[plan.engine].loader.split(":")
    loader = getattr(importlib.import_module(f"{__package__}.{module}"), function)
    return loader(plan, **options)


def load_engine(model: str | Path, engine: str = "ort", precision: str = "auto", device: str = "auto", *,
                checkpoint: str | Path | None = None, **options) -> Engine:
    """The engine asked for, loaded (for ``engine="auto"`` use :func:`c3d_rt.engines.auto.choose`)."""
    plan = resolve(Path(model), engine, precision, device, checkpoint=Path(checkpoint) if checkpoint else None)
    return load_plan(plan, **options)

