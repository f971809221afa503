"""What every bench row is judged against: the eager fp32 model of the checkpoint named (or, without one or without
torch, the proven ONNX file) on real clips of the model's own data, or synthetic motion clips where that is gone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts.formats import FORMATS, folder_files
from ..artifacts.info import ArtifactInfo
from ..artifacts.proofs import read_report, recorded_proof, source_checkpoint
from ..core.machine import library_installed
from ..engines import Plan, load_plan
from ..engines.equivalence import run_batched
from ..engines.resolve import read_info
from .rows import BenchError


def find_reference(model_dir: Path, checkpoint: Path | None) -> tuple[ArtifactInfo, Path | None]:
    """The metadata of the folder's artifacts, and the checkpoint they were exported from: the one named, or the
    folder's own (never one outside it that the export recorded; without it the proven c3d.onnx is the reference)."""
    if not model_dir.is_dir():
        raise BenchError(f"--model {model_dir}: expected the folder `c3d-rt export` wrote (c3d.onnx, c3d.ts, ...).")
    files = folder_files(model_dir)
    if not files:
        raise BenchError(f"--model {model_dir}: holds none of {', '.join(f.file for f in FORMATS.values())}. "
                         "Run `c3d-rt export CKPT --out DIR` first.")
    info = read_info(next(iter(files.values())))
    return info, checkpoint or source_checkpoint(model_dir)


def agreement_clips(info: ArtifactInfo, checkpoint, n: int) -> tuple[np.ndarray, str]:
    """Real held-out clips of the checkpoint's data set; synthetic motion clips when it has none here."""
    from ..data.synth import synthetic_clips

    if checkpoint is not None:  # a loaded checkpoint: torch is here
        from ..export.inputs import data_sets_for, real_clips

        calib_set, held_out = data_sets_for(checkpoint, info.preprocessing, None)
        clips, _ = real_clips(held_out if held_out is not None else calib_set, n)
        if len(clips):
            return clips, "held-out split" if held_out is not None else "training split"
    return synthetic_clips(n, info.preprocessing), "synthetic motion clips (no data set found)"


def reference_logits(checkpoint, model_dir: Path, clips: np.ndarray) -> tuple[np.ndarray, str]:
    """Eager fp32 on the CPU (no TF32, whatever the GPU) is the reference; without the checkpoint, ONNX Runtime
    CPU fp32 stands in."""
    if checkpoint is not None:
        from ..engines.pytorch import reference_engine

        return run_batched(reference_engine(checkpoint, checkpoint.build_model()), clips), "eager fp32 (CPU)"
    plan = Plan("ort", "fp32", "cpu", model_dir / FORMATS["onnx"].file, "onnx")
    if not plan.path.is_file() or recorded_proof(plan.path) is None:
        raise BenchError(f"--model {model_dir}: the bench judges every row against the eager model, and without it "
                         f"against {plan.path.name} as report.json proves it; no checkpoint was named, and "
                         f"{plan.path.name} is {'not the proven file' if plan.path.is_file() else 'not there'}. "
                         f"Pass --checkpoint CKPT (the one it was exported from{_recorded(model_dir)}).")
    with load_plan(plan) as engine:
        why = ("no checkpoint was named: pass --checkpoint CKPT for the eager reference and the torch rows"
               if library_installed("torch") else "torch is not installed, so the checkpoint cannot run")
        return run_batched(engine, clips), f"ONNX Runtime CPU fp32 ({why})"


def _recorded(model_dir: Path) -> str:
    source = read_report(model_dir).get("source")
    return f": report.json names {source}" if source else ""
