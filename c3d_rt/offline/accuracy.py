"""Video-level accuracy of `c3d-rt predict`, where the videos sit in class folders.

A prepared data set is ``DATA/<class>/<video>`` (:mod:`c3d_rt.data.splits`): a video's class is the name of the
folder it sits in. `eval` scores single clips; this scores whole videos by the mean of their windows'
probabilities, the C3D paper's video-level figure.
"""

from __future__ import annotations

from pathlib import PurePath

import numpy as np


def class_of(rel_path: str | PurePath, labels: list[str]) -> str | None:
    """The class of a video: the folder it sits in, where that folder's name is one of the model's ``labels``
    (``DATA/<class>/<video file or frame folder>``); None for a video in any other folder, or in none."""
    parent = PurePath(rel_path).parent.name
    return parent if parent in labels else None


def video_accuracy(true_labels: list[str], probs: np.ndarray, labels: list[str]) -> dict:
    """Top-1 and top-k (k = min(5, classes)) over videos, with a confusion matrix and per-class counts.

    ``probs``: ``(V, C)`` video-level probabilities, columns in ``labels`` order; ``true_labels``: each video's
    class, one of ``labels``. The confusion matrix has the truth down and the prediction (top-1) across, both
    in ``labels`` order. ``per_class`` maps each label to ``{"videos", "correct", "predicted", "top1"}``
    (``top1`` None for a class without videos).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(true_labels), len(labels)):
        raise ValueError(f"probabilities of shape ({len(true_labels)} videos, {len(labels)} classes) expected, "
                         f"got {probs.shape}")
    unknown = sorted(set(true_labels) - set(labels))
    if unknown:
        raise ValueError(f"true labels that are not the model's: {', '.join(unknown[:5])}")
    index = {label: i for i, label in enumerate(labels)}
    truth = np.array([index[t] for t in true_labels], dtype=int)
    k = min(5, len(labels))
    order = np.argsort(-probs, axis=1, kind="stable")
    predicted = order[:, 0] if len(truth) else np.zeros(0, dtype=int)
    in_top_k = (order[:, :k] == truth[:, None]).any(axis=1)
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    videos = len(truth)
    per_class = {}
    for i, label in enumerate(labels):
        count = int(confusion[i].sum())
        per_class[label] = {"videos": count, "correct": int(confusion[i, i]), "predicted": int(confusion[:, i].sum()),
                            "top1": round(float(confusion[i, i]) / count, 6) if count else None}
    return {"videos": videos, "top1": float((predicted == truth).mean()) if videos else 0.0,
            "top5": float(in_top_k.mean()) if videos else 0.0, "k": k, "labels": list(labels),
            "confusion": confusion.tolist(), "per_class": per_class}

