"""`bench` (every engine side by side) and `demo` (the whole path on the built-in set)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..engines.base import DEVICES, PRECISIONS
from ..engines.registry import ENGINES
from . import checks
from .app import app
from .options import EngineName, PrecisionName, model_folder, needs_torch


@app.command()
def bench(
    model: Path = typer.Option(Path("export"), "--model", "-m", help="The folder `c3d-rt export` wrote."),
    engines: Optional[str] = typer.Option(None, help="Comma-separated engines (default: every local one, and "
                                                      "triton with --triton-url)."),
    precision: str = typer.Option(",".join(PRECISIONS), help="Comma-separated precisions (the auto row chooses "
                                                              "among these only)."),
    devices: str = typer.Option(",".join(DEVICES), help="Comma-separated devices (rows on a missing one say so)."),
    torch_variants: str = typer.Option("", help="Also time eager torch with these options, as rows of their own: "
                                                "channels_last, compile (comma-separated)."),
    batch: str = typer.Option("1,8", help="Comma-separated batch sizes."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads per engine (default: every core)."),
    warmup: int = typer.Option(3, min=0, help="Untimed calls first."),
    iters: int = typer.Option(20, min=1, help="Timed calls per row."),
    clips: int = typer.Option(32, min=1, help="Real clips for the agreement check."),
    checkpoint: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                              help="The checkpoint --model was exported from: the eager reference and "
                                                   "the torch rows (default: none; the proven c3d.onnx on ONNX "
                                                   "Runtime is the reference, unless --model holds its checkpoint)."),
    e2e: bool = typer.Option(False, "--e2e", help="Also run the live pipeline on a paced synthetic camera: the "
                                                  "`c3d-rt webcam` run it prints, in a process of its own."),
    e2e_engine: EngineName = typer.Option(EngineName.auto, help="Engine of the --e2e run."),
    e2e_precision: PrecisionName = typer.Option(PrecisionName.auto, help="Precision of the --e2e run."),
    e2e_seconds: float = typer.Option(10.0, min=1.0, help="Length of each --e2e run."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the rows and the machine as JSON."),
    markdown: Optional[Path] = typer.Option(None, help="Write a Markdown report."),
    plot: Optional[Path] = typer.Option(None, help="Write a PNG of latency against batch size."),
    triton_url: Optional[str] = typer.Option(None, envvar="C3D_RT_TRITON_URL", help="The Triton server of the "
                                             "triton rows: http://HOST:8000 or grpc://HOST:8001."),
) -> None:
    """Compare engines and precisions: latency percentiles, throughput, memory and agreement with eager fp32."""
    model_folder(model)
    checks.output_file(json_out, "--json", checks.JSON_SUFFIXES, "bench.json")
    checks.output_file(markdown, "--markdown", checks.MARKDOWN_SUFFIXES, "bench.md")
    checks.output_file(plot, "--plot", checks.IMAGE_SUFFIXES, "bench.png")
    from ..bench.measure import run_bench
    from ..bench.report import exit_messages, format_table, save_outputs
    from ..bench.rows import BenchSettings
    from .options import parse_batches, parse_names

    engines = engines or ",".join(n for n, e in ENGINES.items() if not e.remote or triton_url)
    settings = BenchSettings(engines=parse_names(engines, tuple(ENGINES), "engine"), triton_url=triton_url or "",
                             precisions=parse_names(precision, PRECISIONS, "precision"),
                             devices=parse_names(devices, DEVICES, "device"), batches=parse_batches(batch),
                             threads=threads, warmup=warmup, iters=iters, clips=clips, e2e=e2e,
                             e2e_engine=e2e_engine.value, e2e_precision=e2e_precision.value, e2e_seconds=e2e_seconds,
                             torch_variants=parse_names(torch_variants, ("channels_last", "compile"), "torch variant")
                             if torch_variants else ())
    report = run_bench(model, settings, checkpoint=checkpoint, log=lambda m: typer.echo(m, err=True))
    typer.echo(format_table(report))
    save_outputs(report, json_out, markdown, plot)
    messages = exit_messages(report)
    for line in messages:
        typer.secho(line, fg=typer.colors.RED, err=True)
    if messages:
        raise typer.Exit(code=1)


@app.command()
def demo(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the data, run and exports [default: "
                                       "runs/demo; runs/demo-quick with --quick]."),
    quick: bool = typer.Option(False, "--quick", help="A much smaller run (for smoke tests): not accurate."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a demo of other settings in --out (without "
                                                              "it, one is refused)."),
) -> None:
    """The whole job on a fresh machine: synthesise data, train a narrow C3D, report held-out accuracy, export."""
    needs_torch("demo")
    from ..demo import DEMO_OUT, QUICK_OUT, run_demo

    out = out or (QUICK_OUT if quick else DEMO_OUT)
    checks.output_dir(out, "--out")
    for part in ("data", "run", "export"):
        checks.output_dir(out / part, "--out")
    run_demo(out, quick=quick, overwrite=overwrite)
