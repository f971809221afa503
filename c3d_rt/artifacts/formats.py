"""The one table of formats: the files `c3d-rt export` writes, how to tell them apart, and their identity.

A *format* is a file name inside an export folder and the precision stored in it. A file's identity is one
SHA-256 over the files that make it up (an OpenVINO IR is its .xml and .bin): what a proof is bound to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.fileio import read_json, user_cache_file, write_json_quietly
from .info import FEATURE_LAYERS, OUTPUT_NAME, ArtifactError, ArtifactInfo, read_onnx_info, read_zip_metadata

CHECKPOINT = "checkpoint"  # the eager model's "format": a training checkpoint, not an export
DIGESTS_FILE = "digests.json"  # in the user cache: file SHA-256s by path, size and modification time


@dataclass(frozen=True)
class Format:
    name: str  # as `c3d-rt export --formats` takes it
    file: str  # file name inside an export folder
    precision: str  # what the stored model computes in
    kind: str  # the reader: torchscript, onnx, openvino, torch-export, aoti
    # ("triton": a model repository around the proven ONNX file, triton/c3d/1/model.onnx; see c3d_rt.artifacts.triton)
    outputs: tuple[str, ...] = (OUTPUT_NAME,)  # the graph's outputs, by name (ArtifactInfo.outputs)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("torchscript", "c3d.ts", "fp32", "torchscript"),
    Format("onnx", "c3d.onnx", "fp32", "onnx"),
    # fc6 and fc7 (after ReLU) beside the logits, for `c3d-rt features`: only when asked for (--formats onnx-features)
    Format("onnx-features", "c3d.features.onnx", "fp32", "onnx", outputs=(*FEATURE_LAYERS, OUTPUT_NAME)),
    Format("onnx-fp16", "c3d.fp16.onnx", "fp16", "onnx"),
    Format("onnx-int8", "c3d.int8.onnx", "int8", "onnx"),
    Format("openvino", "c3d.openvino.xml", "fp32", "openvino"),
    Format("openvino-int8", "c3d.int8.openvino.xml", "int8", "openvino"),
    Format("torch-export", "c3d.pt2", "fp32", "torch-export"),  # torch.export's ExportedProgram
    Format("aoti", "c3d.aoti.pt2", "fp32", "aoti"),  # AOTInductor: compiled C++ kernels for this CPU
    Format("triton", "triton/c3d/1/model.onnx", "fp32", "onnx"),  # only when asked for (--formats triton)
)}
# The openvino ones need the extra; aoti compiles C++ for minutes on a full-size model: asked by name only
# (as are triton and onnx-features).
DEFAULT_EXPORT_FORMATS = ("torchscript", "onnx", "onnx-fp16", "onnx-int8", "torch-export")


def format_of(path: Path) -> str:
    """The FORMATS name of one file (by its metadata where the suffix is ambiguous: kind, precision, outputs), or
    CHECKPOINT."""
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth", ".tar"):
        return CHECKPOINT
    if suffix == ".ts":
        return "torchscript"
    if suffix in (".onnx", ".xml", ".pt2"):
        info = read_artifact_info(path)
        kind = {".onnx": "onnx", ".xml": "openvino"}.get(suffix, info.fmt)
        for f in FORMATS.values():
            if f.kind == kind and f.precision == info.precision and f.outputs == info.outputs:
                return f.name
        raise ArtifactError(f"{path}: a {kind} model of precision {info.precision!r} with outputs "
                            f"{', '.join(info.outputs)}, which no engine runs")
    raise ArtifactError(f"{path}: not a c3d-rt model (expected .onnx, .ts, .pt2, .xml (OpenVINO IR), or a .pt "
                        "checkpoint). Export one with `c3d-rt export CKPT --out DIR`.")


def layer_formats(layer: str) -> tuple[str, ...]:
    """The formats whose files give ``layer`` (logits, fc6, fc7), and CHECKPOINT: the eager model computes every
    layer."""
    if layer not in (OUTPUT_NAME, *FEATURE_LAYERS):
        raise ArtifactError(f"unknown layer {layer!r}; choose from {', '.join((*FEATURE_LAYERS, OUTPUT_NAME))}")
    return (*(name for name, f in FORMATS.items() if layer in f.outputs), CHECKPOINT)


def artifact_files(path: Path) -> list[Path]:
    """The files that make up one artifact: an OpenVINO IR is an .xml and its .bin; a Triton repository's
    model.onnx comes with its config.pbtxt and labels.txt."""
    from . import triton as triton_repo
    from .openvino import companion_files

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
    memo_path = user_cache_file(DIGESTS_FILE)
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


def read_artifact_info(path: str | Path) -> ArtifactInfo:
    """Metadata of an ``.onnx``, OpenVINO IR (``.xml``), TorchScript (``.ts``) or ``.pt2`` artifact."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return read_onnx_info(path)
    if suffix == ".xml":
        from .openvino import read_openvino_info  # openvino is imported only for an IR

        return read_openvino_info(path)
    return read_zip_metadata(path)
