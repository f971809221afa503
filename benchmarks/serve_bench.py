"""How many 30 fps cameras one `c3d-rt serve` engine holds: N synthetic streams through the server's own
pipeline (per-stream capture threads and rings, the cross-stream batcher, post-processing), N rising.

For each N it records capture drops, windows dropped, glass-to-label percentiles over every stream, the
batch-size histogram and the clips/s served, as a ratio to the same engine's best batched throughput
measured in the same run (``time_calls`` at batch 1..max-batch). "Held" means zero capture drops, zero
dropped windows and p99 glass-to-label within ``--p99-ms``. The HTTP layer is not on this path (it only
reads the streams' state); the synthetic camera renders every frame, as a decoder would.

    python benchmarks/serve_bench.py --model export --streams 1,2,4,8 --stride 4 \
        --json benchmarks/results/serve-NAME.json --markdown benchmarks/results/serve-NAME.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c3d_rt.core.machine import machine_info  # noqa: E402
from c3d_rt.engines import engine_options, open_engine, time_calls  # noqa: E402
from c3d_rt.runtime.stats import LatencyHistogram  # noqa: E402
from c3d_rt.serve.batcher import Batcher  # noqa: E402
from c3d_rt.serve.streams import Stream, StreamSpec  # noqa: E402


def best_batched_throughput(engine, max_batch: int, iters: int) -> dict:
    """clips/s of the engine alone at batch 1, 2, 4, ... max_batch (median of ``iters`` calls)."""
    sizes = sorted({1, max_batch, *(2 ** i for i in range(1, 12) if 2 ** i < max_batch)})
    rows = {}
    for b in sizes:
        clips = np.random.default_rng(0).standard_normal((b, *engine.input_shape)).astype(np.float32)
        ms = float(np.median(time_calls(engine, clips, warmup=2, iters=iters)))
        rows[b] = {"p50_ms": round(ms, 3), "clips_per_s": round(b / ms * 1e3, 2)}
    best = max(rows, key=lambda b: rows[b]["clips_per_s"])
    return {"per_batch": rows, "best_batch": best, "best_clips_per_s": rows[best]["clips_per_s"]}


def merged(streams: list[Stream], stage: str) -> LatencyHistogram:
    """One histogram of ``stage`` over every stream."""
    total = LatencyHistogram()
    for s in streams:
        total.merge(s.latency[stage])
    return total


def _rounded(summary: dict) -> dict:
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in summary.items()}


def run_streams(engine, n: int, args) -> dict:
    streams: list[Stream] = []
    sizes: Counter = Counter()
    batcher = Batcher(engine, lambda: streams, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                      on_batch=lambda size, _s: sizes.update([size]))
    for i in range(n):
        spec = StreamSpec(f"s{i}", f"synthetic@{args.fps:g}", stride=args.stride)
        streams.append(Stream(spec, engine.info.preprocessing, engine.labels, on_due=batcher.notify,
                              on_prediction=lambda *_: None, log=lambda _m: None))
    batcher.start()
    for s in streams:
        s.start()
    deadline = time.perf_counter() + 60
    while any(s.counters.frames == 0 for s in streams) and time.perf_counter() < deadline:
        time.sleep(0.1)  # the first synthetic camera imports its renderer
    time.sleep(args.warmup_s)
    start = {s.name: s.totals() for s in streams}
    for s in streams:
        s.latency = {stage: LatencyHistogram() for stage in s.latency}  # only the measured span counts
    sizes.clear()
    process = psutil.Process()
    cpu0, t0 = process.cpu_times(), time.perf_counter()
    time.sleep(args.seconds)
    elapsed, cpu1 = time.perf_counter() - t0, process.cpu_times()
    end = {s.name: s.totals() for s in streams}
    g2l, inference = merged(streams, "glass_to_label"), merged(streams, "inference")
    for s in streams:
        s.close(timeout=1.0)
    batcher.stop()
    if batcher.error is not None:
        raise batcher.error
    delta = lambda field: sum(getattr(end[k], field) - getattr(start[k], field) for k in end)  # noqa: E731
    predictions = delta("predictions")
    return {"streams": n, "seconds": round(elapsed, 2), "frames": delta("frames"),
            "frames_dropped": delta("frames_dropped"), "windows_due": delta("windows_due"),
            "windows_dropped": delta("windows_dropped"), "predictions": predictions,
            "clips_per_s": round(predictions / elapsed, 2),
            "cpu_cores_busy": round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) / elapsed, 2),
            "demanded_clips_per_s": round(n * args.fps / args.stride, 2),
            "glass_to_label_ms": _rounded(g2l.summary()), "batch_inference_ms": _rounded(inference.summary()),
            "batch_sizes": dict(sorted(sizes.items()))}


def _width(model_config) -> object:
    return model_config.get("width", "?") if isinstance(model_config, dict) else getattr(model_config, "width", "?")


def held(row: dict, p99_ms: float) -> bool:
    p99 = row["glass_to_label_ms"]["p99_ms"]
    return row["frames_dropped"] == 0 and row["windows_dropped"] == 0 and p99 is not None and p99 <= p99_ms


def markdown(report: dict) -> str:
    m, e = report["machine"], report["engine"]
    lines = [f"# serve: N synthetic {report['settings']['fps']:g} fps streams, one {e['key']} engine",
             "", f"{report['date']}; {m.get('cpu')} ({m.get('cores')} cores; flags {m.get('cpu_flags')}); "
             f"{m.get('gpu') or 'no GPU'}; model {e['model']} ({e['width']}); stride {report['settings']['stride']}, "
             f"max batch {report['settings']['max_batch']}, max wait {report['settings']['max_wait_ms']} ms.",
             "", f"Engine alone: best {report['engine_alone']['best_clips_per_s']} clips/s at batch "
             f"{report['engine_alone']['best_batch']} ({json.dumps(report['engine_alone']['per_batch'])}).",
             "", f"Largest N held (0 capture drops, 0 dropped windows, p99 glass-to-label <= "
             f"{report['settings']['p99_ms']:g} ms): **{report['largest_held']}**", "",
             "| N | clips/s served | demanded | ratio to engine best | capture drops | windows dropped | "
             "batch inference p50 ms | g2l p50 ms | g2l p99 ms | batch sizes | CPU cores busy | held |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        g = r["glass_to_label_ms"]
        lines.append(f"| {r['streams']} | {r['clips_per_s']} | {r['demanded_clips_per_s']} | "
                     f"{r['ratio_to_engine_best']} | {r['frames_dropped']} | {r['windows_dropped']} | "
                     f"{r['batch_inference_ms']['p50_ms']} | {g['p50_ms']} | "
                     f"{g['p99_ms']} | {r['batch_sizes']} | {r['cpu_cores_busy']} | {'yes' if r['held'] else 'no'} |")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("export"))
    p.add_argument("--engine", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--streams", default="1,2,4,8,16", help="comma-separated stream counts")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--p99-ms", type=float, default=250.0, help="the glass-to-label bound for 'held'")
    p.add_argument("--iters", type=int, default=10, help="timed calls per batch size for the engine alone")
    p.add_argument("--stop-after-fail", type=int, default=1, help="stop after this many N in a row not held")
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    args = p.parse_args()

    options = engine_options(args.engine, batch=args.max_batch)  # as serve: auto ranks at the batch it runs
    engine = open_engine(args.model, args.engine, args.precision, args.device, log=lambda m: print(m, file=sys.stderr),
                         live=True, **options)
    engine.warmup(batch=args.max_batch)
    alone = best_batched_throughput(engine, args.max_batch, args.iters)
    print(f"engine alone: {alone}", file=sys.stderr)
    rows, failed = [], 0
    for n in [int(x) for x in args.streams.split(",")]:
        row = run_streams(engine, n, args)
        row["ratio_to_engine_best"] = round(row["clips_per_s"] / alone["best_clips_per_s"], 3)
        row["held"] = held(row, args.p99_ms)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
        failed = 0 if row["held"] else failed + 1
        if failed >= args.stop_after_fail:
            break
    info = engine.info
    report = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info(),
              "engine": {"key": engine.key, "model": str(engine.path), "width": f"width {_width(info.model_config)}"},
              "settings": {k: v for k, v in vars(args).items() if k not in ("json", "markdown", "model")},
              "engine_alone": alone, "rows": rows,
              "largest_held": max((r["streams"] for r in rows if r["held"]), default=0),
              "command": " ".join(["python", *sys.argv])}
    engine.close()
    text = markdown(report)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
