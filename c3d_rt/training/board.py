"""``train --tensorboard``: the event files, with the same figures the epoch line prints."""

from __future__ import annotations

from typing import Any

from .errors import TrainingError

TENSORBOARD = "tensorboard"  # the event files' folder inside a run folder
LR_GROUP_NAMES = ("conv1-fc7", "fc8")  # model.param_groups' order


def tensorboard_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``; a clear error naming the extra when the package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrainingError("--tensorboard needs the tensorboard package, which is not installed. Install it with "
                            "pip install 'c3d-rt[tensorboard]' (or pip install tensorboard), or train without "
                            "--tensorboard (log.jsonl in the run folder has the same figures).") from None
    return SummaryWriter


def write_epoch_scalars(board, m: dict[str, Any]) -> None:
    """Loss, accuracy, learning rate per group, clips/s and data-wait share of one epoch."""
    step = m["epoch"]
    scalars = {"loss/train": m["train_loss"], "top1/train": m["train_top1"], "speed/clips_per_s": m["clips_per_s"],
               "speed/data_wait_share": m["data_wait"]}
    scalars.update({f"{k.split('_')[1]}/val": m[k] for k in ("val_loss", "val_top1", "val_top5") if k in m})
    scalars.update({f"lr/{LR_GROUP_NAMES[i] if i < len(LR_GROUP_NAMES) else i}": lr
                    for i, lr in enumerate(m["lr_groups"])})
    for tag, value in scalars.items():
        board.add_scalar(tag, value, step)
    board.flush()
