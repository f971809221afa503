"""The one set of equivalence rules: does a candidate compute what the reference (eager fp32) computes?

The exporter (before it writes a file), ``c3d-rt verify`` and ``c3d-rt bench``
(before a row's speed counts) all judge with :func:`judge`:

* fp32: every logit within ``FP32_ATOL + FP32_RTOL * |reference|`` (torchvision's and
  MMDeploy's tolerances for exported models);
* reduced precisions (fp16, bf16, int8): top-1 agrees with fp32 on at least
  ``MIN_TOP1_AGREEMENT`` of real clips, and accuracy (where labels are known) drops by at
  most ``MAX_ACCURACY_DROP``;
* any precision: every output finite;
* fc6 and fc7 of a features file: the row-scale rule below.

A proof of a reduced precision (``judge(..., proof=True)``: the exporter, ``c3d-rt verify``, the
checks `auto` trusts) asks for evidence, not a point estimate: 36 clips cannot see a 5% flip rate
(one flip is already 97%). It is judged on many windows (every 16-frame window at a stride over the
held-out videos) and split in two by how decided fp32 itself is on each window:

* near-ties: fp32's top two probabilities within ``NEAR_TIE_MARGIN`` (0.1). There a flip is the
  model being undecided, not the lowered precision being wrong: int8's probability errors on C3D
  reach a few hundredths, and a live smoother does not hold such a window anyway. Their agreement
  is reported, not judged, but they may be at most ``MAX_NEAR_TIE_SHARE`` (20%) of the windows: a
  model undecided on more says too little for its agreement to prove anything;
* the rest (decided windows): the 95% Wilson lower confidence bound on their top-1 agreement must
  be at least ``MIN_TOP1_AGREEMENT`` (99%). Even with no flip that takes ``windows_needed()`` (381)
  decided windows; fewer is refused with that number.

Feature layers (fc6, fc7 after ReLU, of an fp32 features file: :func:`judge_layer`): every value within
``FP32_ATOL + FP32_RTOL * max|reference row|``, the fp32 rule with the row's scale in place of each value's.
A per-value rtol is meaningless there: half of each row is ReLU's zeros and many values are just above, where
a sum of thousands of products that nearly cancel keeps its absolute float error, not a relative one. Measured
through ``Engine.layers`` on c3d.features.onnx of a full-size random-weight C3D (``build_c3d(num_classes=101)``,
seeds 0 and 1; the proof's 4 random clips at batch 1 and 3, and 4 synthetic motion clips through the real
preprocessing), CPU fp32 against eager torch:

* the plain fp32 rule fails on 2-4 of 16,384 values a layer for ONNX Runtime and 6-15 for OpenVINO: values
  of 0.004-0.2 (rows reach 100-600) off by 5e-5 to 6e-4;
* the row rule holds with room: max|d| 5.5e-4 (ORT) and 1.8e-3 (OpenVINO) on fc6, whose values reach 591, is
  at most 0.0011 (ORT) and 0.0031 (OpenVINO) of the tolerance (``tolerance_used``); 1 - the lowest cosine
  similarity of a row is 4e-13 (ORT) and 3e-12 (OpenVINO); no candidate value is negative (ReLU is in the graph);
* the tiny model of the tests (crop 32, width 1/16, BatchNorm) holds the plain rule too (max|d| 7.6e-6 on values
  up to 6.5; at most 0.0012 of the tolerance).

The lowest cosine similarity of a row is reported beside the verdict, not judged: the value rule implies it.
(The same runs put 1 of 404 logits of the full-size model outside the plain fp32 rule in 3 of the 4
engine x seed runs: a logit near zero; ``c3d-rt export`` of seed 0 refuses c3d.onnx for it.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.transforms import softmax

FP32_RTOL, FP32_ATOL = 1e-3, 1e-5
MIN_TOP1_AGREEMENT = 0.99
MAX_ACCURACY_DROP = 0.01  # one point of accuracy
CONFIDENCE_Z = 1.959964  # two-sided 95%: the Wilson bound a proof of a reduced precision is judged by
NEAR_TIE_MARGIN = 0.1  # fp32 top-1 minus top-2 probability below this: a near-tie (reported, not judged)
MAX_NEAR_TIE_SHARE = 0.2  # at most this share of a proof's windows may be near-ties


def wilson_lower_bound(successes: int, n: int, z: float = CONFIDENCE_Z) -> float:
    """The Wilson score interval's lower end for ``successes`` of ``n`` (0 for n = 0): the agreement rate
    that ``n`` trials support with 95% confidence (z = 1.96). 100 of 100 -> 0.963; 380 of 380 -> 0.990."""
    if n <= 0:
        return 0.0
    p, z2 = successes / n, z * z
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (p + z2 / (2 * n) - spread) / (1 + z2 / n))


def windows_needed(flips: int = 0, rule: float = MIN_TOP1_AGREEMENT, z: float = CONFIDENCE_Z,
                   limit: int = 10**7) -> int | None:
    """The fewest windows on which ``flips`` flips (and no more) still clear ``rule`` at 95% confidence
    (no flip: 381 for 99%); None beyond ``limit``."""
    def ok(n: int) -> bool:
        return wilson_lower_bound(n - flips, n, z) >= rule

    high = max(1, flips)
    while not ok(high):
        if high > limit:
            return None
        high *= 2
    low = high // 2
    while high - low > 1:  # ok(high), not ok(low) (or low below flips)
        mid = (low + high) // 2
        low, high = (low, mid) if ok(mid) else (mid, high)
    return high


def near_ties(reference: np.ndarray) -> np.ndarray:
    """Rows where fp32's top two probabilities are within ``NEAR_TIE_MARGIN`` (a bool mask)."""
    if reference.shape[-1] < 2:
        return np.zeros(len(reference), bool)
    top2 = np.sort(softmax(reference), axis=-1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) < NEAR_TIE_MARGIN


@dataclass
class Agreement:
    """Measured differences of a candidate's logits from the reference's, and the verdict."""

    max_abs_err: float  # on logits
    max_rel_err: float
    max_prob_err: float
    top1_agreement: float  # on the clips that decide (real ones where there are any)
    clips: int
    accuracy: float | None = None
    reference_accuracy: float | None = None
    reason: str = ""  # empty: equivalent
    # the evidence of a proof (judge(..., proof=True)) of a reduced precision, over the decisive rows
    windows: int = 0  # decisive rows (real windows where there are any)
    near_ties: int = 0
    near_tie_agreement: float | None = None
    decided_agreement: float | None = None  # top-1 agreement on the rest, the decided windows
    top1_lower_bound: float | None = None  # its 95% Wilson lower bound: what the rule judges
    windows_needed: int = 0  # > 0: too few decided windows to clear the rule even with no flip
    insufficient: bool = False  # refused for too little evidence (too few windows, too many near-ties)

    @property
    def ok(self) -> bool:
        return not self.reason


def judge(reference: np.ndarray, candidate: np.ndarray, precision: str, *, decisive: slice = slice(None),
          labels: np.ndarray | None = None, what: str = "clips", proof: bool = False, hint: str = "") -> Agreement:
    """Compare logits ``(N, classes)``. ``decisive`` selects the rows that count for top-1 and accuracy
    (the real clips, where random ones were also compared); ``labels`` are their true classes.

    ``proof``: a reduced precision must clear the evidence rule (module docstring) rather than the point
    estimate; ``hint`` (how to get more windows) ends a refusal for too little evidence."""
    diff = np.abs(candidate - reference)
    finite = bool(np.isfinite(candidate).all())
    ref_top, got_top = reference[decisive].argmax(1), candidate[decisive].argmax(1)
    result = Agreement(
        max_abs_err=float(diff.max()) if finite else float("inf"),
        max_rel_err=float((diff / np.maximum(np.abs(reference), 1e-6)).max()) if finite else float("inf"),
        max_prob_err=float(np.abs(softmax(candidate) - softmax(reference)).max()) if finite else float("inf"),
        top1_agreement=float((ref_top == got_top).mean()),
        clips=len(reference))
    if labels is not None and len(labels):
        result.reference_accuracy = float((ref_top == labels).mean())
        result.accuracy = float((got_top == labels).mean())
    if precision != "fp32":
        _split_near_ties(result, reference[decisive], ref_top == got_top)
    result.reason = _verdict(result, reference, candidate, precision, what, len(ref_top), finite, proof, hint)
    return result


def _split_near_ties(r: Agreement, reference: np.ndarray, agree: np.ndarray) -> None:
    """Agreement on near-ties and on the decided rest, with the rest's 95% Wilson lower bound."""
    tie = near_ties(reference)
    decided = agree[~tie]
    r.windows, r.near_ties = len(agree), int(tie.sum())
    r.near_tie_agreement = float(agree[tie].mean()) if tie.any() else None
    r.decided_agreement = float(decided.mean()) if len(decided) else None
    r.top1_lower_bound = wilson_lower_bound(int(decided.sum()), len(decided))


def _evidence_verdict(r: Agreement, precision: str, what: str, hint: str) -> str:
    """The proof of a reduced precision: few enough near-ties, and the decided windows' bound clears the rule."""
    decided = r.windows - r.near_ties
    if decided < windows_needed(0):
        r.windows_needed = windows_needed(0)
    if r.windows and r.near_ties > MAX_NEAR_TIE_SHARE * r.windows:
        r.insufficient = True
        more = f", and at least {r.windows_needed} decided {what} are needed" if r.windows_needed else ""
        return (f"{r.near_ties} of {r.windows} {what} ({r.near_ties / r.windows:.0%}) are near-ties (fp32's top two "
                f"probabilities within {NEAR_TIE_MARGIN:g}), more than {MAX_NEAR_TIE_SHARE:.0%}: the model is "
                f"undecided on too many for top-1 agreement to prove {precision} (train it further, or check it on "
                f"videos of what it recognises){more}{hint}")
    flips = decided - round((r.decided_agreement or 0.0) * decided)
    if flips == 0 and r.top1_lower_bound < MIN_TOP1_AGREEMENT:
        r.insufficient = True
        return (f"too few {what} to prove {precision}: {decided} decided ({r.near_ties} near-ties set aside), and even "
                f"with no flip the 95% lower bound on top-1 agreement is {r.top1_lower_bound:.1%}, below "
                f"{MIN_TOP1_AGREEMENT:.0%}; needs at least {r.windows_needed} decided {what}{hint}")
    r.windows_needed = 0  # enough windows: what decides now is the flips
    if r.top1_lower_bound < MIN_TOP1_AGREEMENT:
        more = windows_needed(flips)
        return (f"top-1 agrees with fp32 on {decided - flips} of {decided} decided {what} ({r.decided_agreement:.1%}, "
                f"95% lower bound {r.top1_lower_bound:.1%}; {r.near_ties} near-ties set aside); needs a lower bound "
                f">= {MIN_TOP1_AGREEMENT:.0%}" + (f" (with {flips} flips that takes {more} decided {what} and no "
                                                  "further flip)" if more else ""))
    return ""


def _verdict(r: Agreement, reference: np.ndarray, candidate: np.ndarray, precision: str, what: str, n: int,
             finite: bool, proof: bool = False, hint: str = "") -> str:
    if not finite:
        return "produced non-finite outputs"
    if precision == "fp32":
        excess = np.abs(candidate - reference) - (FP32_ATOL + FP32_RTOL * np.abs(reference))
        if (excess > 0).any():
            return (f"logits differ beyond rtol {FP32_RTOL:g}, atol {FP32_ATOL:g}: max abs error "
                    f"{r.max_abs_err:.3g}, max rel error {r.max_rel_err:.3g} ({int((excess > 0).sum())} values)")
        return ""
    if proof:  # the evidence rule replaces the point estimate
        evidence = _evidence_verdict(r, precision, what, hint)
        if evidence:
            return evidence
    elif r.top1_agreement < MIN_TOP1_AGREEMENT:
        return (f"top-1 agrees with fp32 on {r.top1_agreement:.1%} of {n} {what}; "
                f"needs >= {MIN_TOP1_AGREEMENT:.0%}")
    if r.accuracy is not None and r.reference_accuracy - r.accuracy > MAX_ACCURACY_DROP:
        return (f"accuracy {r.accuracy:.1%} vs fp32 {r.reference_accuracy:.1%}: drops more than "
                f"{MAX_ACCURACY_DROP * 100:.0f} point")
    return ""


@dataclass
class LayerAgreement:
    """Measured differences of a candidate's feature layer (fc6, fc7) from the reference's, and the verdict."""

    layer: str
    max_abs_err: float
    tolerance_used: float  # max of |candidate - reference| / (FP32_ATOL + FP32_RTOL * max|reference row|): <= 1 passes
    min_cosine: float  # the lowest cosine similarity of a row (reported, not judged)
    values: int
    reason: str = ""  # empty: equivalent

    @property
    def ok(self) -> bool:
        return not self.reason

    def record(self) -> dict:
        """What report.json keeps of it (``ArtifactResult.layers[layer]``)."""
        return {"max_abs_err": self.max_abs_err, "tolerance_used": self.tolerance_used,
                "min_cosine": self.min_cosine, "values": self.values, "status": "ok" if self.ok else "FAILED",
                "reason": self.reason}


def judge_layer(reference: np.ndarray, candidate: np.ndarray, layer: str) -> LayerAgreement:
    """Compare one fp32 feature layer ``(N, dims)``: every value within ``FP32_ATOL + FP32_RTOL * max|reference
    row|`` (module docstring: why the row's scale, and what was measured)."""
    if candidate.shape != reference.shape:
        return LayerAgreement(layer, float("inf"), float("inf"), -1.0, reference.size,
                              f"{layer} has shape {candidate.shape}, the reference {reference.shape}")
    if not np.isfinite(candidate).all():
        return LayerAgreement(layer, float("inf"), float("inf"), -1.0, reference.size,
                              f"{layer} has non-finite values")
    ref, got = reference.astype(np.float64), candidate.astype(np.float64)
    diff = np.abs(got - ref)
    scale = np.abs(ref).max(axis=1, keepdims=True, initial=0.0)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    both_zero = ~ref.any(axis=1) & ~got.any(axis=1)  # a row that ReLU zeroed whole, in both
    cosine = np.where(both_zero, 1.0, (ref * got).sum(1) / np.maximum(norms, 1e-300))
    used = diff / (FP32_ATOL + FP32_RTOL * scale)
    result = LayerAgreement(layer, float(diff.max(initial=0.0)), float(used.max(initial=0.0)),
                            float(cosine.min(initial=1.0)), int(reference.size))
    outside = int((used > 1).sum())
    if outside:
        result.reason = (f"{layer} differs beyond atol {FP32_ATOL:g} + rtol {FP32_RTOL:g} x max|row|: {outside} of "
                         f"{result.values} values, max abs error {result.max_abs_err:.3g} "
                         f"({result.tolerance_used:.3g} x the tolerance), min cosine {result.min_cosine:.6f}")
    return result


def run_batched(engine, clips: np.ndarray, batch: int = 8) -> np.ndarray:
    """Logits of many clips, ``batch`` at a time (bounded memory on full-size models)."""
    if not len(clips):
        return np.zeros((0, 0), np.float32)
    return np.concatenate([engine(clips[i : i + batch]) for i in range(0, len(clips), batch)])


def layers_batched(engine, clips: np.ndarray, names: tuple[str, ...], batch: int = 8) -> dict[str, np.ndarray]:
    """``engine.layers`` of many clips, ``batch`` at a time: name -> (N, dims)."""
    parts = [engine.layers(clips[i : i + batch], names) for i in range(0, len(clips), batch)]
    return {name: np.concatenate([p[name] for p in parts]) for name in names}
