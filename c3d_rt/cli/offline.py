"""Offline commands: `predict` (every window of recorded videos, segments, video-level labels) and `features`
(fc6/fc7 per window), at the engine's batched throughput."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..engines.registry import engine_options
from . import checks
from .app import app
from .options import TRITON_URL_HELP, Device, EngineName, PrecisionName, interrupted, model_folder, write_json

SOURCES_HELP = "Video files, folders of videos (searched at any depth), or .txt files with one video path a line."
MODEL_HELP = "The folder `c3d-rt export` wrote, or one exported file (.onnx, .xml, .ts, .pt2), or a checkpoint."
BATCH_HELP = ("Windows per engine call (default: the batch at which the chosen engine is fastest per clip, measured "
              "here).")
DECODERS_HELP = "Decoder threads (default: one per four cores, at least one, at most four)."


class Layer(str, Enum):
    fc6 = "fc6"
    fc7 = "fc7"
    logits = "logits"


class Pool(str, Enum):
    none = "none"
    mean = "mean"


def _open(model: Path, engine: EngineName, precision: PrecisionName, device: Device, triton_url: str | None,
          batch: int | None, layer: str = "logits"):
    """The engine (auto: the fastest proven one here, timed at --batch or 1) and the batch to run it at."""
    from ..engines.auto import open_engine
    from ..engines.batching import fastest_batch

    log = lambda m: typer.echo(m, err=True)  # noqa: E731
    options = engine_options(engine.value, url=triton_url, batch=batch or 1)
    chosen = open_engine(model, engine.value, precision.value, device.value, layer=layer, log=log, **options)
    typer.echo(f"engine: {chosen.describe()}", err=True)
    if batch is None:
        choice = fastest_batch(chosen, log=log)
        typer.echo(f"batch: {choice.format()}", err=True)
        batch = choice.batch
    return chosen, batch


def _decoders(decoders: int | None) -> int:
    return decoders or max(1, min(4, (os.cpu_count() or 1) // 4))


def _sources(sources: list[str]):
    from ..offline.sources import collect_videos

    items = collect_videos(sources)
    typer.echo(f"{len(items)} videos", err=True)
    return items


def _finish(run, out: Path, what: str) -> None:
    """The closing lines; Ctrl-C and failed videos end with their exit codes (130, 1)."""
    finished = sum(1 for r in run.records.values() if r)
    if run.stats is not None and run.stats.windows:
        typer.echo(f"{run.done} videos computed, {run.skipped} already done: {run.stats.windows} windows in "
                   f"{run.stats.wall_s:.1f} s ({run.stats.rates()})", err=True)
    if run.interrupted:
        interrupted(f"{finished} of {len(run.records)} videos are finished in {out} ({what}); run the same command "
                    "again to continue: finished videos are skipped")
    if run.failed:
        typer.secho(f"{len(run.failed)} of {len(run.records)} videos failed (listed in {out / 'summary.csv'}):",
                    fg=typer.colors.RED, err=True)
        for record in run.failed[:10]:
            typer.echo(f"  {record['video']}: {record['reason']}", err=True)
        raise typer.Exit(code=1)


def _check_fps(fps: float | None) -> None:
    if fps is not None and not 1 <= fps <= 1000:
        raise checks.ValidationError(f"--fps {fps:g}: expected a frame rate between 1 and 1000 (e.g. 30, as the "
                                     "anomaly-detection papers resample to)")


@app.command()
def predict(
    sources: list[str] = typer.Argument(..., help=SOURCES_HELP, show_default=False, metavar="SOURCE"),
    model: Path = typer.Option(Path("export"), "--model", "-m", help=MODEL_HELP),
    out: Path = typer.Option(Path("predictions"), "--out", "-o", help="Folder of the outputs (created)."),
    engine: EngineName = typer.Option(EngineName.auto, help="Runtime; auto times every proven engine here and takes "
                                                            "the fastest (cached)."),
    precision: PrecisionName = typer.Option(PrecisionName.auto, help="Precision (auto: any, for --engine auto)."),
    device: Device = typer.Option(Device.auto, help="cpu or cuda; auto uses a GPU where one works."),
    stride: int = typer.Option(8, min=1, help="A window every N sampled frames; every one is classified."),
    batch: Optional[int] = typer.Option(None, min=1, max=4096, help=BATCH_HELP),
    clips: Optional[int] = typer.Option(None, min=1, help="Video-level label from N evenly spaced windows instead "
                                                          "of all."),
    smooth: int = typer.Option(3, min=1, help="Segments: average each window with its neighbours (N windows)."),
    threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="Segments: no label below this smoothed "
                                                                "probability."),
    min_gap: float = typer.Option(1.0, min=0.0, help="Segments: merge two of the same label across a gap shorter "
                                                     "than this (seconds)."),
    topk: int = typer.Option(5, min=1, help="Labels per window in the records."),
    fps: Optional[float] = typer.Option(None, help="Resample every video to this frame rate first."),
    timeline: bool = typer.Option(False, "--timeline", help="Also a PNG per video: probabilities over time, "
                                                            "segments shaded."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Do videos again whose outputs are there (and replace "
                                                              "another model's outputs in --out)."),
    decoders: Optional[int] = typer.Option(None, min=1, max=64, help=DECODERS_HELP),
    summary_json: Optional[Path] = typer.Option(None, "--summary-json", help="Write the run's figures here."),
    triton_url: Optional[str] = typer.Option(None, envvar="C3D_RT_TRITON_URL", help=TRITON_URL_HELP),
) -> None:
    """Classify every window of recorded videos: per-video records, segments, video-level labels, summary tables."""
    model_folder(model)
    checks.output_dir(out, "--out")
    checks.output_file(summary_json, "--summary-json", checks.JSON_SUFFIXES, "predict-run.json")
    _check_fps(fps)
    from ..offline.predict import PredictSettings, predict_videos

    items = _sources(sources)
    settings = PredictSettings(stride=stride, clips=clips, smooth=smooth, threshold=threshold, min_gap=min_gap,
                               topk=topk, fps=fps)
    chosen, batch = _open(model, engine, precision, device, triton_url, batch)
    with chosen:
        run = predict_videos(chosen, items, out, settings, batch=batch, decoders=_decoders(decoders),
                             timeline=timeline, overwrite=overwrite, progress=_progress(),
                             log=lambda m: typer.echo(m, err=True))
    if run.accuracy:
        acc = run.accuracy
        typer.echo(f"video-level top-1 {acc['top1']:.1%}, top-5 {acc['top5']:.1%} over {acc['videos']} videos in "
                   f"class folders (mean of window probabilities); {out / 'accuracy.json'}, {out / 'confusion.png'}")
    typer.echo(f"outputs: {out}/<video>.json, {out / 'summary.csv'}, {out / 'segments.csv'}")
    if summary_json:
        write_json(summary_json, _run_figures(run, chosen, batch))
    _finish(run, out, "predictions")


@app.command()
def features(
    sources: list[str] = typer.Argument(..., help=SOURCES_HELP, show_default=False, metavar="SOURCE"),
    model: Path = typer.Option(Path("export"), "--model", "-m", help=MODEL_HELP + " fc6/fc7 need the features file "
                               "(`c3d-rt export CKPT --formats onnx-features`) or the checkpoint."),
    out: Path = typer.Option(Path("features"), "--out", "-o", help="Folder of the outputs (created)."),
    layer: Layer = typer.Option(Layer.fc6, help="fc6 or fc7 (after ReLU), or the logits."),
    pool: Pool = typer.Option(Pool.none, help="none: a row per window; mean: one vector per video."),
    segments: Optional[int] = typer.Option(None, min=1, help="The anomaly-detection protocol (Sultani et al. 2018): "
                                           "clips of 16 frames (stride 16), each L2-normalised, averaged into N equal "
                                           "segments (32 in the paper, on fc6)."),
    engine: EngineName = typer.Option(EngineName.auto, help="Runtime, as in `predict`."),
    precision: PrecisionName = typer.Option(PrecisionName.auto, help="Precision (auto: any proven one)."),
    device: Device = typer.Option(Device.auto, help="cpu or cuda; auto uses a GPU where one works."),
    stride: Optional[int] = typer.Option(None, min=1, help="A window every N sampled frames (default 8; 16 with "
                                                           "--segments)."),
    batch: Optional[int] = typer.Option(None, min=1, max=4096, help=BATCH_HELP),
    fps: Optional[float] = typer.Option(None, help="Resample every video to this frame rate first (the papers: 30)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Do videos again whose outputs are there."),
    decoders: Optional[int] = typer.Option(None, min=1, max=64, help=DECODERS_HELP),
    triton_url: Optional[str] = typer.Option(None, envvar="C3D_RT_TRITON_URL", help=TRITON_URL_HELP),
) -> None:
    """C3D features (fc6, fc7 after ReLU, or logits) of every window of recorded videos, one .npy per video."""
    model_folder(model)
    checks.output_dir(out, "--out")
    _check_fps(fps)
    if segments and pool != Pool.none:
        raise checks.ValidationError("--segments and --pool mean are two ways to pool: pass one")
    from ..offline.features import FeatureSettings, extract_features

    items = _sources(sources)
    settings = FeatureSettings(layer=layer.value, stride=stride or (16 if segments else 8), pool=pool.value,
                               segments=segments, fps=fps)
    chosen, batch = _open(model, engine, precision, device, triton_url, batch, layer=layer.value)
    with chosen:
        run = extract_features(chosen, items, out, settings, batch=batch, decoders=_decoders(decoders),
                               overwrite=overwrite, progress=_progress(), log=lambda m: typer.echo(m, err=True))
    typer.echo(f"outputs: {out}/<video>.npy and .json, {out / 'summary.csv'}")
    _finish(run, out, "features")


def _progress() -> bool:
    import sys

    return sys.stderr.isatty()


def _run_figures(run, engine, batch: int) -> dict:
    from dataclasses import asdict

    stats = asdict(run.stats) if run.stats else {}
    stats.pop("batch_sizes", None)
    return {"engine": engine.key, "detail": engine.detail, "batch": batch, "videos": len(run.records),
            "computed": run.done, "skipped": run.skipped, "failed": len(run.failed), **stats,
            "accuracy": run.accuracy}
