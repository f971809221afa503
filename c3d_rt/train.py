"""Training and evaluation: train_one_epoch / evaluate / fit, checkpoints, DDP.

Run plainly for one process, or under ``torchrun --nproc_per_node=N`` for
DistributedDataParallel (NCCL on CUDA, gloo on CPU). Only rank 0 writes.

Two recipes:
- ``finetune`` (the seed's): SGD, momentum 0.9, weight decay 5e-4, StepLR, fc8 at 10x lr.
  Use it with ``--pretrained`` Sports-1M weights.
- ``scratch``: AdamW with warm-up and cosine decay, the input scaled to unit range,
  gradient clipping. The seed's recipe diverges from random init (see DESIGN.md).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, RandomSampler, Subset
from tqdm import tqdm

from .checkpoint import FORMAT, atomic_save, init_from_pretrained, load_checkpoint
from .console import bar_disabled
from .config import ModelConfig, Preprocessing, TrainConfig
from .errors import C3DError
from .data import DataSplit, VideoClipDataset, cached_relpaths, load_data_split
from .model import C3D, param_groups
from .fileio import atomic_write_text
from .runfolder import BEST, LAST, LOG, TEST, check_run_dir, clear_run_dir  # noqa: F401 (re-exported)

SCRATCH_INPUT_SCALE = 1 / 64  # mean-subtracted 0..255 pixels -> roughly unit range


class TrainingError(C3DError, RuntimeError):
    """A training run that cannot go on; the message says why and what to do."""


RECIPES: dict[str, dict[str, Any]] = {
    "finetune": dict(optimizer="sgd", lr=1e-3, schedule="step", fc8_lr_mult=10.0, weight_decay=5e-4),
    # Measured on the synthetic set: plain C3D stays at chance from random init (with or without
    # dropout, at lr 3e-4 and 1e-3); C3D-BN without dropout learns. On small real footage
    # (benchmarks/scratch_recipe.py) twice the epochs, scale and colour jitter and a weight average
    # raised held-out top-1; dropout 0.5 lowered it. See README "Training from scratch".
    "scratch": dict(optimizer="adamw", lr=1e-3, schedule="cosine", fc8_lr_mult=1.0, weight_decay=0.05,
                    warmup_epochs=1, grad_clip=5.0, epochs=60, scale_jitter=0.25, color_jitter=0.3, ema=0.98,
                    model=dict(batch_norm=True, dropout=0.0, input_scale=SCRATCH_INPUT_SCALE)),
}


def recipe_setup(recipe: str, pretrained: bool, *, width: float = 1.0, crop_size: int = 112, frame_interval: int = 1,
                 epochs: int | None = None, batch_size: int = 16, lr: float | None = None, workers: int = 2,
                 seed: int = 0) -> tuple[ModelConfig, Preprocessing, TrainConfig]:
    """Model, preprocessing and training settings of a recipe ("auto": finetune if pretrained, else scratch);
    ``epochs`` None: the recipe's own."""
    if recipe == "auto":
        recipe = "finetune" if pretrained else "scratch"
    if recipe not in RECIPES:
        raise TrainingError(f"unknown recipe {recipe!r}; expected finetune or scratch")
    settings = dict(RECIPES[recipe])
    model_overrides = settings.pop("model", {})
    try:
        model_config = ModelConfig(width=width, crop_size=crop_size, **model_overrides)
        prep = Preprocessing.for_model(model_config, frame_interval=frame_interval)
    except ValueError as exc:  # the config's own checks: a bad --width, --crop-size or --frame-interval
        raise TrainingError(f"{exc}. Pass values that C3D's shape allows (e.g. --crop-size 112, 64 or 48).") from None
    recipe_epochs = settings.pop("epochs", TrainConfig.epochs)
    epochs = recipe_epochs if epochs is None else epochs
    cfg = TrainConfig(**{**settings, "epochs": epochs, "batch_size": batch_size, "workers": workers, "seed": seed,
                         **({"lr": lr} if lr is not None else {})})
    return model_config, prep, cfg


# --- devices and processes ---------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: str) -> Dist:
    """Join the process group that torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(device: str, ddp: Dist) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda was asked for, but PyTorch sees no CUDA device. Use --device cpu.")
        torch.cuda.set_device(ddp.local_rank)
        return torch.device("cuda", ddp.local_rank)
    if device != "cpu":
        raise TrainingError(f"unknown device {device!r}; expected auto, cpu or cuda")
    return torch.device("cpu")


# --- one epoch ------------------------------------------------------------------------------


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top.eq(target[:, None])
    return [int(hits[:, :k].any(dim=1).sum()) for k in ks]


SPEED_KEYS = ("amp", "precision", "channels_last", "compile")  # how to train, not what: a resume may change them
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(cfg: TrainConfig, device: torch.device, say: Callable[[str], None] = lambda _m: None):
    """The autocast dtype of a run (None: fp32). ``auto``: bf16 on a GPU that has it, else fp16 (with a gradient
    scaler); on a CPU bf16 only where it is native (AVX-512 BF16 or AMX): emulated, it is slower than fp32."""
    from .machine import cpu_has_bf16

    precision = cfg.precision if cfg.amp else "fp32"
    if precision not in ("auto", *PRECISIONS):
        raise TrainingError(f"unknown precision {precision!r}; expected auto, fp32, bf16 or fp16")
    if device.type == "cuda":
        if precision == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return PRECISIONS[precision]
    if precision == "fp16":
        raise TrainingError("--precision fp16 trains on a GPU only (CPUs have no fast fp16 training). Use --precision "
                            "bf16 on a CPU with AVX-512 BF16 or AMX, or fp32.")
    if precision == "auto":
        if cpu_has_bf16():
            return torch.bfloat16
        say("precision: fp32 (bf16 autocast skipped: this CPU has no native bf16, AVX-512 BF16 or AMX, and emulated "
            "bf16 trains slower than fp32)")
        return None
    if precision == "bf16" and not cpu_has_bf16():
        say("warning: --precision bf16 on a CPU without native bf16 (AVX-512 BF16 or AMX): it is emulated and "
            "measured slower than fp32 here (benchmarks/results/train-speed-*.md)")
    return PRECISIONS[precision]


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


# --- optimisation -------------------------------------------------------------------------


def make_optimizer(model: C3D, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.lr, cfg.fc8_lr_mult)
    for g in groups:
        g["initial_lr"] = g["lr"]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise TrainingError(f"unknown optimizer {cfg.optimizer!r}; expected sgd or adamw")


def lr_factor(cfg: TrainConfig, epoch_progress: float) -> float:
    """Learning-rate multiplier at a fractional epoch (0-based): warm-up, then step or cosine."""
    if cfg.warmup_epochs and epoch_progress < cfg.warmup_epochs:
        return (epoch_progress + 1e-3) / cfg.warmup_epochs
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (epoch_progress - cfg.warmup_epochs) / span)))
    return cfg.gamma ** int(epoch_progress // cfg.step_size)  # the seed's StepLR, per epoch


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = g["initial_lr"] * factor


# --- checkpoints ----------------------------------------------------------------------------


def checkpoint_dict(model: C3D, optimizer, scaler, epoch: int, best_top1: float, labels: list[str],
                    prep: Preprocessing, split: DataSplit, cfg: TrainConfig, metrics: dict,
                    ema: AveragedModel | None = None) -> dict[str, Any]:
    """Everything to use the model (``state_dict``: the averaged weights where ``ema`` is on) and to resume it."""
    averaged = {"train_state_dict": model.state_dict(), "ema_averaged": int(ema.n_averaged)} if ema is not None else {}
    return {
        "format": FORMAT,
        "model_config": model.config.to_dict(),
        "preprocessing": prep.to_dict(),
        "labels": labels,
        "split": split.to_dict(),
        "train_config": cfg.to_dict(),
        "epoch": epoch,
        "best_top1": best_top1,
        "metrics": {k: v for k, v in metrics.items() if k != "confusion"},
        "state_dict": (ema.module if ema is not None else model).state_dict(),
        **averaged,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }


def append_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def truncate_log(path: Path, after_epoch: int) -> None:
    """On resume, drop log lines of epochs past the checkpoint (written before a crash)."""
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["epoch"] <= after_epoch]
        path.write_text("".join(ln + "\n" for ln in lines))


# --- fit ----------------------------------------------------------------------------------------


@dataclass
class FitResult:
    run_dir: Path
    best_top1: float
    last_metrics: dict[str, Any]
    skipped_videos: int
    best_split: str = "validation"  # which clips best_top1 was measured on: "validation" or "training"
    test_metrics: dict[str, Any] | None = None  # best.pt on the test split, where val.txt keeps it apart


def build_datasets(split: DataSplit, prep: Preprocessing, cfg: TrainConfig, hflip: bool | None):
    train = VideoClipDataset(split.root, split.train, split.classes, prep, train=True, hflip=hflip,
                             seed=cfg.seed, clips_per_video=cfg.clips_per_video, uint8=True,
                             scale_jitter=cfg.scale_jitter, color_jitter=cfg.color_jitter)
    val = VideoClipDataset(split.root, split.val, split.classes, prep, train=False) if split.val else None
    return train, val


def _epoch_loader(dataset: VideoClipDataset, cfg: TrainConfig, epoch: int, ddp: Dist, pin: bool) -> DataLoader:
    """A loader whose order depends only on (seed, epoch): resuming replays it exactly."""
    dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    if ddp.enabled:
        sampler = torch.utils.data.DistributedSampler(dataset, ddp.world, ddp.rank, shuffle=True, seed=cfg.seed)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                      pin_memory=pin, drop_last=len(dataset) > cfg.batch_size * ddp.world,
                      generator=generator, persistent_workers=False)


def fit(data: str | Path, run_dir: str | Path, *, model_config: ModelConfig | None = None,
        prep: Preprocessing | None = None, cfg: TrainConfig = TrainConfig(), pretrained: str | Path | None = None,
        resume: bool = False, overwrite: bool = False, expect: dict[str, Any] | None = None, device: str = "auto",
        hflip: bool | None = None, progress: bool = True, log: Callable[[str], None] = print,
        tensorboard: bool = False) -> FitResult:
    """Train C3D on the class folders in ``data``; write checkpoints and a log to ``run_dir``.

    A ``run_dir`` holding an earlier run is refused unless ``resume`` (continue it) or ``overwrite``
    (replace it). On resume, ``expect`` holds the settings a user asked for explicitly (``width``,
    ``crop_size``, ``frame_interval``, ``epochs``, ...): any that contradicts the saved run is refused.
    """
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume, overwrite)
    if tensorboard:
        tensorboard_writer_class()  # a missing extra is said before any work
    ddp = init_distributed(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    dev = resolve_device(device, ddp)
    say = log if ddp.main else (lambda _msg: None)
    state = _load_resume_state(run_dir, say) if resume else None
    if state is not None:  # the run's own settings win; a contradicting request was refused above
        check_resume(run_dir, state, Path(data), expect or {})
        cfg = TrainConfig.from_dict({**state["train_config"], **{k: getattr(cfg, k) for k in SPEED_KEYS}})
        model_config = ModelConfig.from_dict(state["model_config"])
        prep = Preprocessing.from_dict(state["preprocessing"])
        split = DataSplit(Path(data), state["split"]["classes"], state["split"]["train"], state["split"]["val"],
                          state["split"]["allow_hflip"], state["split"].get("test", []))
    else:
        split = load_data_split(data, seed=cfg.seed)
        model_config = ModelConfig(**{**(model_config or ModelConfig()).to_dict(), "num_classes": len(split.classes)})
        prep = prep or Preprocessing.for_model(model_config)
        prep = Preprocessing.from_dict({**prep.to_dict(), "allow_hflip": split.allow_hflip if hflip is None else hflip})
    torch.manual_seed(cfg.seed)
    model = C3D(model_config)
    if pretrained and state is None:
        init_from_pretrained(model, load_checkpoint(pretrained, with_hash=False), say)
    model.to(dev, memory_format=torch.channels_last_3d if cfg.channels_last else torch.contiguous_format)
    optimizer = make_optimizer(model, cfg)
    dtype = autocast_dtype(cfg, dev, say)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
    ema = weight_average(model, cfg)
    start_epoch, best_top1, stale = 0, -1.0, 0
    if state is not None:
        model.load_state_dict(state.get("train_state_dict", state["state_dict"]))
        if ema is not None:
            ema.module.load_state_dict(state["state_dict"])
            ema.n_averaged.fill_(state["ema_averaged"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        start_epoch, best_top1 = state["epoch"] + 1, state["best_top1"]
        stale = state["metrics"].get("stale_epochs", 0)
        say(f"resuming {run_dir / LAST} at epoch {start_epoch + 1}/{cfg.epochs}")
    train_set, val_set = build_datasets(split, prep, cfg, prep.allow_hflip)
    net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None) if ddp.enabled else model
    net = torch.compile(net) if cfg.compile else net
    if ddp.main:
        steps = cfg.epochs * max(1, len(train_set) // (cfg.batch_size * ddp.world))
        if cfg.ema and steps < 3 / (1 - cfg.ema):
            say(f"warning: the weight average (--ema {cfg.ema:g}) spans about {1 / (1 - cfg.ema):.0f} steps and this run "
                f"has {steps}: what it saves stays close to the untrained start. Train longer, or pass --ema 0.")
        if cfg.patience and val_set is None:
            say(f"warning: --patience {cfg.patience} needs a validation split, and there is none: training runs all "
                f"{cfg.epochs} epochs")
        for warning in split_warnings(split, train_set, val_set, prep):
            say(f"warning: {warning}")
        for note in dict.fromkeys(d.cache_note for d in (train_set, val_set) if d is not None and d.cache_note):
            say(note)
        if overwrite and state is None:
            clear_run_dir(run_dir, say)
        run_dir.mkdir(parents=True, exist_ok=True)
        truncate_log(run_dir / LOG, start_epoch)  # log epochs are 1-based: keep those already done
        say(f"training C3D (width {model_config.width:g}, {model_config.num_classes} classes) on {dev} x{ddp.world}: "
            f"{len(train_set)} train clips, {len(val_set) if val_set else 0} val clips, "
            f"{len(train_set.skipped) + (len(val_set.skipped) if val_set else 0)} unreadable videos skipped")
    metrics: dict[str, Any] = {}
    board = tensorboard_writer_class()(str(run_dir / TENSORBOARD)) if tensorboard and ddp.main else None
    try:
        for epoch in range(start_epoch, cfg.epochs):
            loader = _epoch_loader(train_set, cfg, epoch, ddp, dev.type == "cuda")
            desc = f"epoch {epoch + 1}/{cfg.epochs}"
            steps = len(loader)
            on_step = after_step(ema, model, board, epoch * steps)
            metrics = train_one_epoch(net, loader, optimizer, scaler, dev, cfg,
                                      lambda p, e=epoch: set_lr(optimizer, lr_factor(cfg, e + p)),
                                      progress and ddp.main, desc, dtype, on_step, prep.mean_bgr)
            if val_set is not None:
                metrics.update(evaluate(ema.module if ema is not None else model, val_set, dev,
                                        model_config.num_classes, cfg.batch_size, cfg.workers, ddp))
                stale = 0 if metrics["val_top1"] > best_top1 else stale + 1  # val is all-reduced: ranks agree
                metrics["stale_epochs"] = stale
            stop = bool(cfg.patience and val_set is not None and stale >= cfg.patience and epoch + 1 < cfg.epochs)
            metrics.update(epoch=epoch + 1, lr=optimizer.param_groups[0]["lr"],
                           lr_groups=[g["lr"] for g in optimizer.param_groups], stopped_early=stop)
            top1 = metrics.get("val_top1", metrics["train_top1"])
            if ddp.main:
                _save_epoch(run_dir, model, optimizer, scaler, epoch, top1, best_top1, split, prep, cfg, metrics, ema)
                if board is not None:
                    write_epoch_scalars(board, metrics)
                say(_epoch_line(metrics))
            best_top1 = max(best_top1, top1)
            if stop:
                say(f"stopping early: the validation top-1 has not improved for {cfg.patience} epochs; best.pt holds "
                    f"the best ({best_top1:.3f}, epoch {epoch + 1 - stale})")
                break
    finally:
        if board is not None:
            board.close()
    if ddp.enabled:
        dist.barrier()
    skipped = len(train_set.skipped) + (len(val_set.skipped) if val_set else 0)
    test = best_on_test(run_dir, model, split, prep, cfg, dev, ddp, say) if split.test and val_set is not None else None
    return FitResult(run_dir, best_top1, metrics, skipped, "validation" if val_set is not None else "training", test)


def weight_average(model: C3D, cfg: TrainConfig) -> AveragedModel | None:
    """With ``cfg.ema``: a moving average of the weights and BatchNorm statistics, updated after every step.

    On small data a from-scratch model's validation top-1 swings from epoch to epoch (BatchNorm statistics
    of few batches, a high learning rate); the average is smoother, so choosing best.pt on it is less of a
    lottery. It is what gets validated, saved as ``state_dict`` and exported; the raw weights are kept
    (``train_state_dict``) to resume.
    """
    if not cfg.ema:
        return None
    if not 0 < cfg.ema < 1:
        raise TrainingError(f"--ema must be a decay between 0 and 1 (e.g. 0.98), got {cfg.ema}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)


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


def best_on_test(run_dir: Path, model: C3D, split: DataSplit, prep: Preprocessing, cfg: TrainConfig,
              device: torch.device, ddp: Dist, say: Callable[[str], None]) -> dict[str, Any]:
    """best.pt (chosen on the validation split) on the test split, which no choice has seen: the unbiased figure.

    Written to the run folder's test.json and said. Without a separate val.txt the validation split is the
    test split, and best.pt's top-1 is optimistic: that case never reaches here.
    """
    best = torch.load(run_dir / BEST, map_location=device, weights_only=True)
    model.load_state_dict(best["state_dict"])
    test_set = VideoClipDataset(split.root, split.test, split.classes, prep, train=False)
    result = evaluate(model, test_set, device, len(split.classes), cfg.batch_size, cfg.workers, ddp)
    result = {"test_" + k.removeprefix("val_"): v for k, v in result.items()} | {"best_epoch": best["epoch"] + 1}
    if ddp.main:
        atomic_write_text(json.dumps(result, indent=1), run_dir / TEST)
        say(f"test top-1 {result['test_top1']:.3f} (top-5 {result['test_top5']:.3f}) on {result['test_clips']} "
            f"clips of the test split, with best.pt (epoch {result['best_epoch']}, chosen on the validation split)")
    return result


# --- TensorBoard ------------------------------------------------------------------------------------

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


# --- guarding earlier runs and the data ----------------------------------------------------------

RESUME_KEYS = {  # CLI option -> where the saved run keeps it
    "width": ("model_config", "width"), "crop_size": ("model_config", "crop_size"),
    "frame_interval": ("preprocessing", "frame_interval"), "hflip": ("preprocessing", "allow_hflip"),
    "epochs": ("train_config", "epochs"), "batch_size": ("train_config", "batch_size"),
    "lr": ("train_config", "lr"), "seed": ("train_config", "seed"), "recipe": ("train_config", "optimizer"),
    "patience": ("train_config", "patience"), "ema": ("train_config", "ema"),
    "scale_jitter": ("train_config", "scale_jitter"), "color_jitter": ("train_config", "color_jitter"),
}
RECIPE_OF_OPTIMIZER = {"sgd": "finetune", "adamw": "scratch"}


def check_resume(run_dir: Path, state: dict[str, Any], data: Path, expect: dict[str, Any]) -> None:
    """Refuse a resume that is done already, or whose arguments or data contradict the saved run."""
    saved_epochs = state["train_config"]["epochs"]
    if state["metrics"].get("stopped_early"):
        raise TrainingError(
            f"--resume: {run_dir} stopped early at epoch {state['epoch'] + 1} of {saved_epochs} (the validation top-1 "
            f"had not improved for {state['train_config'].get('patience')} epochs; best {state['best_top1']:.3f}, in "
            f"{run_dir / BEST}); there is nothing to continue. To train further, start a new run from its weights: "
            f"c3d-rt train {data} --out NEW_RUN --pretrained {run_dir / BEST}.")
    if state["epoch"] + 1 >= saved_epochs:
        raise TrainingError(
            f"--resume: {run_dir} is complete ({saved_epochs} of {saved_epochs} epochs; best top-1 "
            f"{state['best_top1']:.3f}); there is nothing to continue. To train further, start a new run from its "
            f"weights: c3d-rt train {data} --out NEW_RUN --pretrained {run_dir / LAST} (with the same --width, "
            "--crop-size and --recipe).")
    conflicts = []
    for name, wanted in expect.items():
        if name == "pretrained":
            conflicts.append("--pretrained (a resumed run continues from its own last.pt)")
            continue
        section, key = RESUME_KEYS[name]
        saved = state[section].get(key, getattr(TrainConfig, key, None))  # runs from before a key existed
        saved = RECIPE_OF_OPTIMIZER.get(saved, saved) if name == "recipe" else saved
        if wanted != saved and not (name == "recipe" and wanted == "auto"):
            conflicts.append(f"--{name.replace('_', '-')} {wanted} (the run has {saved})")
    if conflicts:
        raise TrainingError(f"--resume: {run_dir} was started with other settings: {'; '.join(conflicts)}. "
                            "Leave these options out to continue the run as it was started, or train a new run "
                            "into another --out folder.")
    _check_resume_data(run_dir, state["split"], data)


def _check_resume_data(run_dir: Path, split: dict[str, Any], data: Path) -> None:
    cached = cached_relpaths(data) if data.is_dir() else set()  # a cache without its videos still trains
    classes = sorted({p.name for p in data.iterdir() if p.is_dir()} | {r.split("/", 1)[0] for r in cached}) \
        if data.is_dir() else []
    missing_classes = [c for c in split["classes"] if c not in classes]
    wanted = split["train"] + split["val"] + split.get("test", [])
    missing = [p for p in wanted if not (data / p).exists() and p not in cached]
    if not data.is_dir() or missing_classes or missing:
        what = ("it is not a folder" if not data.is_dir() else
                f"it lacks the classes {', '.join(missing_classes[:4])}" if missing_classes else
                f"{len(missing)} of the run's {len(wanted)} videos are missing "
                f"(e.g. {missing[0]})")
        raise TrainingError(f"--resume: {run_dir} was trained on {split['root']}, and {data} does not hold that data "
                            f"({what}). Pass the run's data folder.")


def split_warnings(split: DataSplit, train_set: VideoClipDataset, val_set: VideoClipDataset | None,
                   prep: Preprocessing) -> list[str]:
    """What makes the reported accuracy mean less than it seems, or a clip differ from what was asked."""
    notes = list(split.notes)
    if len(split.classes) == 1:
        notes.append(f"the data has one class ({split.classes[0]}): every prediction is right, so the accuracy "
                        "says nothing. Add a folder of videos for each other class.")
    if val_set is None:
        notes.append(f"{split.root} has no validation split (too few videos per class, or an empty "
                        "splits/test.txt): the top-1 reported is on the TRAINING clips, not a held-out accuracy.")
    else:
        seen = {rel.split("/", 1)[0] for rel, _, _ in val_set.items}
        absent = [c for c in split.classes if c not in seen]
        if absent:
            notes.append(f"the validation split has no readable clip of {len(absent)} of {len(split.classes)} "
                            f"classes ({', '.join(absent[:4])}{' ...' if len(absent) > 4 else ''}): "
                            "their accuracy is not measured.")
    span = (prep.clip_len - 1) * prep.frame_interval + 1
    short = [rel for rel, n, _ in train_set.items if n < span]
    if short:
        longest = max(n for _, n, _ in train_set.items)
        notes.append(f"{len(short)} of {len(train_set.items)} training videos have fewer than {span} frames, the "
                        f"span of one clip at --frame-interval {prep.frame_interval}: their clips wrap around to the "
                        f"start. The longest video has {longest} frames; a --frame-interval of at most "
                        f"{max(1, (longest - 1) // max(1, prep.clip_len - 1))} fits it.")
    return notes


def _load_resume_state(run_dir: Path, say: Callable[[str], None]) -> dict[str, Any] | None:
    path = run_dir / LAST
    if not path.is_file():
        raise TrainingError(f"--resume: {path} does not exist. Start without --resume, or point --out at the "
                            "run folder that holds last.pt.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT or "optimizer" not in state:
        raise TrainingError(f"--resume: {path} is not a c3d-rt training checkpoint.")
    return state


def _save_epoch(run_dir, model, optimizer, scaler, epoch, top1, best_top1, split, prep, cfg, metrics, ema) -> None:
    """last.pt every epoch, best.pt when ``top1`` beats ``best_top1``, and the epoch's log line."""
    ckpt = checkpoint_dict(model, optimizer, scaler, epoch, max(best_top1, top1), split.classes, prep, split, cfg,
                           metrics, ema)
    atomic_save(ckpt, run_dir / LAST)
    if top1 > best_top1:
        atomic_save(ckpt, run_dir / BEST)
    append_log(run_dir / LOG, {k: v for k, v in metrics.items() if k != "confusion"})


def _epoch_line(m: dict[str, Any]) -> str:
    val = (f" | val loss {m['val_loss']:.3f} top1 {m['val_top1']:.3f} top5 {m['val_top5']:.3f}"
           if "val_top1" in m else "")
    return (f"epoch {m['epoch']}: train loss {m['train_loss']:.3f} top1 {m['train_top1']:.3f}{val} | "
            f"{m['clips_per_s']:.1f} clips/s, {m['data_wait']:.0%} waiting for data | lr {m['lr']:.2e}")
