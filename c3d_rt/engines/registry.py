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
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import ArtifactError, ArtifactInfo, read_artifact_info
from ..errors import C3DError
from ..fileio import read_json, user_cache_dir, write_json_quietly
from ..machine import cpu_has_bf16, cuda_driver_present
from .base import Engine, EngineError, EngineUnavailable

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DEVICES = ("cpu", "cuda")
CHECKPOINT = "checkpoint"  # the eager model's "format": a training checkpoint, not an export
REPORT_FILE = "report.json"  # written by the exporter: which formats were proven, and how
DIGESTS_FILE = "digests.json"  # in the user cache: file SHA-256s by path, size and modification time


@dataclass(frozen=True)
class Format:
    name: str  # as `c3d-rt export --formats` takes it
    file: str  # file name inside an export folder
    precision: str  # what the stored model computes in
    kind: str  # the reader: torchscript, onnx, openvino, torch-export, aoti
    # ("triton": a model repository around the proven ONNX file, triton/c3d/1/model.onnx; see c3d_rt.triton_repo)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("torchscript", "c3d.ts", "fp32", "torchscript"),
    Format("onnx", "c3d.onnx", "fp32", "onnx"),
    Format("onnx-fp16", "c3d.fp16.onnx", "fp16", "onnx"),
    Format("onnx-int8", "c3d.int8.onnx", "int8", "onnx"),
    Format("openvino", "c3d.openvino.xml", "fp32", "openvino"),
    Format("openvino-int8", "c3d.int8.openvino.xml", "int8", "openvino"),
    Format("torch-export", "c3d.pt2", "fp32", "torch-export"),  # torch.export's ExportedProgram
    Format("aoti", "c3d.aoti.pt2", "fp32", "aoti"),  # AOTInductor: compiled C++ kernels for this CPU
    Format("triton", "triton/c3d/1/model.onnx", "fp32", "onnx"),  # only when asked for (--formats triton)
)}
# The openvino ones need the extra; aoti compiles C++ for minutes on a full-size model: asked by name only.
DEFAULT_EXPORT_FORMATS = ("torchscript", "onnx", "onnx-fp16", "onnx-int8", "torch-export")
TORCH_INSTALL = "pip install 'c3d-rt[train]'"


@dataclass(frozen=True)
class EngineSpec:
    name: str
    loader: str  # "module:function" under c3d_rt.engines, imported only when used
    library: str  # the Python package it needs
    install: str  # what brings the library
    devices: tuple[str, ...]
    formats: dict[str, tuple[str, ...]]  # precision -> formats it runs at that precision, preferred first
    summary: str
    remote: bool = False  # runs on a server (--triton-url): never chosen by auto; the plan's file is the reference


ENGINES: dict[str, EngineSpec] = {e.name: e for e in (
    EngineSpec("torch", "torch_engines:load_eager", "torch", TORCH_INSTALL, ("cpu", "cuda"),
               {"fp32": (CHECKPOINT,), "bf16": (CHECKPOINT,), "fp16": (CHECKPOINT,)},
               "eager PyTorch from the training checkpoint (bf16 by autocast; fp16 on CUDA)"),
    EngineSpec("torchscript", "torch_engines:load_torchscript", "torch", TORCH_INSTALL, ("cpu", "cuda"),
               {"fp32": ("torchscript",)}, "TorchScript (LibTorch users' format)"),
    EngineSpec("torch-export", "torch_engines:load_exported", "torch", TORCH_INSTALL, ("cpu", "cuda"),
               {"fp32": ("torch-export",)}, "torch.export ExportedProgram (.pt2), TorchScript's successor"),
    EngineSpec("aoti", "torch_engines:load_aoti", "torch", TORCH_INSTALL, ("cpu",),
               {"fp32": ("aoti",)}, "AOTInductor package (.pt2): C++ kernels compiled for the CPU at export"),
    EngineSpec("ort", "ort:load_ort", "onnxruntime", "pip install onnxruntime-gpu", ("cpu", "cuda"),
               {"fp32": ("onnx", "triton"), "fp16": ("onnx-fp16",), "int8": ("onnx-int8",)},
               "ONNX Runtime; on CUDA with I/O binding and CUDA graphs"),
    # No int8 row: TensorRT takes only symmetric int8 Q/DQ; c3d.int8.onnx has asymmetric uint8 activations.
    EngineSpec("tensorrt", "ort:load_tensorrt", "onnxruntime", "pip install onnxruntime-gpu, and TensorRT", ("cuda",),
               {"fp32": ("onnx",), "fp16": ("onnx",)},
               "TensorRT through ONNX Runtime's provider (fp16 kernels only when fp16 is asked)"),
    EngineSpec("openvino", "openvino_engine:load_openvino", "openvino", "pip install 'c3d-rt[openvino]'", ("cpu",),
               {"fp32": ("openvino", "onnx"), "bf16": ("openvino", "onnx"), "int8": ("openvino-int8", "onnx-int8")},
               "OpenVINO CPU (bf16 where the CPU has it; int8 from NNCF)"),
    # The device is where the server runs the model (its instance group), not this machine's.
    EngineSpec("triton", "triton_engine:load_triton", "tritonclient", "pip install 'c3d-rt[triton]'", ("cpu", "cuda"),
               {"fp32": ("onnx", "triton")}, "a Triton Inference Server (--triton-url http:// or grpc://), "
               "checked against the local ONNX model at start", remote=True),
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


# --- finding files ------------------------------------------------------------------------------------


def format_of(path: Path) -> str:
    """The FORMATS name of one file (by its metadata where the suffix is ambiguous), or CHECKPOINT."""
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth", ".tar"):
        return CHECKPOINT
    if suffix == ".ts":
        return "torchscript"
    if suffix in (".onnx", ".xml", ".pt2"):
        info = read_info(path)
        kind = {".onnx": "onnx", ".xml": "openvino"}.get(suffix, info.fmt)
        for f in FORMATS.values():
            if f.kind == kind and f.precision == info.precision:
                return f.name
        raise ArtifactError(f"{path}: a {kind} model of precision {info.precision!r}, which no engine runs")
    raise ArtifactError(f"{path}: not a c3d-rt model (expected .onnx, .ts, .pt2, .xml (OpenVINO IR), or a .pt "
                        "checkpoint). Export one with `c3d-rt export CKPT --out DIR`.")


def read_info(path: Path) -> ArtifactInfo:
    """The self-description of any artifact (an eager checkpoint describes itself too)."""
    if path.suffix.lower() in (".pt", ".pth", ".tar"):
        from .torch_engines import checkpoint_info

        return checkpoint_info(path)
    return read_artifact_info(path)


def artifact_files(path: Path) -> list[Path]:
    """The files that make up one artifact: an OpenVINO IR is an .xml and its .bin; a Triton repository's
    model.onnx comes with its config.pbtxt and labels.txt."""
    from .. import triton_repo
    from ..openvino_ir import companion_files  # torch- and openvino-free at import

    if triton_repo.is_repository_model(path):
        return triton_repo.companion_files(path)
    return companion_files(path) if path.suffix == ".xml" else [path]


def artifact_size_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in artifact_files(path) if f.is_file()) / 2**20, 2)


def artifact_sha256(path: Path) -> str:
    """One SHA-256 over the files of an artifact (what a proof is bound to).

    Remembered in the user cache by path, size and modification time, so a 300 MB model is
    hashed once, not on every start of `webcam`.
    """
    import hashlib

    parts = artifact_files(Path(path))
    stamp = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in parts)
    memo_dir = user_cache_dir()
    memo_path = memo_dir / DIGESTS_FILE if memo_dir else None
    memo = read_json(memo_path, {})
    if stamp in memo:
        return memo[stamp]
    digest = hashlib.sha256()
    for part in parts:
        with open(part, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    memo[stamp] = digest.hexdigest()
    write_json_quietly(memo_path, dict(list(memo.items())[-256:]))  # bounded: the newest 256 files
    return memo[stamp]


def folder_files(folder: Path) -> dict[str, Path]:
    """Format name -> file, for the formats present in an export folder."""
    return {name: folder / f.file for name, f in FORMATS.items() if (folder / f.file).is_file()}


def read_report(folder: Path) -> dict:
    """The exporter's report.json of a folder ({} when there is none or it is unreadable)."""
    return read_json(Path(folder) / REPORT_FILE, {})


def source_checkpoint(folder: Path) -> Path | None:
    """The checkpoint an export folder's artifacts were made from, if it is still there."""
    source = read_report(folder).get("source")
    if isinstance(source, str) and Path(source).is_file():
        return Path(source)
    files = list(folder_files(folder).values())
    for path in files:
        try:
            source = read_info(path).source_path
        except ArtifactError:
            continue
        if source and Path(source).is_file():
            return Path(source)
    return None


def proven_digests(folder: Path) -> dict[str, str]:
    """SHA-256 -> format of every file the exporter (or `verify`) proved equivalent, from ``report.json``."""
    try:
        return {a["sha256"]: a["format"] for a in read_report(folder)["artifacts"]
                if a.get("status") == "ok" and a.get("sha256")}
    except (KeyError, TypeError, AttributeError):
        return {}


def recorded_proof(path: Path) -> dict | None:
    """The exporter's (or `verify`'s) passing record of this file as it is now (same SHA-256), or None.

    What a machine without torch can check: that a file is the one proven, not the proof itself again.
    """
    path = Path(path)
    try:
        records = read_report(path.parent)["artifacts"]
        sha = artifact_sha256(path)
        return next((a for a in records if a.get("status") == "ok" and a.get("sha256") == sha), None)
    except (KeyError, TypeError, AttributeError, OSError):
        return None


def _proven_before_digests(folder: Path, path: Path) -> bool:
    """Reports written before proofs carried a SHA-256: the file under its exported name, same source."""
    report = read_report(folder)
    try:
        ok = {a["format"] for a in report["artifacts"] if a.get("status") == "ok" and "sha256" not in a}
        name = next((n for n, f in FORMATS.items() if f.file == path.name), None)
        return name in ok and read_info(path).source_sha256 == report.get("source_sha256")
    except (KeyError, TypeError, AttributeError, ArtifactError, OSError):
        return False


def runtime_proofs(folder: Path) -> dict[str, str]:
    """engine/precision/device -> SHA-256 of the file it was proven on, for precisions a runtime lowers by
    itself (OpenVINO bf16, TensorRT fp16, autocast): the exporter and ``verify --engine`` record them."""
    proofs = read_report(folder).get("proofs", [])
    try:
        return {p["plan"]: p["sha256"] for p in proofs if p.get("status") == "ok"}
    except (KeyError, TypeError, AttributeError):
        return {}


def unproven(plan: "Plan", folder: Path) -> str:
    """Why ``plan`` is not proven equivalent to the trained model (empty if it is)."""
    if plan.fmt == CHECKPOINT and not plan.lowered:
        return ""  # the eager fp32 model is the reference itself
    if not plan.lowered:
        proven = artifact_sha256(plan.path) in proven_digests(folder) or _proven_before_digests(folder, plan.path)
        return "" if proven else (
            f"not proven: {REPORT_FILE} beside it has no passing check of {plan.path.name} as it is now "
            f"(`c3d-rt verify {plan.path}` checks and records it)")
    if runtime_proofs(folder).get(plan.key) == artifact_sha256(plan.path):
        return ""
    return (f"not proven: {plan.engine} lowers {plan.path.name} to {plan.precision} itself, and no check of that is "
            f"recorded (`c3d-rt verify {plan.path} --engine {plan.engine} --precision {plan.precision} "
            f"--device {plan.device}` checks and records it)")


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
    return missing_library(spec) or device_unavailable(plan) or precision_unavailable(plan)


def resolve(model: Path, engine: str, precision: str = "auto", device: str = "auto", *,
            checkpoint: Path | None = None) -> Plan:
    """The one plan for an explicit engine (``auto`` is chosen by :mod:`.auto`), or a clear error."""
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}; choose auto or one of {', '.join(ENGINES)}")
    if precision != "auto" and precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}; choose auto or one of {', '.join(PRECISIONS)}")
    spec = ENGINES[engine]
    device = resolve_device(device, engine)
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
        usable = [p.key for p in plans(model, checkpoint=checkpoint)
                  if not availability(p) and not ENGINES[p.engine].remote]  # a server runs only when named
    except C3DError:
        usable = []
    if not usable:
        return "Nothing in it runs here: export it with `c3d-rt export CKPT --out DIR` (and install its engine)."
    return f"Available here: {', '.join(usable)}."


def proof_plan(path: Path, fmt: str) -> Plan:
    """How the exporter proves a file: the first engine in the table that runs it at its own precision on a CPU."""
    precision = FORMATS[fmt].precision
    engine = next(e for e in ENGINES.values() if fmt in e.formats.get(precision, ()) and "cpu" in e.devices)
    return Plan(engine.name, precision, "cpu", Path(path), fmt)


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

