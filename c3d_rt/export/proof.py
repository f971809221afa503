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
from ..artifacts.info import FEATURE_LAYERS, OUTPUT_NAME
from ..core.errors import describe
from ..engines import Engine, Plan, load_plan, plans
from ..engines.equivalence import judge, judge_layer, layers_batched, run_batched
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
    top1_agreement: float | None = None  # with eager fp32, on real held-out windows (random clips if none)
    accuracy: float | None = None
    reference_accuracy: float | None = None
    checked_clips: int = 0
    seconds: float = 0.0
    reason: str = ""
    sha256: str = ""  # of the proven file (an IR's .xml and .bin): `auto` trusts the proof only for this file
    # reduced precisions: the evidence (engines.equivalence); a record without top1_lower_bound is of the old rule
    windows: int = 0  # windows that decided top-1
    near_ties: int | None = None  # of them, where fp32's top two probabilities are within NEAR_TIE_MARGIN
    near_tie_agreement: float | None = None
    decided_agreement: float | None = None  # top-1 agreement on the other (decided) windows
    top1_lower_bound: float | None = None  # its 95% Wilson lower bound: the rule wants >= MIN_TOP1_AGREEMENT
    windows_needed: int = 0  # > 0: refused for too few windows; this many decided ones would do with no flip
    insufficient_evidence: bool = False  # refused for too little evidence (too few windows, too many near-ties)
    # a features file: each layer's errors against the eager model's (engines.equivalence.LayerAgreement.record)
    layers: dict[str, dict] | None = None

EVIDENCE = ("windows", "near_ties", "near_tie_agreement", "decided_agreement", "top1_lower_bound", "windows_needed",
            "insufficient_evidence")


def compare(result: ArtifactResult, reference: Engine, candidate: Engine, inputs: CheckInputs) -> ArtifactResult:
    """Fill ``result`` with the measured errors of ``candidate`` against ``reference`` and decide: an fp32 file on
    every logit of the random clips and ``FP32_WINDOWS`` real windows, a reduced precision on every real window
    under the evidence rule (``judge(..., proof=True)``). A features file (fc6 and fc7 among the outputs its
    metadata names) is judged on each of those layers too, on the same clips (``judge_layer``)."""
    ref = inputs.reference_logits(reference, run_batched)
    rows = inputs.rows_for(result.precision)
    real = inputs.real if rows is None else inputs.real[rows]
    n_random = sum(len(x) for x in inputs.random)
    if rows is not None:
        ref = np.concatenate([ref[:n_random], ref[n_random + rows]])
    batches = inputs.random + ([real] if len(real) else [])
    # the file's own outputs (an eager candidate computes every layer, but is checked at a lowered precision)
    features = tuple(n for n in candidate.info.outputs if n in FEATURE_LAYERS) if result.precision == "fp32" else ()
    if features:  # one pass gives the logits and the layers
        got_layers = _layers(candidate, batches, (*features, OUTPUT_NAME))
        got = got_layers[OUTPUT_NAME]
    else:
        got = np.concatenate([run_batched(candidate, x) for x in batches])
    n_real = len(real)
    labels = inputs.real_labels if rows is None else inputs.real_labels[rows]
    agreement = judge(ref, got, result.precision, decisive=slice(n_random, None) if n_real else slice(None),
                      labels=labels if n_real else None, what="held-out windows" if n_real else "random clips",
                      proof=True, hint=inputs.hint() if n_real else
                      ": pass --calib DATA with held-out videos (none were found to check on)")
    for name in ("max_abs_err", "max_rel_err", "max_prob_err", "top1_agreement", "accuracy", "reference_accuracy",
                 *EVIDENCE[:-1]):
        setattr(result, name, getattr(agreement, name))
    result.insufficient_evidence = agreement.insufficient
    result.checked_clips = agreement.clips
    result.reason = agreement.reason
    result.status = "ok" if agreement.ok else "FAILED"
    if features:
        expected = _layers(reference, batches, features)
        verdicts = [judge_layer(expected[name], got_layers[name], name) for name in features]
        result.layers = {v.layer: v.record() for v in verdicts}
        if not all(v.ok for v in verdicts):
            result.status = "FAILED"
            result.reason = "; ".join([r for r in [result.reason, *(v.reason for v in verdicts)] if r])
    return result


def _layers(engine: Engine, batches: list[np.ndarray], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``engine.layers`` over every batch of clips, concatenated: name -> (N, dims)."""
    parts = [layers_batched(engine, clips, names) for clips in batches]
    return {name: np.concatenate([p[name] for p in parts]) for name in names}


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
            **{name: getattr(result, name) for name in EVIDENCE}, "date": time.strftime("%Y-%m-%d")}
