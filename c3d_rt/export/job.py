"""`c3d-rt export`: TorchScript, ONNX fp32/fp16/int8 (and the fp32 features file), OpenVINO IR, .pt2 (torch.export,
AOTInductor), each proven equivalent before it is written.

Every artifact is written under a temporary name, checked against the eager
model on inputs the export never saw (random clips at batch 1 and 3, and clips
decoded from real video files), and only then renamed into place. A failing
artifact is deleted, reported with its measured error, and the command fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..artifacts import triton as triton_repo
from ..artifacts.formats import FORMATS, artifact_files, artifact_sha256, artifact_size_mb
from ..artifacts.info import OUTPUT_NAME, ArtifactInfo
from ..core.config import Preprocessing
from ..core.console import quiet_third_party
from ..core.errors import C3DError, describe
from ..core.machine import machine_info
from ..core.version import __version__
from ..engines import Engine
from ..engines.pytorch import reference_engine
from ..model.c3d import C3D
from ..model.checkpoint import Checkpoint, load_checkpoint
from .choice import check_repository, default_formats
from .inputs import (
    CHECK_WINDOWS,
    RANDOM_BATCHES,
    WINDOW_STRIDE,
    CheckInputs,
    ExportError,
    build_check_inputs,
    calibration_clips,
    data_sets_for,
)
from .onnx import write_onnx_features, write_onnx_fp16, write_onnx_fp32, write_onnx_int8
from .openvino import write_openvino_int8, write_openvino_ir
from .proof import ArtifactResult, compare, proof_engine, prove_lowered_plans
from .report import ExportReport, check_one_model, result_line, write_report
from .torch_formats import write_aoti, write_torch_export, write_torchscript

DEFAULT_OPSET = 18


def artifact_info(ckpt: Checkpoint, labels: list[str], prep: Preprocessing, fmt: str, precision: str,
                  opset: int | None, outputs: tuple[str, ...] = (OUTPUT_NAME,)) -> ArtifactInfo:
    torch_file = fmt in ("torchscript", "torch-export", "aoti")  # loads only on a compatible torch: say which wrote it
    return ArtifactInfo(labels, prep, ckpt.model_config, precision, fmt, opset, __version__, ckpt.sha256,
                        str(ckpt.path.resolve()), torch.__version__ if torch_file else "", outputs)


def resolve_labels(ckpt: Checkpoint, labels_file: str | Path | None) -> list[str]:
    n = ckpt.model_config.num_classes
    if labels_file:
        labels = [ln.strip() for ln in Path(labels_file).read_text().splitlines() if ln.strip()]
        if len(labels) != n:
            raise ExportError(f"{labels_file}: lists {len(labels)} labels; the model has {n} outputs.")
        return labels
    return ckpt.labels or [f"class_{i}" for i in range(n)]


def check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test", delete=True)
        probe.close()
    except OSError as exc:
        raise ExportError(f"{out_dir}: cannot write there ({exc.strerror}). Pass --out with a writable folder.") from None


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path = "export", *, formats: list[str] | None = None,
                      opset: int = DEFAULT_OPSET, calib: str | Path | None = None,
                      labels_file: str | Path | None = None, calib_clips: int = 32, check_clips: int = CHECK_WINDOWS,
                      force: bool = False, triton: triton_repo.TritonOptions | None = None,
                      log: Callable[[str], None] = print) -> ExportReport:
    """Export a checkpoint to the given formats; write only artifacts that prove equivalent.

    ``force`` lets files (and report.json) exported from another checkpoint, and an existing Triton model folder,
    be replaced; ``triton`` says how its server runs it. ``check_clips`` caps the held-out windows every reduced
    precision is proven on (see :mod:`c3d_rt.engines.equivalence`). Ctrl-C raises :class:`ExportInterrupted` once
    report.json has been written with what is proven so far."""
    start = time.perf_counter()
    formats = formats or default_formats()
    out_dir = Path(out_dir)
    check_repository(out_dir, formats, force)
    (triton or triton_repo.TritonOptions()).check()
    ckpt = load_checkpoint(ckpt_path)
    check_one_model(out_dir, ckpt.path, ckpt.sha256, force)  # one model a folder: another's only with --force
    labels = resolve_labels(ckpt, labels_file)
    prep = ckpt.preprocessing or Preprocessing.for_model(ckpt.model_config)
    model = ckpt.build_model()
    calib_set, held_out = data_sets_for(ckpt, prep, calib)  # a bad --calib is refused before anything is created
    check_out_dir(out_dir)
    inputs = build_check_inputs(model, calib_set, held_out, check_clips)
    report = ExportReport(str(Path(ckpt_path).resolve()), ckpt.sha256, str(out_dir), real_clips=len(inputs.real),
                          real_source=inputs.real_source, real_videos=inputs.videos,
                          windows_available=inputs.available, machine=machine_info())
    log(f"checking against {len(inputs.real)} real windows (16 frames every {WINDOW_STRIDE} over {inputs.videos} "
        f"videos of the {inputs.real_source}; they give {inputs.available}) and random clips at batch "
        f"{', '.join(map(str, RANDOM_BATCHES))}")
    job = ExportJob(ckpt, model, labels, prep, opset, calib_set, calib_clips, reference_engine(ckpt, model), inputs,
                    report, triton=triton or triton_repo.TritonOptions())
    try:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as staging:
            job.staging = Path(staging)
            for fmt in _ordered(formats):
                result = job.export_one(fmt, out_dir)
                report.artifacts.append(result)
                log(result_line(result))
        return write_report(out_dir, report, start, log, force=force, prove_lowered=lambda earlier: prove_lowered_plans(
            out_dir, ckpt.path, job.reference, inputs, earlier, log))
    except KeyboardInterrupt:  # what is proven and written so far is recorded, marked as not all there is
        report.complete = False
        report.unfinished = [f for f in _ordered(formats) if f not in {a.format for a in report.artifacts}]
        # another checkpoint's files go only once this export has proven one of its own
        replaced = force and any(r.status == "ok" for r in report.artifacts)
        raise ExportInterrupted(write_report(out_dir, report, start, log, None, force=replaced)) from None


class ExportInterrupted(KeyboardInterrupt):
    """Ctrl-C once the export had begun writing: ``report`` is what report.json now holds (``complete`` False).

    A Ctrl-C before that (loading, building the check inputs) is a plain KeyboardInterrupt: nothing was written."""

    def __init__(self, report: ExportReport) -> None:
        super().__init__()
        self.report = report


@dataclass
class ExportJob:
    """What every format of one export shares: the model, its reference engine, the check inputs."""

    ckpt: Checkpoint
    model: C3D
    labels: list[str]
    prep: Preprocessing
    opset: int
    calib_set: Any
    calib_clips: int
    reference: Engine
    inputs: CheckInputs
    report: ExportReport
    staging: Path = Path()
    fp32_onnx: Path | None = None  # written once, the source of every other ONNX/IR format
    triton: triton_repo.TritonOptions = field(default_factory=triton_repo.TritonOptions)

    def export_one(self, fmt: str, out_dir: Path) -> ArtifactResult:
        """Write one format to staging, prove it, and publish it only if it passed."""
        spec = FORMATS[fmt]
        tmp = self.staging / spec.file
        result = ArtifactResult(fmt, str(out_dir / spec.file), spec.precision)
        t0 = time.perf_counter()
        try:
            self.write(fmt, tmp)
            self.prove(result, tmp, fmt)
            if fmt == "openvino-int8" and result.status != "ok":
                # Once more with NNCF's full bias correction: on the demo model it cut the clips whose top-1
                # flipped from 7 to 3 of 180 (benchmarks/README.md). Its accuracy control, tuned on training
                # clips, reverted nothing on either model measured, so it is not the retry.
                self.write(fmt, tmp, full_bias_correction=True)
                self.prove(result, tmp, fmt)
        except C3DError:
            raise
        except Exception as exc:  # an exporter or runtime failure: report it, never half-write
            result.status, result.reason = "FAILED", describe(exc)
        result.seconds = round(time.perf_counter() - t0, 2)
        result.size_mb = artifact_size_mb(tmp)
        if result.status == "ok":
            result.sha256 = artifact_sha256(tmp)
            _publish(tmp, out_dir / spec.file)
        else:  # never leave an older, unproven file under this name
            for old in artifact_files(out_dir / spec.file):
                old.unlink(missing_ok=True)
        return result

    def prove(self, result: ArtifactResult, path: Path, fmt: str) -> None:
        with proof_engine(path, fmt) as candidate:
            compare(result, self.reference, candidate, self.inputs)

    def write(self, fmt: str, tmp: Path, full_bias_correction: bool = False) -> None:
        spec = FORMATS[fmt]
        info = artifact_info(self.ckpt, self.labels, self.prep, spec.kind, spec.precision,
                             self.opset if spec.kind in ("onnx", "openvino") else None, spec.outputs)
        with quiet_third_party():
            self._write_file(fmt, info, tmp, full_bias_correction)

    def _write_file(self, fmt: str, info: ArtifactInfo, tmp: Path, full_bias_correction: bool) -> None:
        """Write one format to ``tmp``; the fp32 ONNX file that the other formats derive from is written once."""
        torch_writers = {"torchscript": write_torchscript, "torch-export": write_torch_export, "aoti": write_aoti}
        if fmt in torch_writers:
            torch_writers[fmt](self.model, info, tmp)
            return
        if fmt == "onnx-features":  # its own graph (three outputs), not derived from c3d.onnx
            write_onnx_features(self.model, info, tmp, self.opset)
            return
        if self.fp32_onnx is None:  # remembered only once written: a failed write is tried again by the next format
            base = self.staging / "fp32-base.onnx"
            base_info = ArtifactInfo(**{**info.__dict__, "precision": "fp32", "fmt": "onnx"})
            write_onnx_fp32(self.model, base_info, base, self.opset)
            self.fp32_onnx = base
        if fmt == "onnx":
            shutil.copyfile(self.fp32_onnx, tmp)
        elif fmt == "triton":  # the same ONNX file, in a repository Triton serves
            triton_repo.write_repository(self.fp32_onnx, info, tmp, self.triton)
        elif fmt == "onnx-fp16":
            write_onnx_fp16(self.fp32_onnx, info, tmp)
        elif fmt == "openvino":
            write_openvino_ir(self.fp32_onnx, info, tmp)
        elif fmt in ("onnx-int8", "openvino-int8"):
            clips = calibration_clips(self.model, self.calib_set, self.calib_clips)
            self.report.calibration_clips = len(clips)
            if fmt == "onnx-int8":
                write_onnx_int8(self.fp32_onnx, info, tmp, clips)
            else:
                self.report.quantization["openvino-int8"] = write_openvino_int8(
                    self.fp32_onnx, info, tmp, clips, **({"fast_bias_correction": False} if full_bias_correction
                                                         else {}))


def _ordered(formats: list[str]) -> list[str]:
    return sorted(dict.fromkeys(formats), key=list(FORMATS).index)


def _publish(tmp: Path, target: Path) -> None:
    """Move a proven artifact into place: staging sits inside the output folder, so each move is an atomic
    rename; the file that names the artifact (an IR's .xml) comes last, after its companions."""
    if triton_repo.is_repository_model(target):  # a --force'd model folder is replaced whole (no stale version)
        folder = triton_repo.model_dir(target)
        if folder.exists():
            os.replace(folder, tmp.parents[3] / "replaced-triton-model")  # staging is removed at the end
        target.parent.mkdir(parents=True, exist_ok=True)
    for part, final in reversed(list(zip(artifact_files(tmp), artifact_files(target)))):
        os.replace(part, final)


