"""`c3d-rt demo`: the main job on a fresh machine with no data and no GPU.

Synthesise the motion data set, train a narrow C3D-BN from scratch, report its
held-out accuracy, export it and print the equivalence table, run it live on the
synthetic camera (headless where there is no display) with its latency summary,
and print a short comparison of the engines that run here.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .core.config import ModelConfig, Preprocessing, TrainConfig
from .core.errors import C3DError
from .core.fileio import atomic_write_text, read_json
from .data.synth import SynthSpec, previous_spec, spec_dict, synthesize


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
DEMO_OUT, QUICK_OUT = Path("runs/demo"), Path("runs/demo-quick")  # --quick has its own: it never replaces the full one
DEMO_FILE = "demo.json"  # the settings a demo folder was written with
DEMO_PARTS = ("data", "run", "export")
STALE_OUTPUTS = ("best.confusion.png", "last.confusion.png")  # `c3d-rt eval`'s, beside the checkpoints it replaces


class DemoFolderError(C3DError):
    """A demo folder that holds another demo; the message says which, and what to do."""


def demo_model(s: DemoSettings) -> ModelConfig:
    from .training.recipes import RECIPES  # torch: the CLI reads this module's folders without it

    return ModelConfig(width=s.width, crop_size=s.crop_size, **RECIPES["scratch"]["model"])


def demo_spec(s: DemoSettings) -> SynthSpec:
    resize_wh = Preprocessing.for_model(demo_model(s)).resize_wh
    return SynthSpec(clips_per_class=s.clips_per_class, width=resize_wh[0], height=resize_wh[1])


def folder_settings(out: Path) -> dict | None:
    """The settings of the demo in ``out``: None where there is none, {} where its files do not say.

    ``demo.json``; for a demo written before it existed, the demo whose data set ``data/`` holds.
    """
    recorded = read_json(out / DEMO_FILE, {}).get("settings")
    if isinstance(recorded, dict):
        return recorded
    if not any((out / part).is_dir() and any((out / part).iterdir()) for part in DEMO_PARTS):
        return None
    spec = previous_spec(out / "data")
    known = [asdict(s) for s in (DemoSettings(), QUICK) if spec_dict(demo_spec(s)) == spec]
    return known[0] if known else {}


def describe_settings(settings: dict, other: dict) -> str:
    """A demo's settings in words; those of neither built-in demo, by how they differ from ``other``."""
    if settings == asdict(DemoSettings()):
        return "the full demo"
    if settings == asdict(QUICK):
        return "the quick demo (--quick)"
    if not settings:
        return f"files of a run that does not say its settings (no {DEMO_FILE})"
    differ = [f"{k} {v}" for k, v in settings.items() if other.get(k) != v]
    return f"a demo of other settings ({', '.join(differ) or 'unnamed'})"


def check_demo_folder(out: str | Path, s: DemoSettings, overwrite: bool) -> None:
    """Refuse to replace a demo of other settings (the full demo by --quick, or the reverse) unless ``overwrite``:
    a re-run of the same demo replaces its own files."""
    out = Path(out)
    old = folder_settings(out)
    if old is None or overwrite or old == asdict(s):
        return
    default = QUICK_OUT if s == QUICK else DEMO_OUT
    raise DemoFolderError(f"--out {out}: holds {describe_settings(old, asdict(s))}, and this is "
                          f"{describe_settings(asdict(s), old)}: running it would replace that demo's data, model and "
                          f"export. Pass another --out (this demo's default is {default}), or --overwrite to replace "
                          "it.")


def claim_demo_folder(out: Path, s: DemoSettings, log) -> None:
    """Record this demo's settings in ``out`` (before any work, so an interrupted demo is known too), and remove
    what described the model it replaces."""
    atomic_write_text(json.dumps({"settings": asdict(s)}, indent=1), out / DEMO_FILE)
    stale = [out / "run" / name for name in STALE_OUTPUTS if (out / "run" / name).is_file()]
    for path in stale:
        path.unlink()
    if stale:
        log(f"removed {', '.join(p.name for p in stale)} from {out / 'run'}: it described the model this demo replaces")


def run_demo(out: str | Path, quick: bool = False, log=print, overwrite: bool = False) -> dict:
    """Run the demo into ``out``; return the figures it printed. A demo of other settings there is refused unless
    ``overwrite``."""
    from .training.fit import fit  # torch: the CLI reads this module's folders without it
    from .training.recipes import RECIPES

    s = QUICK if quick else DemoSettings()
    out = Path(out)
    check_demo_folder(out, s, overwrite)
    model_config = demo_model(s)
    prep = Preprocessing.for_model(model_config)
    t0 = time.perf_counter()
    claim_demo_folder(out, s, log)
    log(f"[1/5] synthesising the motion data set into {out / 'data'}")
    synthesize(out / "data", demo_spec(s))
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

    # force: the export of this demo's previous run is its own to replace (check_demo_folder refused any other)
    report = export_checkpoint(out / "run" / "last.pt", out / "export", force=True, log=lambda _m: None)
    log(format_report_table(report))
    live = run_live_demo(out / "export", s, log)
    bench = run_bench_demo(out / "export", s, log, checkpoint=out / "run" / "last.pt")  # named: the eager rows
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


def run_bench_demo(model_dir: Path, s: DemoSettings, log, checkpoint: Path | None = None):
    from .bench.measure import run_bench
    from .bench.report import format_table
    from .bench.rows import BenchSettings

    log("[5/5] engines side by side (batch 1; `c3d-rt bench` does more)")
    settings = BenchSettings(engines=DEMO_ENGINES, precisions=("fp32", "int8"), batches=(1,), warmup=2,
                             iters=s.bench_iters)
    report = run_bench(model_dir, settings, checkpoint=checkpoint, log=lambda _m: None)
    log(format_table(report))
    return report
