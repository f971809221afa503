"""The proof: an artifact against the eager model, on inputs the export never saw, under the shared rules.

The rules themselves are :mod:`c3d_rt.engines.equivalence`; what passes is recorded by :mod:`.report`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..artifacts.formats import artifact_sha256
from ..core.errors import describe
from ..engines import Engine, Plan, load_plan, plans
from ..engines.equivalence import judge, run_batched
from ..engines.resolve import availability, proof_plan
from .inputs import CheckInputs


def proof_engine(path: Path, fmt: str) -> Engine:
    """The engine that proves a format: the registry's first CPU engine for it, at the format's precision."""
    return load_plan(proof_plan(path, fmt))


@dataclass
class ArtifactResult:
    format: str
    file: str
    precision: str
    status: str = "pending"  # ok, FAILED
    size_mb: float = 0.0
    max_abs_err: float | None = None  # on logits
    max_rel_err: float | None = None
    max_prob_err: float | None = None
    top1_agreement: float | None = None  # with eager fp32, on real held-out clips (random if none)
    accuracy: float | None = None
    reference_accuracy: float | None = None
    checked_clips: int = 0
    seconds: float = 0.0
    reason: str = ""
    sha256: str = ""  # of the proven file (an IR's .xml and .bin): `auto` trusts the proof only for this file


def compare(result: ArtifactResult, reference: Engine, candidate: Engine, inputs: CheckInputs) -> ArtifactResult:
    """Fill ``result`` with the measured errors of ``candidate`` against ``reference`` and decide."""
    batches = inputs.random + ([inputs.real] if len(inputs.real) else [])
    ref = np.concatenate([run_batched(reference, x) for x in batches])
    got = np.concatenate([run_batched(candidate, x) for x in batches])
    n_real = len(inputs.real)
    agreement = judge(ref, got, result.precision, decisive=slice(len(ref) - n_real, None) if n_real else slice(None),
                      labels=inputs.real_labels if n_real else None,
                      what="held-out real clips" if n_real else "random clips")
    for name in ("max_abs_err", "max_rel_err", "max_prob_err", "top1_agreement", "accuracy", "reference_accuracy"):
        setattr(result, name, getattr(agreement, name))
    result.checked_clips = agreement.clips
    result.reason = agreement.reason
    result.status = "ok" if agreement.ok else "FAILED"
    return result


def prove_lowered_plans(out_dir: Path, checkpoint: Path, reference: Engine, inputs: CheckInputs, earlier: dict,
                        log: Callable[[str], None]) -> list[dict]:
    """Prove, on this machine, each precision that a runtime lowers an exported file to by itself (OpenVINO
    bf16, TensorRT fp16, torch autocast), so that `--engine auto` may choose it; keep earlier proofs whose
    file is unchanged."""
    proofs = {p["plan"]: p for p in earlier.get("proofs", []) if isinstance(p, dict) and "plan" in p}
    for plan in plans(out_dir, checkpoint=checkpoint):
        if not plan.lowered or availability(plan):
            continue
        proofs[plan.key] = prove_plan(plan, reference, inputs)
        log(f"  {plan.key:<21} {proofs[plan.key]['status']:<6} {proofs[plan.key]['reason']}")
    return [p for p in proofs.values() if (out_dir / p.get("file", "")).is_file() or p["plan"].startswith("torch/")]


def prove_plan(plan: Plan, reference: Engine, inputs: CheckInputs) -> dict:
    """Check one engine x precision x device on one file with the shared rules; the record report.json keeps."""
    result = ArtifactResult(plan.fmt, str(plan.path), plan.precision)
    try:
        with load_plan(plan) as candidate:
            compare(result, reference, candidate, inputs)
    except Exception as exc:  # a runtime that breaks is a failed proof, not a failed export
        result.status, result.reason = "FAILED", describe(exc)
    result.sha256 = artifact_sha256(plan.path)
    return proof_record(plan, result)


def proof_record(plan: Plan, result: ArtifactResult) -> dict:
    """What report.json keeps of the check of a lowered precision."""
    return {"plan": plan.key, "file": plan.path.name, "sha256": result.sha256, "status": result.status,
            "top1_agreement": result.top1_agreement, "max_abs_err": result.max_abs_err, "reason": result.reason,
            "date": time.strftime("%Y-%m-%d")}
