"""What an export is checked on and calibrated with: inputs the export never saw.

Random clips at batch 1 and 3 (a specialised batch axis shows), real clips from the held-out split (or
``--calib``), and int8 calibration clips. Torch-free: the bench takes its agreement clips from here too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..core.config import Preprocessing
from ..core.errors import C3DError
from ..data.datasets import VideoClipDataset
from ..data.splits import DataError, load_data_split

if TYPE_CHECKING:  # names for the type hints only: the bench runs these without torch
    from ..model.c3d import C3D
    from ..model.checkpoint import Checkpoint

RANDOM_BATCHES = (1, 3)  # batch 1 and a batch above 1: catches a specialised batch axis


class ExportError(C3DError):
    """An export that could not be written or did not prove equivalent."""


@dataclass
class CheckInputs:
    """Random clips at several batch sizes, and real clips with their labels (may be empty)."""

    random: list[np.ndarray]
    real: np.ndarray  # (N, 3, T, H, W)
    real_labels: np.ndarray  # (N,)
    real_source: str


def random_clips(shape_fn: Callable[[int], tuple], seed: int = 1234) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)  # pixel-like values: mean-subtracted 0..255
    return [rng.uniform(-100, 155, size=shape_fn(b)).astype(np.float32) for b in RANDOM_BATCHES]


def real_clips(dataset: VideoClipDataset | None, limit: int) -> tuple[np.ndarray, np.ndarray]:
    if dataset is None or len(dataset) == 0:
        return np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    step = max(1, len(dataset) // limit)
    pairs = [dataset[i] for i in range(0, len(dataset), step)][:limit]
    return np.stack([np.asarray(c) for c, _ in pairs]), np.array([y for _, y in pairs])


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


def build_check_inputs(model: C3D, calib_set, held_out, n_real: int) -> CheckInputs:
    real, labels = real_clips(held_out if held_out is not None else calib_set, n_real)
    source = "held-out split" if held_out is not None else ("calibration set" if calib_set is not None else "none")
    return CheckInputs(random_clips(model.config.input_shape), real, labels, source)


def calibration_clips(model: C3D, calib_set, n: int) -> np.ndarray:
    """Real clips for int8 calibration; without data, synthetic motion clips (with a warning)."""
    clips, _ = real_clips(calib_set, n)
    if len(clips):
        return clips
    from ..data.synth import synthetic_clips

    print("warning: no calibration data (no --calib DATA was passed, and the checkpoint's own data split is not "
          "there or has no readable video); calibrating int8 on built-in synthetic clips", file=sys.stderr)
    return synthetic_clips(n, Preprocessing.for_model(model.config))
