"""`c3d-rt train`: ``fit`` runs a whole training, from a data folder to a run folder with ``best.pt``.

The recipes are :mod:`.recipes`, one epoch is :mod:`.loop`, resuming is :mod:`.resume`; this module wires
them: data, model, epochs, checkpoints each epoch (atomic), early stopping, and the held-out test at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, RandomSampler

from ..core.config import ModelConfig, Preprocessing, TrainConfig
from ..core.fileio import atomic_write_text
from ..data.datasets import VideoClipDataset
from ..data.splits import DataSplit, load_data_split
from ..model.c3d import C3D
from ..model.checkpoint import FORMAT, atomic_save, init_from_pretrained, load_checkpoint
from .board import TENSORBOARD, tensorboard_writer_class, write_epoch_scalars
from .distributed import Dist, init_distributed, torch_device
from .loop import (
    after_step,
    augment_share,
    autocast_dtype,
    evaluate,
    lr_factor,
    make_optimizer,
    set_lr,
    train_one_epoch,
    weight_average,
)
from .resume import SPEED_KEYS, check_resume, load_resume_state
from .runfolder import BEST, LAST, LOG, TEST, append_log, check_run_dir, clear_run_dir, truncate_log


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


@dataclass
class FitResult:
    run_dir: Path
    best_top1: float
    last_metrics: dict[str, Any]
    skipped_videos: int
    best_split: str = "validation"  # which clips best_top1 was measured on: "validation", "test" (no val.txt: the
    # test split chose best.pt), "held-out" (no split files: the split made here, which eval reports on too, chose
    # best.pt) or "training" (no held-out split at all)
    test_metrics: dict[str, Any] | None = None  # best.pt on the test split, where val.txt keeps it apart


def build_datasets(split: DataSplit, prep: Preprocessing, cfg: TrainConfig, hflip: bool | None):
    share = augment_share(cfg)
    train = VideoClipDataset(split.root, split.train, split.classes, prep, train=True, hflip=hflip,
                             seed=cfg.seed, clips_per_video=cfg.clips_per_video, uint8=True,
                             scale_jitter=cfg.scale_jitter * share, color_jitter=cfg.color_jitter * share)
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
    dev = torch_device(device, ddp)
    say = log if ddp.main else (lambda _msg: None)
    state = load_resume_state(run_dir, say) if resume else None
    if state is not None:  # the run's own settings win; a contradicting request was refused above
        check_resume(run_dir, state, Path(data), expect or {})
        cfg = TrainConfig.from_dict({**state["train_config"], **{k: getattr(cfg, k) for k in SPEED_KEYS}})
        model_config = ModelConfig.from_dict(state["model_config"])
        prep = Preprocessing.from_dict(state["preprocessing"])
        split = DataSplit(Path(data), state["split"]["classes"], state["split"]["train"], state["split"]["val"],
                          state["split"]["allow_hflip"], state["split"].get("test", []),
                          generated=state["split"].get("generated", False))
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
        if augment_share(cfg) < 1 and (cfg.scale_jitter or cfg.color_jitter):
            say(f"augmentation at {augment_share(cfg):.0%} strength for {cfg.epochs} epochs (--scale-jitter "
                f"{cfg.scale_jitter * augment_share(cfg):.3g}, --color-jitter {cfg.color_jitter * augment_share(cfg):.3g}): "
                f"the recipe's full jitter is for runs of {cfg.augment_epochs} epochs or more")
        if cfg.patience and val_set is None:
            say(f"warning: --patience {cfg.patience} needs a validation split, and there is none: training runs all "
                f"{cfg.epochs} epochs")
        for warning in split_warnings(split, train_set, val_set, prep):
            say(f"warning: {warning}")
        if val_set is not None and split.validates_on_test:
            say(f"no splits/val.txt in {split.root}: training validates on the test split ({len(val_set)} clips), "
                "the one `c3d-rt eval` reports on, so the per-epoch 'test' figure also chooses best.pt (and stops "
                "--patience), and best.pt's test top-1 is optimistic. For an unbiased one, list validation videos "
                "apart from the test split in splits/val.txt.")
        if val_set is not None and split.validates_on_generated:
            say(f"no splits/train.txt and splits/test.txt in {split.root}: training holds out a group-aware part of "
                f"each class's videos ({len(val_set)} clips) and validates on it; `c3d-rt eval` reports on the same "
                "clips, so the per-epoch 'held-out' figure also chooses best.pt (and stops --patience), and best.pt's "
                "held-out top-1 is optimistic. For an unbiased one, write splits/train.txt, splits/val.txt and "
                "splits/test.txt (\"Class/video.avi\" a line; splits/val.txt is read only with both of the others).")
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
                say(_epoch_line(metrics, split.val_name))
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
    note = underfit_note(metrics, cfg, len(split.classes))
    if note:
        say(note)
    measured_on = "training" if val_set is None else {"val": "validation"}.get(split.val_name, split.val_name)
    return FitResult(run_dir, best_top1, metrics, skipped, measured_on, test)


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


UNDERFIT_TOP1 = 0.6  # a last-epoch training top-1 below this (or below halfway from chance to 1) is underfitting


def underfit_note(metrics: dict[str, Any], cfg: TrainConfig, num_classes: int) -> str | None:
    """What to try when the last epoch's training top-1 is low: the model has not learnt even the clips it trains
    on, so the held-out figure cannot be better (more data or regularisation would not help; a longer or faster
    run would). Low: under ``UNDERFIT_TOP1``, or under halfway from chance to 1 where there are few classes."""
    top1 = metrics.get("train_top1")
    low = max(UNDERFIT_TOP1, (1 + 1 / max(num_classes, 1)) / 2)
    if top1 is None or top1 >= low:
        return None
    jitter = (f", or weaker augmentation (--scale-jitter and --color-jitter lower than {cfg.scale_jitter:g} and "
              f"{cfg.color_jitter:g})" if cfg.scale_jitter or cfg.color_jitter else "")
    return (f"underfitting: the training top-1 of the last epoch is {top1:.3f} (chance {1 / max(num_classes, 1):.3f}; "
            f"below {low:.3g} counts as low): the model has not fitted even its training clips. Train longer "
            f"(--epochs {2 * cfg.epochs}) or at a higher learning rate (--lr {2 * cfg.lr:g}){jitter}.")


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


def _save_epoch(run_dir, model, optimizer, scaler, epoch, top1, best_top1, split, prep, cfg, metrics, ema) -> None:
    """last.pt every epoch, best.pt when ``top1`` beats ``best_top1``, and the epoch's log line."""
    ckpt = checkpoint_dict(model, optimizer, scaler, epoch, max(best_top1, top1), split.classes, prep, split, cfg,
                           metrics, ema)
    atomic_save(ckpt, run_dir / LAST)
    if top1 > best_top1:
        atomic_save(ckpt, run_dir / BEST)
    append_log(run_dir / LOG, {k: v for k, v in metrics.items() if k != "confusion"})


def _epoch_line(m: dict[str, Any], val_name: str = "val") -> str:
    """The epoch's line; ``val_name`` "test" where the held-out figure is the test split's (no val.txt), "held-out"
    where it is the split made without split files."""
    val = (f" | {val_name} loss {m['val_loss']:.3f} top1 {m['val_top1']:.3f} top5 {m['val_top5']:.3f}"
           if "val_top1" in m else "")
    return (f"epoch {m['epoch']}: train loss {m['train_loss']:.3f} top1 {m['train_top1']:.3f}{val} | "
            f"{m['clips_per_s']:.1f} clips/s, {m['data_wait']:.0%} waiting for data | lr {m['lr']:.2e}")
