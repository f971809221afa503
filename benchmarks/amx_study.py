"""What closes the gap to the CPU's floor on a full-size C3D: runtimes, precisions, hints, streams, compilation.

    python benchmarks/amx_study.py --model EXPORT_DIR [--checkpoint CKPT] [--iters 6] [--out benchmarks/results]

Each variant is loaded once, warmed up and timed at batch 1 and 2 with ``time_calls`` (the bench's timer); the
figure beside it is its share of the floor: the clip's arithmetic (``ModelConfig.gflops``) at the machine's measured
matrix rate for that precision (``core.machine.matrix_rates``, as `bench` reports it). Variants: ONNX Runtime fp32;
OpenVINO f32 and bf16 under the latency and the throughput hint (streams as OpenVINO chooses); eager torch fp32 and
bf16 autocast; torch.compile (Inductor) of the bf16 model with and without freezing (weights folded as constants,
oneDNN's prepacked kernels); with ``--int8 DIR``, NNCF's int8 IR (calibrated on synthetic clips) on OpenVINO. Which ONNX Runtime execution providers this install has is recorded too.
Results: ``amx-study-<machine>-<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from results_file import machine_tag, write_results

from c3d_rt.core.machine import machine_info, matrix_rates
from c3d_rt.engines.base import Plan, time_calls
from c3d_rt.engines.registry import load_plan


def timed(engine, batches, iters) -> dict[int, float]:
    out = {}
    for b in batches:
        clips = np.random.default_rng(0).uniform(-100, 155, (b, *engine.input_shape)).astype(np.float32)
        out[b] = round(float(np.median(time_calls(engine, clips, warmup=2, iters=iters))) / b, 2)
    return out


def torch_variant(ckpt: Path, precision: str, compile_mode: str | None, batches, iters) -> dict[int, float]:
    import torch

    from c3d_rt.engines.pytorch import TorchEngine, checkpoint_info_of
    from c3d_rt.model.checkpoint import load_checkpoint

    c = load_checkpoint(ckpt)
    model = c.build_model().eval()
    if compile_mode is not None:
        import torch._inductor.config as inductor

        inductor.freezing = compile_mode == "freezing"
        model = torch.compile(model)
    engine = TorchEngine(Plan("torch", precision, "cpu", ckpt, "checkpoint"), checkpoint_info_of(c), model)
    return timed(engine, batches, iters)


def nncf_int8(onnx: Path, folder: Path) -> Path:
    """NNCF's int8 IR of ``onnx`` (the exporter's writer, 32 synthetic motion clips to calibrate): for timing."""
    from c3d_rt.artifacts.info import read_onnx_info
    from c3d_rt.data.synth import synthetic_clips
    from c3d_rt.export.openvino import write_openvino_int8

    info = read_onnx_info(onnx)
    xml = folder / "c3d.int8.openvino.xml"
    if not xml.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        int8_info = type(info)(**{**info.__dict__, "precision": "int8", "fmt": "openvino"})
        write_openvino_int8(onnx, int8_info, xml, synthetic_clips(32, info.preprocessing))
    return xml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="a folder with c3d.onnx (full size)")
    ap.add_argument("--checkpoint", type=Path, help="its checkpoint, for the torch variants")
    ap.add_argument("--int8", type=Path, help="also quantise with NNCF into this folder and time the int8 IR")
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--batches", default="1,2")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    onnx = args.model / "c3d.onnx"
    rows: list[dict] = []

    def add(name: str, precision: str, run) -> None:
        t0 = time.perf_counter()
        try:
            per_clip = run()
            rows.append({"variant": name, "precision": precision, "ms_per_clip": per_clip,
                         "load_and_time_s": round(time.perf_counter() - t0, 1)})
        except Exception as exc:  # a variant that cannot run here is a row that says why
            rows.append({"variant": name, "precision": precision, "error": f"{type(exc).__name__}: {exc}"[:200]})
        print(rows[-1], file=sys.stderr)

    add("ort", "fp32", lambda: timed(load_plan(Plan("ort", "fp32", "cpu", onnx, "onnx")), batches, args.iters))
    for hint in ("latency", "throughput"):
        for precision in ("fp32", "bf16"):
            add(f"openvino {hint} hint", precision, lambda h=hint, p=precision: timed(
                load_plan(Plan("openvino", p, "cpu", onnx, "onnx"), mode=h, cache=False), batches, args.iters))
    if args.int8:
        add("openvino NNCF int8, latency hint", "int8", lambda: timed(load_plan(Plan(
            "openvino", "int8", "cpu", nncf_int8(onnx, args.int8), "openvino-int8"), cache=False), batches, args.iters))
    if args.checkpoint:
        add("torch eager", "fp32", lambda: torch_variant(args.checkpoint, "fp32", None, batches, args.iters))
        add("torch eager autocast", "bf16", lambda: torch_variant(args.checkpoint, "bf16", None, batches, args.iters))
        add("torch.compile", "bf16", lambda: torch_variant(args.checkpoint, "bf16", "default", batches, args.iters))
        add("torch.compile + freezing", "bf16",
            lambda: torch_variant(args.checkpoint, "bf16", "freezing", batches, args.iters))
    import onnxruntime as ort

    from c3d_rt.core.config import ModelConfig

    rates = matrix_rates()
    gflops = ModelConfig().gflops
    for row in rows:
        rate = rates.get(row["precision"])
        if rate and "ms_per_clip" in row:
            floor_ms = gflops / (rate * 1e3) * 1e3
            row["floor_share"] = {b: round(floor_ms / ms, 3) for b, ms in row["ms_per_clip"].items()}
    info = machine_info()
    result = {"machine": info, "matrix_tflops": rates, "clip_gflops": round(gflops, 1), "rows": rows,
              "ort_providers": ort.get_available_providers(), "command": "python " + " ".join(sys.argv),
              "date": info["date"]}
    write_results(args.out, f"amx-study-{machine_tag(info)}-{info['date']}", result, markdown)


def markdown(r: dict) -> str:
    m, rates = r["machine"], r["matrix_tflops"]
    lines = [f"# Full-size C3D against the CPU's floor ({r['date']})", "",
             f"{m['cpu']}, {m['cores']} cores, flags `{m['cpu_flags']}`; torch {m.get('torch')}, onnxruntime "
             f"{m.get('onnxruntime')}, openvino {m.get('openvino')}. Command: `{r['command']}`.", "",
             f"A clip is {r['clip_gflops']} GFLOP; measured matrix rates (TFLOP/s, {rates.get('library')}): fp32 "
             f"{rates.get('fp32')}, bf16 {rates.get('bf16')}, int8 {rates.get('int8')}. ONNX Runtime providers here: "
             f"{', '.join(r['ort_providers'])}. Random input clips; one process, variants one after another.", "",
             "| variant | precision | ms a clip (batch: ms) | share of the floor |", "|---|---|---|---|"]
    for row in r["rows"]:
        if "error" in row:
            lines.append(f"| {row['variant']} | {row['precision']} | - | {row['error']} |")
            continue
        ms = ", ".join(f"{b}: {v}" for b, v in row["ms_per_clip"].items())
        share = ", ".join(f"{b}: {v:.0%}" for b, v in row.get("floor_share", {}).items())
        lines.append(f"| {row['variant']} | {row['precision']} | {ms} | {share} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
