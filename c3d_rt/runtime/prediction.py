"""The runtime's shared vocabulary: a published prediction, the post-processing that makes it, the latency stages.

The live runner, its sinks and ``serve`` all speak it; it imports nothing else of the runtime but the ring.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from ..core.transforms import softmax
from .ring import Window

STAGES = ("preprocess", "wait", "inference", "postprocess", "glass_to_label", "overhead")
STAGE_HELP = {
    "preprocess": "resize, crop and normalise the window's newest frame",
    "wait": "from the window being complete to the model starting on it (copying it; in serve, gathering the batch)",
    "inference": "the model itself",
    "postprocess": "softmax, smoothing, threshold, top-k",
    "glass_to_label": "from reading the newest frame to publishing its prediction",
    "overhead": "glass-to-label minus inference: what the runtime adds",
}


@dataclass
class Prediction:
    seq: int  # 0, 1, 2, ... in publishing order
    frame_index: int  # the newest frame in the window
    timestamp: float  # Unix time at which that frame was read
    frame_indices: list[int]  # the window's frames, oldest first
    topk: list[tuple[str, float]]  # this window's own probabilities
    smoothed: list[tuple[str, float]]  # moving average over the last ``smooth`` windows
    label: str | None  # smoothed top-1, or None below the threshold
    score: float  # its smoothed probability
    latency_ms: dict[str, float]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["topk"] = [{"label": lb, "prob": p} for lb, p in self.topk]
        d["smoothed"] = [{"label": lb, "prob": p} for lb, p in self.smoothed]
        return d


class PostProcessor:
    """softmax -> moving average over the last ``smooth`` windows -> threshold -> top-k."""

    def __init__(self, labels: list[str], smooth: int = 1, threshold: float = 0.0, topk: int = 5) -> None:
        self.labels, self.threshold = labels, threshold
        self.k = max(1, min(topk, len(labels)))
        self.history: deque[np.ndarray] = deque(maxlen=max(1, smooth))

    def __call__(self, logits: np.ndarray):
        probs = softmax(logits.astype(np.float64))
        self.history.append(probs)
        smoothed = np.mean(self.history, axis=0) if len(self.history) > 1 else probs
        raw_top, smooth_top = self._top(probs), self._top(smoothed)
        label, score = smooth_top[0]
        return raw_top, smooth_top, (label if score >= self.threshold else None), score

    def _top(self, probs: np.ndarray) -> list[tuple[str, float]]:
        order = np.argsort(-probs, kind="stable")[: self.k]
        return [(self.labels[i], float(probs[i])) for i in order]


def make_prediction(seq: int, window: Window, post: tuple, t0: float, t1: float, t2: float,
                    wall_offset: float) -> Prediction:
    """The published prediction of one window: ``post`` is what :class:`PostProcessor` returned, the model
    ran from ``t0`` to ``t1`` (``perf_counter``), and post-processing ended at ``t2``."""
    topk, smoothed, label, score = post
    g2l = (t2 - window.t_read_newest) * 1e3
    latency = {"preprocess": window.preprocess_ms, "wait": (t0 - window.t_ready) * 1e3,
               "inference": (t1 - t0) * 1e3, "postprocess": (t2 - t1) * 1e3, "glass_to_label": g2l,
               "overhead": g2l - (t1 - t0) * 1e3}
    return Prediction(seq, window.frame_indices[-1], wall_offset + window.t_read_newest, window.frame_indices,
                      topk, smoothed, label, score, {k: round(v, 4) for k, v in latency.items()})
