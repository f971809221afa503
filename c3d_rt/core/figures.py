"""The PNG figures of c3d-rt: a confusion matrix (`eval`, `predict`) and a video's class timeline (`predict`).

Torch-free; matplotlib (Agg backend, no display needed) is imported inside each function, so importing this
module costs nothing. Every figure is written atomically: a crash never leaves half a PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .fileio import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write a matplotlib figure as a PNG at ``path`` through a temporary file beside it, and close the figure."""
    plt = _pyplot()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


def save_confusion_png(confusion: list[list[int]], labels: list[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (truth down, prediction across) as a PNG."""
    plt = _pyplot()
    matrix = np.asarray(confusion, dtype=np.float64)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    size = min(4 + 0.3 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels, rotation=90, fontsize=max(4, 10 - n // 15))
    ax.set_yticks(ticks, labels, fontsize=max(4, 10 - n // 15))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


TIMELINE_SIZE = (12, 4)  # inches; at TIMELINE_DPI a 1200 x 400 pixel PNG
TIMELINE_DPI = 100


def save_timeline_png(path: str | Path, times_s: Sequence[float] | np.ndarray, probs: np.ndarray, labels: list[str],
                      segments: Sequence[tuple[str, float, float]], title: str = "", top: int = 5) -> Path:
    """A video's class probabilities over time, as a 1200 x 400 PNG.

    ``times_s``: each window's time (its centre, in seconds); ``probs``: ``(N, C)`` probabilities of those windows.
    One line for each of the ``top`` classes of highest mean probability, plus any class a segment names (so every
    shaded span has its line); ``segments`` (``(label, start_s, end_s)``) are shaded in their class's colour with
    the label written in them.
    """
    plt = _pyplot()
    times = np.asarray(times_s, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64).reshape(len(times), len(labels))
    fig, ax = plt.subplots(figsize=TIMELINE_SIZE)
    colours = _class_colours(_timeline_classes(probs, labels, segments, top))
    for index, colour in colours.items():
        ax.plot(times, probs[:, index], color=colour, linewidth=1.6, marker="." if len(times) < 60 else None,
                label=labels[index])
    for label, start, end in segments:
        colour = colours.get(labels.index(label), "grey") if label in labels else "grey"
        ax.axvspan(start, end, color=colour, alpha=0.18, linewidth=0)
        ax.text((start + end) / 2, 0.97, label, ha="center", va="top", fontsize=8, color=colour, clip_on=True,
                fontweight="bold")
    right = max([times[-1] if len(times) else 0.0] + [end for _, _, end in segments])
    ax.set_xlim(0, right if right > 0 else 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if colours:
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path, dpi=TIMELINE_DPI)


def _timeline_classes(probs: np.ndarray, labels: list[str], segments, top: int) -> list[int]:
    """The classes drawn: the ``top`` of highest mean probability, then those segments name, in order of mean."""
    mean = probs.mean(axis=0) if len(probs) else np.zeros(len(labels))
    order = [int(i) for i in np.argsort(-mean, kind="stable")]
    chosen = set(order[:max(0, top)]) | {labels.index(s[0]) for s in segments if s[0] in labels}
    return [i for i in order if i in chosen]


def _class_colours(classes: list[int]) -> dict[int, str]:
    """A colour for each drawn class: tab10's, then tab20's, in the order of ``classes``."""
    palette = [f"C{i}" for i in range(10)]
    if len(classes) > 10:
        import matplotlib

        cmap = matplotlib.colormaps["tab20"]
        palette = [matplotlib.colors.to_hex(cmap(i % 20)) for i in range(len(classes))]
    return {index: palette[n % len(palette)] for n, index in enumerate(classes)}
