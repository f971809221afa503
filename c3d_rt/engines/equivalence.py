"""The one set of equivalence rules: does a candidate compute what the reference (eager fp32) computes?

The exporter (before it writes a file), ``c3d-rt verify`` and ``c3d-rt bench``
(before a row's speed counts) all judge with :func:`judge`:

* fp32: every logit within ``FP32_ATOL + FP32_RTOL * |reference|`` (torchvision's and
  MMDeploy's tolerances for exported models);
* reduced precisions (fp16, bf16, int8): top-1 agrees with fp32 on at least
  ``MIN_TOP1_AGREEMENT`` of real clips, and accuracy (where labels are known) drops by at
  most ``MAX_ACCURACY_DROP``;
* any precision: every output finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.transforms import softmax

FP32_RTOL, FP32_ATOL = 1e-3, 1e-5
MIN_TOP1_AGREEMENT = 0.99
MAX_ACCURACY_DROP = 0.01  # one point of accuracy


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

    @property
    def ok(self) -> bool:
        return not self.reason


def judge(reference: np.ndarray, candidate: np.ndarray, precision: str, *, decisive: slice = slice(None),
          labels: np.ndarray | None = None, what: str = "clips") -> Agreement:
    """Compare logits ``(N, classes)``. ``decisive`` selects the rows that count for top-1 and accuracy
    (the real clips, where random ones were also compared); ``labels`` are their true classes."""
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
    result.reason = _verdict(result, reference, candidate, precision, what, len(ref_top), finite)
    return result


def _verdict(r: Agreement, reference: np.ndarray, candidate: np.ndarray, precision: str, what: str, n: int,
             finite: bool) -> str:
    if not finite:
        return "produced non-finite outputs"
    if precision == "fp32":
        excess = np.abs(candidate - reference) - (FP32_ATOL + FP32_RTOL * np.abs(reference))
        if (excess > 0).any():
            return (f"logits differ beyond rtol {FP32_RTOL:g}, atol {FP32_ATOL:g}: max abs error "
                    f"{r.max_abs_err:.3g}, max rel error {r.max_rel_err:.3g} ({int((excess > 0).sum())} values)")
        return ""
    if r.top1_agreement < MIN_TOP1_AGREEMENT:
        return (f"top-1 agrees with fp32 on {r.top1_agreement:.1%} of {n} {what}; "
                f"needs >= {MIN_TOP1_AGREEMENT:.0%}")
    if r.accuracy is not None and r.reference_accuracy - r.accuracy > MAX_ACCURACY_DROP:
        return (f"accuracy {r.accuracy:.1%} vs fp32 {r.reference_accuracy:.1%}: drops more than "
                f"{MAX_ACCURACY_DROP * 100:.0f} point")
    return ""


def run_batched(engine, clips: np.ndarray, batch: int = 8) -> np.ndarray:
    """Logits of many clips, ``batch`` at a time (bounded memory on full-size models)."""
    if not len(clips):
        return np.zeros((0, 0), np.float32)
    return np.concatenate([engine(clips[i : i + batch]) for i in range(0, len(clips), batch)])
