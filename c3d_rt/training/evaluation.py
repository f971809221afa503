"""`c3d-rt eval`: top-1, top-5 and a confusion matrix of a checkpoint on a data set's evaluation split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.config import Preprocessing
from ..data.datasets import VideoClipDataset
from ..data.splits import DataError, load_data_split
from ..model.checkpoint import CheckpointError, load_checkpoint
from .distributed import Dist, torch_device
from .loop import evaluate


def evaluate_checkpoint(ckpt_path: str | Path, data: str | Path, *, batch_size: int = 16, workers: int = 2,
                        device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Evaluate a checkpoint on the test split of ``data`` (splits/test.txt, also where a val.txt exists) with the
    checkpoint's own preprocessing."""
    ckpt = load_checkpoint(ckpt_path)
    split = load_data_split(data)
    labels = ckpt.labels or split.classes
    if ckpt.labels and ckpt.labels != split.classes:
        raise DataError(f"{data}: its classes ({len(split.classes)}: {', '.join(split.classes[:3])} ...) differ from "
                        f"the checkpoint's ({len(ckpt.labels)}: {', '.join(ckpt.labels[:3])} ...).")
    if len(labels) != ckpt.model_config.num_classes:
        raise CheckpointError(f"{ckpt_path}: the model has {ckpt.model_config.num_classes} outputs but {data} "
                              f"has {len(labels)} classes.")
    if not split.evaluation:
        raise DataError(f"{data}: the evaluation split is empty (splits/test.txt lists no readable video).")
    prep = ckpt.preprocessing or Preprocessing.for_model(ckpt.model_config)
    dev = torch_device(device, Dist())  # --device cuda without a GPU is an error, as in train
    dataset = VideoClipDataset(split.root, split.evaluation, split.classes, prep, train=False)
    model = ckpt.build_model().to(dev)
    result = evaluate(model, dataset, dev, len(labels), batch_size, workers, progress=progress)
    result.update(checkpoint=str(ckpt_path), data=str(data), labels=labels, skipped_videos=len(dataset.skipped))
    return result
