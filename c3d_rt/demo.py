"""`c3d-rt demo`: the main job on a fresh machine with no data and no GPU.

Synthesise the motion data set, train a narrow C3D-BN from scratch, report its
held-out accuracy, export it and print the equivalence table, run it live on the
synthetic camera (headless where there is no display) with its latency summary,
and print a short comparison of the engines that run here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .core.config import ModelConfig, Preprocessing, TrainConfig
from .data.synth import SynthSpec, synthesize
from .training.fit import fit
from .training.recipes import RECIPES


@dataclass(frozen=True)
class DemoSettings:
    width: float = 0.125  # 1/8 of C3D's channels: about 1 M parameters
    crop_size: int = 48  # frames resized to 73x55, cropped to 48x48
    clips_per_class: int = 80
    epochs: int = 16
    batch_size: int = 16
    workers: int = 1
    live_seconds: float = 6.0  # of the synthetic camera at 30 fps
    bench_iters: int = 20
    ema: float | None = None  # None: the scratch recipe's weight average


QUICK = DemoSettings(width=0.0625, crop_size=32, clips_per_class=6, epochs=1, batch_size=8, workers=0,
                     live_seconds=2.0, bench_iters=3, ema=0.0)  # a handful of steps: too few to average
DEMO_ENGINES = ("torch", "torchscript", "torch-export", "ort", "openvino")


def demo_model(s: DemoSettings) -> ModelConfig:
    return ModelConfig(width=s.width, crop_size=s.crop_size, **RECIPES["scratch"]["model"])


def run_demo(out: str | Path, quick: bool = False, log=print) -> dict:
    """Run the demo into ``out``; return the figures it printed."""
    s = QUICK if quick else DemoSettings()
    out = Path(out)
    model_config = demo_model(s)
    prep = Preprocessing.for_model(model_config)
    t0 = time.perf_counter()
    log(f"[1/5] synthesising the motion data set into {out / 'data'}")
    spec = SynthSpec(clips_per_class=s.clips_per_class, width=prep.resize_wh[0], height=prep.resize_wh[1])
    synthesize(out / "data", spec)
    t1 = time.perf_counter()
    log(f"[2/5] training C3D-BN (width {s.width:g}) from scratch for {s.epochs} epochs")
    recipe = {k: v for k, v in RECIPES["scratch"].items() if k != "model"}
    cfg = TrainConfig(**{**recipe, "epochs": s.epochs, "batch_size": s.batch_size, "workers": s.workers,
                         **({"ema": s.ema} if s.ema is not None else {})})
    result = fit(out / "data", out / "run", model_config=model_config, prep=prep, cfg=cfg, overwrite=True,
                 log=log)  # the demo's own run folder: a second demo replaces the first, and says so
    t2 = time.perf_counter()
    top1 = result.last_metrics.get("val_top1", float("nan"))
    log(f"held-out top-1 {top1:.1%} on {result.last_metrics.get('val_clips', 0)} clips "
        f"(synth {t1 - t0:.0f}s, training {t2 - t1:.0f}s)")
    log(f"[3/5] exporting {out / 'run' / 'last.pt'} to {out / 'export'}")
    from .export.job import export_checkpoint
    from .export.report import format_report_table

    report = export_checkpoint(out / "run" / "last.pt", out / "export", log=lambda _m: None)
    log(format_report_table(report))
    live = run_live_demo(out / "export", s, log)
    bench = run_bench_demo(out / "export", s, log)
    total = time.perf_counter() - t0
    log(f"demo finished in {total:.0f}s: held-out top-1 {top1:.1%}; artifacts in {out / 'export'}")
    return {"val_top1": top1, "seconds": total, "export_ok": report.ok, "live": live.to_dict(),
            "bench_failed": len(bench.failed)}


def run_live_demo(model: Path, s: DemoSettings, log):
    from .runtime import RunSettings, run_live

    frames = int(s.live_seconds * 30)
    log(f"[4/5] live: {model} on the synthetic camera at 30 fps for {frames} frames (--engine auto)")
    summary = run_live(model, "synthetic@30", RunSettings(max_frames=frames, smooth=4), log=log)
    log(summary.format())
    return summary


def run_bench_demo(model_dir: Path, s: DemoSettings, log):
    from .bench.measure import run_bench
    from .bench.report import format_table
    from .bench.rows import BenchSettings

    log("[5/5] engines side by side (batch 1; `c3d-rt bench` does more)")
    settings = BenchSettings(engines=DEMO_ENGINES, precisions=("fp32", "int8"), batches=(1,), warmup=2,
                             iters=s.bench_iters)
    report = run_bench(model_dir, settings, log=lambda _m: None)
    log(format_table(report))
    return report
