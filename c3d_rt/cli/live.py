"""Live commands: `webcam` (one source) and `serve` (many cameras, one batched engine, a dashboard)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from ..engines.registry import engine_options
from . import checks
from .app import app
from .options import TRITON_URL_HELP, Device, EngineName, PrecisionName, model_folder, write_json


@app.command()
def webcam(
    model: Path = typer.Option(Path("export"), "--model", "-m", help="The folder `c3d-rt export` wrote, or one "
                                                                     "exported file (.onnx, .xml, .ts, .pt2)."),
    source: str = typer.Option("0", "--source", "-s", help="Camera index (0), video file, URL (rtsp://, http://) "
                                                           "or 'synthetic' / 'synthetic@FPS'."),
    engine: EngineName = typer.Option(EngineName.auto, help="Runtime; auto times every proven engine here and takes "
                                                            "the fastest (cached)."),
    precision: PrecisionName = typer.Option(PrecisionName.auto, help="Precision (auto: any, for --engine auto)."),
    device: Device = typer.Option(Device.auto, help="cpu or cuda; auto uses a GPU where one works."),
    stride: int = typer.Option(1, min=1, help="Run the model every N sampled frames."),
    smooth: int = typer.Option(1, min=1, help="Average the last N predictions."),
    threshold: float = typer.Option(0.0, min=0.0, max=1.0, help="Show no label below this smoothed probability."),
    topk: int = typer.Option(5, min=1, help="Labels per prediction in the log."),
    show: bool = typer.Option(True, "--show/--no-show", help="Open a window (only where a display works)."),
    output: Optional[Path] = typer.Option(None, help="Write the annotated video here (.mp4 or .avi)."),
    log: Optional[Path] = typer.Option(None, "--log", help="One JSON line per prediction (an existing file is "
                                                          "refused without --append or --overwrite)."),
    append: bool = typer.Option(False, "--append", help="Add to an existing --log file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --log file (when the run starts)."),
    max_frames: Optional[int] = typer.Option(None, min=1, help="Stop after this many frames."),
    realtime: bool = typer.Option(False, "--realtime", help="Pace a file at its frame rate, like a camera."),
    loop: bool = typer.Option(False, "--loop", help="Start a file again at its end."),
    summary_json: Optional[Path] = typer.Option(None, "--summary-json", help="Write the latency summary here."),
    triton_url: Optional[str] = typer.Option(None, envvar="C3D_RT_TRITON_URL", help=TRITON_URL_HELP),
) -> None:
    """Recognise actions live from a camera, file or stream, with glass-to-label latency figures."""
    model_folder(model)
    checks.output_file(output, "--output", checks.VIDEO_SUFFIXES, "annotated.mp4")
    checks.output_file(log, "--log", (), "predictions.jsonl")
    log_mode = _log_mode(log, append, overwrite)
    checks.output_file(summary_json, "--summary-json", checks.JSON_SUFFIXES, "latency.json")
    from ..runtime import RunSettings, run_live

    settings = RunSettings(stride=stride, smooth=smooth, threshold=threshold, topk=topk, max_frames=max_frames,
                           show=show, output=output, log_path=log, log_mode=log_mode)
    summary = run_live(model, source, settings, engine=engine.value, precision=precision.value, device=device.value,
                       realtime=realtime, loop=loop, log=lambda m: typer.echo(m, err=True),
                       engine_options=engine_options(engine.value, url=triton_url))
    typer.echo(summary.format())
    if summary_json:
        write_json(summary_json, summary.to_dict())


def _log_mode(log: Path | None, append: bool, overwrite: bool) -> str:
    """What to do with a --log file that exists: refuse it (new), add to it (append) or replace it (overwrite)."""
    if append and overwrite:
        raise checks.ValidationError("--append and --overwrite contradict each other: --append adds to the --log "
                                     "file, --overwrite replaces it. Pass one.")
    if (append or overwrite) and log is None:
        flag = "--append" if append else "--overwrite"
        raise checks.ValidationError(f"{flag} says what to do with an existing --log file, and no --log was given. "
                                     f"Pass --log FILE {flag}, or leave {flag} out.")
    return "append" if append else "overwrite" if overwrite else "new"


@app.command()
def serve(
    model: Path = typer.Option(Path("export"), "--model", "-m", help="The folder `c3d-rt export` wrote, or one "
                                                                     "exported file."),
    source: list[str] = typer.Option([], "--source", "-s", help="NAME=SPEC, repeatable; SPEC as in `webcam` "
                                                                "(camera index, file, rtsp:// or http:// URL, "
                                                                "synthetic[@FPS])."),
    config: Optional[Path] = typer.Option(None, "--config", exists=True, dir_okay=False,
                                          help="A TOML file of stream tables (name, source, stride, ...); see the README."),
    engine: EngineName = typer.Option(EngineName.auto, help="Runtime, as in `webcam`."),
    precision: PrecisionName = typer.Option(PrecisionName.auto, help="Precision, as in `webcam`."),
    device: Device = typer.Option(Device.auto, help="cpu or cuda; auto uses a GPU where one works."),
    stride: int = typer.Option(1, min=1, help="Default for every stream: run the model every N sampled frames."),
    smooth: int = typer.Option(1, min=1, help="Default: average the last N predictions."),
    threshold: float = typer.Option(0.0, min=0.0, max=1.0, help="Default: no label below this probability."),
    realtime: bool = typer.Option(False, "--realtime", help="Default: pace files at their frame rate."),
    loop: bool = typer.Option(False, "--loop", help="Default: start files again at their end."),
    max_batch: int = typer.Option(8, min=1, max=1024, help="Windows per engine call, at most."),
    max_wait_ms: float = typer.Option(5.0, min=0.0, max=1000.0, help="How long a due window may wait for others "
                                                                     "to fill its batch."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; any other than loopback needs --token."),
    port: int = typer.Option(8080, min=0, max=65535, help="Port (0: any free one, printed at start)."),
    token: Optional[str] = typer.Option(None, envvar="C3D_RT_TOKEN", show_envvar=True,
                                        help="Every endpoint except /healthz then needs it."),
    max_streams: int = typer.Option(64, min=1, help="Streams served at once, at most (also over HTTP)."),
    media_root: Optional[Path] = typer.Option(None, file_okay=False, help="Files under this folder may be added "
                                                                          "over HTTP; no other file ever is."),
    log_dir: Optional[Path] = typer.Option(None, file_okay=False, help="One JSON-lines log per stream here."),
    webhook: Optional[str] = typer.Option(None, help="POST each label change here (JSON)."),
    mjpeg_fps: float = typer.Option(10.0, min=0.5, max=60.0, help="Frame rate of the annotated videos."),
    triton_url: Optional[str] = typer.Option(None, envvar="C3D_RT_TRITON_URL", help=TRITON_URL_HELP),
) -> None:
    """Serve many streams through one batched engine, with a live dashboard, an HTTP API and Prometheus metrics."""
    model_folder(model)
    try:
        from ..serve import ServeSettings, StreamSpec, run_server
        from ..serve.stream_config import read_streams
        from ..serve.streams import check_stream_logs
    except ImportError as exc:
        raise checks.ValidationError(f"`c3d-rt serve` needs the serve extra ({exc.name} is missing): "
                                       "pip install 'c3d-rt[serve]'") from None
    defaults = StreamSpec("-", "-", stride=stride, smooth=smooth, threshold=threshold, realtime=realtime, loop=loop)
    streams = read_streams(source, config, defaults)
    check_stream_logs(log_dir, streams)
    settings = ServeSettings(model=model, streams=streams, engine=engine.value, precision=precision.value,
                             device=device.value, host=host, port=port, token=token or None, max_batch=max_batch,
                             max_wait_ms=max_wait_ms, max_streams=max_streams, media_root=media_root,
                             log_dir=log_dir, webhook=webhook, mjpeg_fps=mjpeg_fps, stream_defaults=defaults,
                             triton_url=triton_url or "")
    status = run_server(settings, log=lambda m: typer.echo(m, err=True))
    # Everything is stopped and flushed; tearing down the runtimes' native state at interpreter exit can
    # take seconds more on a loaded machine, and a service manager's SIGTERM deadline must hold.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
