"""The training step and its parts: one epoch, evaluation, the optimiser and learning-rate schedule, mixed
precision, and the weight average."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ..core.config import TrainConfig
from ..core.console import bar_disabled
from ..data.datasets import VideoClipDataset
from ..model.c3d import C3D, param_groups
from .distributed import Dist
from .errors import TrainingError


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top.eq(target[:, None])
    return [int(hits[:, :k].any(dim=1).sum()) for k in ks]


AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(cfg: TrainConfig, device: torch.device, say: Callable[[str], None] = lambda _m: None):
    """The autocast dtype of a run (None: fp32). ``auto``: bf16 on a GPU that has it, else fp16 (with a gradient
    scaler); on a CPU bf16 only where it is native (AVX-512 BF16 or AMX): emulated, it is slower than fp32."""
    from ..core.machine import cpu_has_bf16

    precision = cfg.precision if cfg.amp else "fp32"
    if precision not in ("auto", *AUTOCAST_DTYPES):
        raise TrainingError(f"unknown precision {precision!r}; expected auto, fp32, bf16 or fp16")
    if device.type == "cuda":
        if precision == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return AUTOCAST_DTYPES[precision]
    if precision == "fp16":
        raise TrainingError("--precision fp16 trains on a GPU only (CPUs have no fast fp16 training). Use --precision "
                            "bf16 on a CPU with AVX-512 BF16 or AMX, or fp32.")
    if precision == "auto":
        if cpu_has_bf16():
            say("precision: bf16 autocast (this CPU has native bf16: AVX-512 BF16 or AMX)")
            return torch.bfloat16
        say("precision: fp32 (bf16 autocast skipped: this CPU has no native bf16, AVX-512 BF16 or AMX, and emulated "
            "bf16 trains slower than fp32)")
        return None
    if precision == "bf16" and not cpu_has_bf16():
        say("warning: --precision bf16 on a CPU without native bf16 (AVX-512 BF16 or AMX): it is emulated and "
            "measured slower than fp32 here (benchmarks/results/train-speed-*.md)")
    return AUTOCAST_DTYPES[precision]


def network_input(clips: torch.Tensor, mean_bgr: tuple[float, float, float] | None) -> torch.Tensor:
    """A batch from the loader as the network takes it: uint8 clips (``crop_clip``) get the mean subtracted here,
    on the device, exactly as ``preprocess_clip`` does (float32 minus float32 of small integers: exact)."""
    if clips.dtype != torch.uint8:
        return clips
    if mean_bgr is None:
        raise TrainingError("uint8 clips need the preprocessing's mean_bgr")
    mean = torch.tensor(mean_bgr, dtype=torch.float32, device=clips.device).view(1, 3, 1, 1, 1)
    return clips.float().sub_(mean)


def train_one_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, device: torch.device, cfg: TrainConfig,
                    step_lr: Callable[[float], None], progress: bool, desc: str,
                    dtype: torch.dtype | None = None, on_step: Callable[[int, float], None] | None = None,
                    mean_bgr: tuple[float, float, float] | None = None) -> dict[str, float]:
    """One pass over ``loader``. Besides loss and top-1 it measures clips/s and ``data_wait``: the share of the
    epoch spent waiting for the next batch (the input pipeline's cost; ``loss.item()`` syncs a GPU each step,
    so the rest is compute)."""
    model.train()
    loss_sum, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    waited, ready = 0.0, start
    memory_format = torch.channels_last_3d if cfg.channels_last else torch.contiguous_format
    bar = tqdm(loader, desc=desc, unit="batch", disable=bar_disabled(progress), leave=False)
    for i, (clips, labels) in enumerate(bar):
        waited += time.perf_counter() - ready
        step_lr(i / max(1, len(loader)))
        clips = network_input(clips.to(device, non_blocking=True), mean_bgr).contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = model(clips)
            loss = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the training loss became {loss.item()} at batch {i} of {desc}. Nothing of this epoch was saved; "
                "the last good checkpoint is kept. Lower --lr, or use --recipe scratch when not fine-tuning."
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        step_loss = loss.item()
        loss_sum += step_loss * len(labels)
        correct += topk_correct(logits.detach(), labels, (1,))[0]
        seen += len(labels)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", top1=f"{correct / seen:.3f}")
        if on_step is not None:
            on_step(i, step_loss)
        ready = time.perf_counter()
    elapsed = time.perf_counter() - start
    return {"train_loss": loss_sum / max(seen, 1), "train_top1": correct / max(seen, 1),
            "clips_per_s": seen / elapsed if elapsed > 0 else 0.0, "data_wait": waited / elapsed if elapsed > 0 else 0.0}


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: VideoClipDataset, device: torch.device, num_classes: int,
             batch_size: int = 16, workers: int = 0, ddp: Dist = Dist(), progress: bool = False) -> dict[str, Any]:
    """Loss, top-1, top-5 and confusion matrix (rows: truth, columns: prediction) of a data set.

    Under DDP each rank takes every world-th clip and the sums are all-reduced.
    """
    model.eval()
    shard = Subset(dataset, list(range(ddp.rank, len(dataset), ddp.world)))
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, count
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    for clips, labels in tqdm(loader, desc="eval", unit="batch", disable=bar_disabled(progress), leave=False):
        clips, labels = clips.to(device), labels.to(device)
        logits = model(clips).float()
        top1, top5 = topk_correct(logits, labels)
        sums += torch.tensor([F.cross_entropy(logits, labels, reduction="sum").item(), top1, top5, len(labels)],
                             dtype=torch.float64, device=device)
        confusion.index_put_((labels, logits.argmax(1)), torch.ones_like(labels), accumulate=True)
    if ddp.enabled:
        dist.all_reduce(sums)
        dist.all_reduce(confusion)
    n = max(sums[3].item(), 1)
    return {"val_loss": sums[0].item() / n, "val_top1": sums[1].item() / n, "val_top5": sums[2].item() / n,
            "val_clips": int(sums[3].item()), "confusion": confusion.cpu().tolist()}


def make_optimizer(model: C3D, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.lr, cfg.fc8_lr_mult)
    for g in groups:
        g["initial_lr"] = g["lr"]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise TrainingError(f"unknown optimizer {cfg.optimizer!r}; expected sgd or adamw")


def warmup_span(cfg: TrainConfig) -> float:
    """The learning-rate warm-up in epochs: ``warmup_epochs`` or ``warmup_fraction`` of the run, the longer, so a
    recipe's warm-up is the same share of a 20-epoch run as of a 60-epoch one."""
    return max(float(cfg.warmup_epochs), cfg.warmup_fraction * cfg.epochs)


def lr_factor(cfg: TrainConfig, epoch_progress: float) -> float:
    """Learning-rate multiplier at a fractional epoch (0-based): warm-up, then step or cosine (over the rest of
    the epochs asked for, whatever their number)."""
    warmup = warmup_span(cfg)
    if warmup and epoch_progress < warmup:
        return (epoch_progress + 1e-3) / warmup
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - warmup, 1e-9)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (epoch_progress - warmup) / span)))
    return cfg.gamma ** int(epoch_progress // cfg.step_size)  # the seed's StepLR, per epoch


def augment_share(cfg: TrainConfig) -> float:
    """The share of ``scale_jitter`` and ``color_jitter`` that a run of ``cfg.epochs`` gets: none up to a third of
    ``augment_epochs``, rising in proportion to all of it at ``augment_epochs`` (all of it where that is 0).

    Jitter that a long run needs against overfitting keeps a short one from fitting at all. Measured on the
    4-class real tilt/zoom set at width 0.25 (benchmarks/results/scratch-recipe-*-tiltzoom-*): 20 epochs with a
    third of the jitter reached 74% held-out top-1 (2 seeds), without jitter 80%; at 60 epochs the full jitter
    is what lifted the recipe above the 0.1 recipe (88.5% against 79.2%, width 0.125)."""
    if not cfg.augment_epochs or cfg.epochs >= cfg.augment_epochs:
        return 1.0
    start = cfg.augment_epochs / 3
    return max(0.0, (cfg.epochs - start) / (cfg.augment_epochs - start))


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = g["initial_lr"] * factor


EMA_WARMUP = 10  # the weight average's decay after n steps is min(ema, (1 + n) / (EMA_WARMUP + n))


def ema_decay(decay: float, steps: int) -> float:
    """The weight average's decay after ``steps`` optimiser steps: ``min(decay, (1 + n) / (10 + n))``.

    A fixed decay d keeps (d ** n) of the random start after n steps: at 0.98 a third of it after 50 steps,
    so a short run validated and saved mostly its untrained start. Warmed up, the average follows the
    weights closely at first (0.18 after one step, 0.5 after 8, 0.9 after 80) and reaches ``decay`` later.
    """
    return min(decay, (1 + steps) / (EMA_WARMUP + steps))


def warm_ema(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """``AveragedModel``'s ``multi_avg_fn`` of the warmed-up average (``ema_decay``); ``n_averaged`` is the
    number of steps averaged so far, so a resumed run continues the same decays."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        d = ema_decay(decay, int(n_averaged))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1 - d)
        else:  # integer buffers (BatchNorm's num_batches_tracked), as torch's own EMA treats them
            for a, c in zip(averaged, current, strict=True):
                a.copy_(a * d + c * (1 - d))
    return update


def weight_average(model: C3D, cfg: TrainConfig) -> AveragedModel | None:
    """With ``cfg.ema``: a moving average of the weights and BatchNorm statistics, updated after every step,
    with a warm-up (``ema_decay``).

    On small data a from-scratch model's validation top-1 swings from epoch to epoch (BatchNorm statistics
    of few batches, a high learning rate); the average is smoother, so choosing best.pt on it is less of a
    lottery. It is what gets validated, saved as ``state_dict`` and exported; the raw weights are kept
    (``train_state_dict``) to resume.
    """
    if not cfg.ema:
        return None
    if not 0 < cfg.ema < 1:
        raise TrainingError(f"--ema must be a decay between 0 and 1 (e.g. 0.98), got {cfg.ema}")
    return AveragedModel(model, multi_avg_fn=warm_ema(cfg.ema), use_buffers=True)


def after_step(ema: AveragedModel | None, model: C3D, board, first_step: int) -> Callable[[int, float], None] | None:
    """What runs after each optimiser step: the weight average's update, TensorBoard's step loss."""
    if ema is None and board is None:
        return None

    def hook(i: int, loss: float) -> None:
        if ema is not None:
            ema.update_parameters(model)
        if board is not None:
            board.add_scalar("loss/train_step", loss, first_step + i)
    return hook
