"""`c3d-rt verify`: re-run the proof of one exported file (or of an engine lowering it) and record it."""

from __future__ import annotations

import time
from pathlib import Path

from ..artifacts.formats import CHECKPOINT, artifact_sha256, artifact_size_mb, format_of, read_artifact_info
from ..core.errors import describe
from ..engines import load_plan
from ..engines.pytorch import reference_engine
from ..engines.resolve import proof_plan, resolve
from ..model.checkpoint import Checkpoint, load_checkpoint
from .inputs import CHECK_WINDOWS, ExportError, build_check_inputs, data_sets_for
from .proof import ArtifactResult, compare
from .report import record_verification


def verify_artifact(artifact: str | Path, against: str | Path | None = None, *, calib: str | Path | None = None,
                    check_clips: int = CHECK_WINDOWS, engine: str | None = None, precision: str = "auto",
                    device: str = "cpu") -> ArtifactResult:
    """Re-run the equivalence check of one artifact against its source checkpoint, and record it.

    Without ``engine``, the file is checked as the exporter checked it. With one, that engine x
    precision x device is checked on the file (e.g. OpenVINO lowering an fp32 IR to bf16), so that
    ``--engine auto`` may choose it afterwards. Either way the result goes into the ``report.json``
    beside the file, bound to the file's SHA-256. A reduced precision is judged, as the exporter judges it, on up
    to ``check_clips`` held-out windows with the evidence rule (:mod:`c3d_rt.engines.equivalence`).
    """
    artifact = Path(artifact)
    fmt = format_of(artifact)
    if fmt == CHECKPOINT:
        raise ExportError(f"{artifact}: a training checkpoint is the reference itself; verify an exported file "
                          "(.onnx, .xml, .ts).")
    info = read_artifact_info(artifact)
    ckpt = _source_of(artifact, info, against)
    plan = resolve(artifact, engine, precision, device, checkpoint=ckpt.path) if engine else proof_plan(artifact, fmt)
    model = ckpt.build_model()
    calib_set, held_out = data_sets_for(ckpt, info.preprocessing, calib)
    inputs = build_check_inputs(model, calib_set, held_out, check_clips)
    result = ArtifactResult(fmt, str(artifact), plan.precision, size_mb=artifact_size_mb(artifact))
    t0 = time.perf_counter()
    try:
        with load_plan(plan) as candidate:
            compare(result, reference_engine(ckpt, model), candidate, inputs)
    except Exception as exc:
        result.status, result.reason = "FAILED", describe(exc)
    result.seconds = round(time.perf_counter() - t0, 2)
    result.sha256 = artifact_sha256(artifact)
    record_verification(artifact.parent, plan, result, ckpt.sha256)
    return result


def _source_of(artifact: Path, info, against: str | Path | None) -> Checkpoint:
    source = Path(against) if against else Path(info.source_path)
    if not source.is_file():
        raise ExportError(f"{artifact}: its source checkpoint {source} is not there; pass --against CKPT.")
    ckpt = load_checkpoint(source)
    if not against and ckpt.sha256 != info.source_sha256:
        raise ExportError(f"{source}: has changed since {artifact} was exported (SHA-256 {ckpt.sha256[:12]} vs "
                          f"{info.source_sha256[:12]}); pass --against CKPT to compare anyway.")
    return ckpt
