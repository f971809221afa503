"""From the window probabilities of one recorded video to a video-level label and labelled time segments.

Pure numpy. ``probs`` are ``(N, C)`` softmax probabilities of a video's N windows, in time order. Offline the
whole video is known, so smoothing is centred (it looks ahead as well as back), unlike the live runtime's
moving average over past windows (:class:`c3d_rt.runtime.prediction.PostProcessor`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..core.errors import C3DError


class NoWindowsError(C3DError, ValueError):
    """A video-level label was asked of a video without one window (shorter than a clip)."""


def smooth(probs: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average over ``n`` windows along axis 0: window i averages windows i - (n-1)//2 .. i + n//2
    (an even ``n`` reaches one window further ahead than back). At the ends only the windows that exist are
    averaged. ``n=1`` (or fewer than 2 windows) returns ``probs`` unchanged."""
    if n < 1:
        raise ValueError(f"smooth: n must be at least 1 window, got {n}")
    probs = np.asarray(probs, dtype=np.float64)
    if n == 1 or len(probs) < 2:
        return probs
    total = np.concatenate([np.zeros((1,) + probs.shape[1:]), np.cumsum(probs, axis=0)])
    index = np.arange(len(probs))
    lo = np.maximum(index - (n - 1) // 2, 0)
    hi = np.minimum(index + n // 2 + 1, len(probs))
    return (total[hi] - total[lo]) / (hi - lo).reshape((-1,) + (1,) * (probs.ndim - 1))


def clip_indices(windows: int, clips: int) -> np.ndarray:
    """``clips`` evenly spaced indices of ``windows`` windows, first and last included (fewer where they round to
    the same window; all of them where ``clips >= windows``)."""
    if clips < 1:
        raise ValueError(f"clips must be at least 1, got {clips}")
    return np.unique(np.round(np.linspace(0, windows - 1, min(clips, windows))).astype(int))


def video_level(probs: np.ndarray, clips: int | None = None) -> np.ndarray:
    """``(C,)``: the mean of the windows' probabilities, the C3D paper's video-level protocol.

    ``clips=N`` averages only N evenly spaced windows (:func:`clip_indices`): N of the windows the run's stride
    made, not N clips placed anew, so they are evenly spaced to within one stride. ``clips=1`` is the first window.
    Raises :class:`NoWindowsError` for a video without windows: it has no video-level label.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise NoWindowsError(f"a video-level label needs at least one window's probabilities, got an array of shape "
                             f"{probs.shape}: the video is shorter than one clip. Report it as such, without a label.")
    if clips is not None:
        probs = probs[clip_indices(len(probs), clips)]
    return probs.mean(axis=0)


@dataclass
class Segment:
    """A stretch of a video labelled one class. Frames are source frame indices; ``end_frame`` is exclusive, and
    the times are the frames divided by the frame rate."""

    label: str
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    mean_score: float  # the label's smoothed probability, averaged over the segment's windows
    peak_score: float  # and its highest
    windows: int  # how many windows the segment spans (merged: the dip between its parts included)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(start_s=round(self.start_s, 3), end_s=round(self.end_s, 3),
                 mean_score=round(self.mean_score, 6), peak_score=round(self.peak_score, 6))
        return d


def window_labels(probs_smoothed: np.ndarray, threshold: float) -> np.ndarray:
    """Each window's label index: its smoothed top-1 where that probability is at least ``threshold``, else -1."""
    top = np.argmax(probs_smoothed, axis=1)
    return np.where(probs_smoothed[np.arange(len(top)), top] >= threshold, top, -1)


def find_segments(probs_smoothed: np.ndarray, first_frames: np.ndarray, last_frames: np.ndarray, fps: float,
                  labels: list[str], threshold: float, min_gap_s: float, num_frames: int) -> list[Segment]:
    """Runs of consecutive windows of the same label (:func:`window_labels`), as time segments.

    Window i covers source frames ``first_frames[i]..last_frames[i]`` (inclusive) and owns the time around its
    centre: a run of windows i..j starts halfway between the centres of windows i-1 and i (the first window: its
    own first frame) and ends halfway between the centres of j and j+1 (the last window: its last frame + 1, at
    most ``num_frames``). Where two classes follow each other, the boundary then lands within one stride of the
    true one. Two segments of the same label with no other segment between them are merged when the gap between
    them is shorter than ``min_gap_s``; the merged segment's scores are over every window it spans.

    ``fps`` is taken as given (the caller resolves a container without a frame rate, and says so); it must be
    positive. No windows: no segments.
    """
    probs_smoothed = np.asarray(probs_smoothed, dtype=np.float64)
    first, last = np.asarray(first_frames), np.asarray(last_frames)
    _check(probs_smoothed, first, last, fps, labels)
    if len(probs_smoothed) == 0:
        return []
    bounds = _boundaries(first, last, num_frames)
    runs = _runs(window_labels(probs_smoothed, threshold))
    merged: list[list[int]] = []  # [label, first window, last window]
    for label, i, j in runs:
        if merged and merged[-1][0] == label and (bounds[i] - bounds[merged[-1][2] + 1]) / fps < min_gap_s:
            merged[-1][2] = j
        else:
            merged.append([label, i, j])
    return [_segment(probs_smoothed, labels, label, i, j, bounds, fps) for label, i, j in merged]


def _check(probs: np.ndarray, first: np.ndarray, last: np.ndarray, fps: float, labels: list[str]) -> None:
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(f"probabilities of shape (windows, {len(labels)} classes) expected, got {probs.shape}")
    if not (len(first) == len(last) == len(probs)):
        raise ValueError(f"one first and last frame per window expected: {len(probs)} windows, {len(first)} first "
                         f"and {len(last)} last frames")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps} (resolve a container without a frame rate first)")


def _boundaries(first: np.ndarray, last: np.ndarray, num_frames: int) -> list[int]:
    """N + 1 frame boundaries: window i owns frames bounds[i]..bounds[i+1] (exclusive)."""
    centres = (first + last + 1) / 2
    inner = [math.floor((centres[i - 1] + centres[i]) / 2 + 0.5) for i in range(1, len(centres))]
    end = int(last[-1]) + 1
    return [int(first[0])] + inner + [min(end, num_frames) if num_frames > 0 else end]


def _runs(window_label: np.ndarray) -> list[tuple[int, int, int]]:
    """(label, first window, last window) of every run of one label; unlabelled (-1) windows make none."""
    runs, start = [], 0
    for i in range(1, len(window_label) + 1):
        if i == len(window_label) or window_label[i] != window_label[start]:
            if window_label[start] >= 0:
                runs.append((int(window_label[start]), start, i - 1))
            start = i
    return runs


def _segment(probs: np.ndarray, labels: list[str], label: int, i: int, j: int, bounds: list[int],
             fps: float) -> Segment:
    scores = probs[i:j + 1, label]
    start, end = bounds[i], bounds[j + 1]
    return Segment(labels[label], start, end, start / fps, end / fps, float(scores.mean()), float(scores.max()),
                   j - i + 1)
