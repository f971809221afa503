"""What an export is checked on and calibrated with: inputs the export never saw.

Random clips at batch 1 and 3 (a specialised batch axis shows), real windows from the held-out split (or
``--calib``): every 16-frame window at ``WINDOW_STRIDE`` over each video, as the live runtime feeds them
(consecutive frames at the model's frame_interval), up to ``--check-clips``; and int8 calibration clips.
Torch-free: the bench takes its agreement clips from here too.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..core.config import Preprocessing
from ..core.errors import C3DError
from ..core.transforms import preprocess_clip
from ..data.datasets import VideoClipDataset
from ..data.framecache import load_frames
from ..data.splits import DataError, load_data_split
from ..data.video import VideoReadError, decode_all_frames

if TYPE_CHECKING:  # names for the type hints only: the bench runs these without torch
    from ..model.c3d import C3D
    from ..model.checkpoint import Checkpoint

RANDOM_BATCHES = (1, 3)  # batch 1 and a batch above 1: catches a specialised batch axis
WINDOW_STRIDE = 8  # frames (sampled ones) between the starts of two checked windows of one video
CHECK_WINDOWS = 500  # --check-clips' default: 381 decided windows clear 99% at 95% with no flip, near-ties aside
FP32_WINDOWS = 100  # an fp32 file is judged on every logit (not on a rate): this many windows are plenty


class ExportError(C3DError):
    """An export that could not be written or did not prove equivalent."""


@dataclass
class CheckInputs:
    """Random clips at several batch sizes, and real clips with their labels (may be empty)."""

    random: list[np.ndarray]
    real: np.ndarray  # (N, 3, T, H, W)
    real_labels: np.ndarray  # (N,)
    real_source: str
    available: int = 0  # windows the held-out videos give at WINDOW_STRIDE (``real`` holds up to the cap of them)
    videos: int = 0  # held-out videos they come from
    limit: int = 0  # the cap (--check-clips)
    _reference: tuple = field(default=(None, None), repr=False)  # (engine, its logits on every input): run once

    def rows_for(self, precision: str) -> np.ndarray | None:
        """Which real windows judge ``precision``: all for a reduced one, an even subset for fp32 (None: all)."""
        if precision != "fp32" or len(self.real) <= FP32_WINDOWS:
            return None
        return np.unique(np.linspace(0, len(self.real) - 1, FP32_WINDOWS).round().astype(int))

    def reference_logits(self, reference: Callable[[np.ndarray], np.ndarray], run: Callable) -> np.ndarray:
        """The reference's logits on the random clips then every real window, computed once per reference."""
        if self._reference[0] is not reference:
            batches = self.random + ([self.real] if len(self.real) else [])
            self._reference = (reference, np.concatenate([run(reference, x) for x in batches]))
        return self._reference[1]

    def hint(self) -> str:
        """How to get more windows, for a proof refused for too little evidence."""
        capped = f"raise --check-clips (now {self.limit}; they give {self.available}), or " \
            if self.available > len(self.real) else ""
        return (f" ({len(self.real)} windows of 16 frames at stride {WINDOW_STRIDE} over {self.videos} videos of the "
                f"{self.real_source}): {capped}pass --calib DATA with more or longer held-out videos")


def random_clips(shape_fn: Callable[[int], tuple], seed: int = 1234) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)  # pixel-like values: mean-subtracted 0..255
    return [rng.uniform(-100, 155, size=shape_fn(b)).astype(np.float32) for b in RANDOM_BATCHES]


def real_clips(dataset: VideoClipDataset | None, limit: int) -> tuple[np.ndarray, np.ndarray]:
    if dataset is None or len(dataset) == 0:
        return np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    step = max(1, len(dataset) // limit)
    pairs = [dataset[i] for i in range(0, len(dataset), step)][:limit]
    return np.stack([np.asarray(c) for c, _ in pairs]), np.array([y for _, y in pairs])


def check_windows(dataset: VideoClipDataset | None, limit: int,
                  stride: int = WINDOW_STRIDE) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(clips, labels, windows available, videos used): every window at ``stride`` over the data set's videos,
    ``limit`` of them evenly spread over all when there are more. Frames come from the frame cache where it holds
    the video, else they are decoded (decoding stops at the last frame a chosen window needs)."""
    if dataset is None or limit <= 0:
        return np.zeros((0,), np.float32), np.zeros((0,), np.int64), 0, 0
    prep = dataset.prep
    every = [(v, s) for v, (_, n, _) in enumerate(dataset.items) for s in prep.window_starts(n, stride)]
    chosen = every if len(every) <= limit else \
        [every[i] for i in np.unique(np.linspace(0, len(every) - 1, limit).round().astype(int))]
    clips, labels, videos = [], [], set()
    for v in sorted({v for v, _ in chosen}):
        rel, _, label = dataset.items[v]
        starts = [s for w, s in chosen if w == v]
        last = starts[-1] + prep.window_span
        try:
            entry = dataset.cached.get(rel)
            frames = load_frames(entry) if entry is not None else decode_all_frames(dataset.root / rel, last, prep)
        except VideoReadError as exc:
            warnings.warn(f"skipping {dataset.root / rel} in the check: {exc}", stacklevel=2)
            continue
        for s in starts:
            indices = list(range(s, s + prep.clip_len * prep.frame_interval, prep.frame_interval))
            if indices[-1] < len(frames):  # a truncated video gives fewer windows than its header promised
                clips.append(preprocess_clip(np.asarray(frames[indices]), prep))
                labels.append(label)
                videos.add(v)
    if not clips:
        return np.zeros((0,), np.float32), np.zeros((0,), np.int64), len(every), 0
    return np.stack(clips), np.array(labels), len(every), len(videos)


def data_sets_for(ckpt: Checkpoint, prep: Preprocessing, calib: str | Path | None):
    """(calibration set, held-out set) from --calib, else from the checkpoint's own split.

    A --calib folder that cannot serve (missing, classes that do not fit the model, no readable
    video) is an error; the checkpoint's own split, when gone, just means no real clips.
    """
    split_info = ckpt.extra.get("split")
    if calib:
        split = load_data_split(calib)
        check_classes_fit(ckpt, split.classes, f"--calib {calib}")
        root, train, val, classes = split.root, split.train, split.val, split.classes
    elif split_info and Path(split_info["root"]).is_dir():
        root, train, val, classes = Path(split_info["root"]), split_info["train"], split_info["val"], split_info["classes"]
    else:
        return None, None
    try:
        calib_set = VideoClipDataset(root, train or val, classes, prep, train=False)
        held_out = VideoClipDataset(root, val, classes, prep, train=False) if val else None
    except DataError as exc:
        if calib:
            raise ExportError(f"--calib {calib}: {exc} Pass a data folder whose videos OpenCV can read, or leave "
                              "--calib out to use the checkpoint's own split.") from None
        return None, None
    return calib_set, held_out


def check_classes_fit(ckpt: Checkpoint, classes: list[str], what: str) -> None:
    """The data's classes must be the model's outputs, in order (as `c3d-rt eval` requires)."""
    n = ckpt.model_config.num_classes
    if len(classes) != n or (ckpt.labels and ckpt.labels != classes):
        theirs = f" ({', '.join(ckpt.labels[:3])} ...)" if ckpt.labels else ""
        raise ExportError(f"{what}: has {len(classes)} classes ({', '.join(classes[:3])} ...); the model "
                          f"{ckpt.path.name} has {n} outputs{theirs}. Pass the data folder the model was trained on.")


def build_check_inputs(model: C3D, calib_set, held_out, n_real: int = CHECK_WINDOWS) -> CheckInputs:
    """Random clips, and up to ``n_real`` windows of the held-out videos (the calibration set's without them)."""
    real, labels, available, videos = check_windows(held_out if held_out is not None else calib_set, n_real)
    source = "held-out split" if held_out is not None else ("calibration set" if calib_set is not None else "none")
    return CheckInputs(random_clips(model.config.input_shape), real, labels, source, available, videos, n_real)


def calibration_clips(model: C3D, calib_set, n: int) -> np.ndarray:
    """Real clips for int8 calibration; without data, synthetic motion clips (with a warning)."""
    clips, _ = real_clips(calib_set, n)
    if len(clips):
        return clips
    from ..data.synth import synthetic_clips

    print("warning: no calibration data (no --calib DATA was passed, and the checkpoint's own data split is not "
          "there or has no readable video); calibrating int8 on built-in synthetic clips", file=sys.stderr)
    return synthetic_clips(n, Preprocessing.for_model(model.config))
