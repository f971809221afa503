"""Training commands: `train` and `eval`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, Optional

import typer

from ..training.runfolder import LAST, check_run_dir, epochs_done
from . import checks
from .app import app
from .options import Device, Recipe, TrainPrecision, command_line, explicit, interrupted, needs_torch, write_json


@app.command()
def train(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Data folder: one sub-folder of videos per class (see `prepare`, `synth`)."),
    out: Path = typer.Option(Path("runs/c3d"), "--out", "-o", help="Run folder for checkpoints and the log."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Epochs [default: the recipe's: 30 to fine-tune, 60 "
                                                           "from scratch]."),
    batch_size: int = typer.Option(16, min=1),
    lr: Optional[float] = typer.Option(None, min=0.0, help="Base learning rate (fc8 gets 10x with the seed's recipe)."),
    width: float = typer.Option(1.0, min=0.0625, max=4.0, help="Channel width multiplier; 1.0 is the paper's C3D."),
    crop_size: int = typer.Option(112, min=32, max=448, help="Crop size (multiple of 16); frames are resized in "
                                                             "proportion."),
    frame_interval: int = typer.Option(1, min=1, help="Take every N-th frame; the runtime uses the same."),
    pretrained: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                              help="Sports-1M / reference / c3d-rt weights to start from."),
    recipe: Recipe = typer.Option(Recipe.auto, help="finetune (the seed's SGD) or scratch (AdamW + C3D-BN); "
                                                    "auto picks finetune with --pretrained, else scratch."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from OUT/last.pt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier run in OUT (without it, an "
                                                              "earlier run there is refused)."),
    device: Device = typer.Option(Device.auto),
    workers: int = typer.Option(2, min=0, help="DataLoader worker processes."),
    hflip: Optional[bool] = typer.Option(None, "--hflip/--no-hflip",
                                         help="Horizontal flip augmentation; default: what the data set allows."),
    seed: int = typer.Option(0, min=0),
    precision: TrainPrecision = typer.Option(TrainPrecision.auto, help="auto: bf16 autocast on a GPU that has it "
                                             "(else fp16 with a gradient scaler), on a CPU only with native bf16."),
    channels_last: bool = typer.Option(False, "--channels-last", help="channels_last_3d memory format (measure first: "
                                                                      "see benchmarks/results/train-speed-*)."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (slow first steps)."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also write TensorBoard logs to OUT/tensorboard "
                                                                  "(needs the tensorboard extra)."),
    patience: int = typer.Option(0, min=0, help="Stop after this many epochs without a better validation top-1 "
                                                "(0: never); best.pt holds the best."),
    scale_jitter: Optional[float] = typer.Option(None, min=0.0, max=0.5, help="Zoom training clips into a random "
                                                 "window of (1 - this .. 1) x the crop [default: the recipe's]."),
    color_jitter: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Vary training clips' contrast, "
                                                 "brightness and colour by up to this [default: the recipe's]."),
    ema: Optional[float] = typer.Option(None, min=0.0, max=0.9999, help="Validate, save and export a moving average "
                                        "of the weights with this decay per step; 0 turns it off [default: the "
                                        "recipe's]."),
) -> None:
    """Train C3D on class folders of videos (also under `torchrun --nproc_per_node=N`)."""
    needs_torch("train")
    checks.input_dir(data, "DATA", "a folder with one sub-folder of videos per class (make one with "
                                     "`c3d-rt prepare` or `c3d-rt synth`)")
    checks.output_dir(out, "--out")
    check_run_dir(out, resume, overwrite)
    checks.model_shape(width, crop_size, frame_interval)
    from ..training.fit import fit
    from ..training.recipes import recipe_setup

    model_config, prep, cfg = recipe_setup(recipe.value, pretrained is not None, width=width, crop_size=crop_size,
                                           frame_interval=frame_interval, epochs=epochs, batch_size=batch_size,
                                           lr=lr, workers=workers, seed=seed)
    cfg.precision, cfg.channels_last, cfg.compile, cfg.patience = precision.value, channels_last, compile_model, patience
    cfg.scale_jitter = cfg.scale_jitter if scale_jitter is None else scale_jitter
    cfg.color_jitter = cfg.color_jitter if color_jitter is None else color_jitter
    cfg.ema = cfg.ema if ema is None else ema
    given = {"width": width, "crop_size": crop_size, "frame_interval": frame_interval, "hflip": hflip,
             "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "recipe": recipe.value,
             "pretrained": str(pretrained), "patience": patience, "ema": ema, "scale_jitter": scale_jitter,
             "color_jitter": color_jitter}
    try:
        result = fit(data, out, model_config=model_config, prep=prep, cfg=cfg, pretrained=pretrained, resume=resume,
                     overwrite=overwrite, expect={k: v for k, v in given.items() if explicit(ctx, k)},
                     device=device.value, hflip=hflip, tensorboard=tensorboard)
    except KeyboardInterrupt:
        _interrupted_training(data, out)
    if result.test_metrics:  # the test figure itself was said as training ended
        typer.echo(f"checkpoints in {result.run_dir}; best.pt's test figures in {result.run_dir / 'test.json'}")
    elif result.best_split in ("validation", "test", "held-out"):
        optimistic = " (which also chose it: optimistic)" if result.best_split != "validation" else ""
        typer.echo(f"best top-1 {result.best_top1:.3f} on the {result.best_split} split "
                   f"({result.last_metrics.get('val_clips', 0)} clips{optimistic}); checkpoints in {result.run_dir}")
    else:
        typer.echo(f"best top-1 {result.best_top1:.3f} on the TRAINING clips (no validation split: not a held-out "
                   f"accuracy); checkpoints in {result.run_dir}")


def _interrupted_training(data: Path, out: Path) -> NoReturn:
    done = epochs_done(out) if (out / LAST).is_file() else 0
    if done:
        interrupted(f"{out / LAST} holds {done} finished epoch(s) (a checkpoint is saved after each epoch; the "
                     f"epoch in progress is lost). Continue with: {command_line('train', str(data), '--out', str(out), '--resume')}")
    interrupted(f"no epoch had finished, so nothing was saved in {out}. Start again with: "
                 f"{command_line(*sys.argv[1:])}")


@app.command("eval")
def eval_(
    ckpt: Path = typer.Argument(..., help="Checkpoint to evaluate."),
    data: Path = typer.Argument(..., help="Data folder; its evaluation split (splits/test.txt) is used."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the metrics as JSON here."),
    confusion: Optional[Path] = typer.Option(None, help="Confusion-matrix PNG (default: beside the checkpoint)."),
    batch_size: int = typer.Option(16, min=1),
    workers: int = typer.Option(2, min=0),
    device: Device = typer.Option(Device.auto),
) -> None:
    """Top-1, top-5 and a confusion matrix on the evaluation split."""
    needs_torch("eval")
    checks.output_file(json_out, "--json", checks.JSON_SUFFIXES, "metrics.json")
    why_not = ""
    if confusion is not None:  # asked for: a place that cannot take it is refused before any work
        checks.output_file(confusion, "--confusion", checks.IMAGE_SUFFIXES, "confusion.png")
    else:  # the default, beside the checkpoint: a read-only folder of checkpoints still gets its metrics
        confusion, why_not = checks.default_output_file(ckpt.with_suffix(".confusion.png"), "--confusion",
                                                        checks.IMAGE_SUFFIXES)
    from ..core.figures import save_confusion_png
    from ..training.evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(ckpt, data, batch_size=batch_size, workers=workers, device=device.value)
    typer.echo(f"top-1 {result['val_top1']:.4f}  top-5 {result['val_top5']:.4f}  on {result['val_clips']} clips "
               f"({result['skipped_videos']} unreadable skipped)")
    png = None
    if confusion is not None:
        png = save_confusion_png(result["confusion"], result["labels"], confusion,
                                 f"{ckpt.name}: top-1 {result['val_top1']:.3f}")
        typer.echo(f"confusion matrix: {png}")
    else:
        typer.echo(f"confusion matrix not written (by default it goes beside the checkpoint): {why_not}", err=True)
    if json_out:
        write_json(json_out, {**result, "confusion_png": str(png) if png else None})
