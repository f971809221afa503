""".pt2 formats on this machine: export time and batch-1 latency of torch-export and aoti beside eager and TorchScript.

    python benchmarks/pt2_study.py [CKPT] [--width 0.25] [--iters 20] [--export-only] [--out benchmarks/results]

Without CKPT it trains a C3D-BN of ``--width`` at full resolution (16x112x112) for one epoch on a small
synthetic set (the weights' values do not change the timings). Each format is exported on its own with
`c3d-rt export`'s code (write + equivalence proof; the seconds are the report's), then the bench times the
four engines at batch 1 with its one timer. Writes ``pt2-<device>-<date>.json`` with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from c3d_rt.bench.measure import run_bench
from c3d_rt.bench.report import device_slug
from c3d_rt.bench.rows import BenchSettings, bench_machine
from c3d_rt.core.config import ModelConfig, Preprocessing, TrainConfig
from c3d_rt.data.synth import SynthSpec, synthesize
from c3d_rt.export.job import export_checkpoint
from c3d_rt.training.fit import fit
from c3d_rt.training.recipes import RECIPES

FORMATS = ("torchscript", "torch-export", "aoti")
ENGINES = ("torch", "torchscript", "torch-export", "aoti")


def small_checkpoint(width: float, work: Path) -> Path:
    model_config = ModelConfig(width=width, crop_size=112, **RECIPES["scratch"]["model"])
    prep = Preprocessing.for_model(model_config)
    data = synthesize(work / "data", SynthSpec(clips_per_class=2, frames=20, width=prep.resize_wh[0],
                                              height=prep.resize_wh[1]), progress=False)
    recipe = {k: v for k, v in RECIPES["scratch"].items() if k != "model"}
    cfg = TrainConfig(**{**recipe, "epochs": 1, "batch_size": 4, "workers": 0})
    fit(data, work / "run", model_config=model_config, prep=prep, cfg=cfg, progress=False, log=lambda _m: None)
    return work / "run" / "last.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", nargs="?", type=Path)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--export-only", action="store_true", help="Time the exports only (no bench).")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pt2-study-") as tmp:
        work = Path(tmp)
        ckpt = args.ckpt or small_checkpoint(args.width, work)
        exports = {}
        for fmt in FORMATS:
            t0 = time.perf_counter()
            report = export_checkpoint(ckpt, work / "export", formats=[fmt], check_clips=8, log=lambda _m: None)
            result = report.artifacts[[a.format for a in report.artifacts].index(fmt)]
            exports[fmt] = {"status": result.status, "export_and_proof_s": result.seconds,
                            "wall_s": round(time.perf_counter() - t0, 1), "size_mb": result.size_mb,
                            "max_abs_err": result.max_abs_err, "reason": result.reason}
            print(f"export {fmt:<13} {result.status:<6} {result.seconds:7.1f} s  {result.size_mb:7.1f} MB",
                  file=sys.stderr)
        settings = BenchSettings(engines=ENGINES, precisions=("fp32",), devices=("cpu",), batches=(1,), warmup=3,
                                 iters=args.iters, clips=8, auto=False, peer=False)
        bench = None if args.export_only else run_bench(work / "export", settings, checkpoint=ckpt, log=lambda _m: None)
    rows = {r.engine: {"status": r.status, "p50_ms": r.p50_ms, "p95_ms": r.p95_ms, "top1_agreement": r.top1_agreement,
                       "max_abs_err": r.max_abs_err, "reason": r.reason} for r in (bench.rows if bench else [])}
    for engine, row in rows.items():
        print(f"b1 {engine:<13} {row['status']:<6} p50 {row['p50_ms'] or 0:8.2f} ms  p95 {row['p95_ms'] or 0:8.2f} ms",
              file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    size = "" if not args.ckpt else f"-{args.ckpt.parent.name}"
    path = args.out / f"pt2-{device_slug()}-{time.strftime('%Y-%m-%d')}{size}.json"
    payload = {"command": " ".join(["python", "benchmarks/pt2_study.py", *sys.argv[1:]]),
               "model": str(args.ckpt) if args.ckpt else f"C3D-BN width {args.width:g}, 16x112x112, 1 epoch on synth",
               "exports": exports, "batch1": rows, "iters": args.iters, "machine": bench_machine(),
               "load_average_1_5_15min": os.getloadavg()}  # a shared machine: other work slows every row
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
