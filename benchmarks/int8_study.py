"""int8 on the full-size C3D: NNCF's settings side by side, judged by the exporter's own rule, timed at batch 1.

    python benchmarks/int8_study.py CKPT [--data DATA] [--calib-clips 32] [--out benchmarks/results]

For each variant it quantises the fp32 ONNX export with NNCF into an OpenVINO int8 IR,
runs it on the held-out clips of the checkpoint's split (never used for calibration or
tuning), and reports top-1 agreement with eager fp32, accuracy, the largest logit error,
the fp32 margin (top-1 minus top-2 logit) of every clip whose top-1 flipped, and batch-1
p50 beside OpenVINO f32 and OpenVINO with its defaults on the same ONNX file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from c3d_rt.bench.report import device_slug
from c3d_rt.bench.rows import bench_machine
from c3d_rt.core.config import Preprocessing
from c3d_rt.engines import Plan, load_plan, time_calls
from c3d_rt.engines.equivalence import judge, run_batched
from c3d_rt.engines.pytorch import reference_engine
from c3d_rt.export.inputs import data_sets_for, real_clips
from c3d_rt.export.job import artifact_info, resolve_labels
from c3d_rt.export.onnx import write_onnx_fp32
from c3d_rt.export.openvino import write_openvino_int8
from c3d_rt.model.checkpoint import load_checkpoint

VARIANTS = {  # name -> write_openvino_int8 keyword arguments
    "nncf default, fc8 float (the exporter's)": {},
    "nncf default, every layer int8": {"ignore": "none"},
    "nncf default, fc6-fc8 float": {"ignore": "fc"},
    "full bias correction": {"fast_bias_correction": False},
    "accuracy control on training clips": {"accuracy_control": True},
}


def p50(engine, shape, iters: int) -> float:
    return float(np.median(time_calls(engine, np.zeros((1, *shape), np.float32), warmup=3, iters=iters)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, default=None, help="data folder (default: the checkpoint's split)")
    parser.add_argument("--calib-clips", type=int, default=32)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    ckpt = load_checkpoint(args.checkpoint)
    prep = ckpt.preprocessing or Preprocessing.for_model(ckpt.model_config)
    calib_set, held_out = data_sets_for(ckpt, prep, args.data)
    if held_out is None:
        sys.exit("the checkpoint names no data split here: pass --data DATA")
    calib, _ = real_clips(calib_set, args.calib_clips)
    clips, labels = real_clips(held_out, args.held_out)
    model = ckpt.build_model()
    reference = run_batched(reference_engine(ckpt, model), clips)
    margins = np.sort(reference, axis=1)[:, -1] - np.sort(reference, axis=1)[:, -2]
    info = artifact_info(ckpt, resolve_labels(ckpt, None), prep, "onnx", "fp32", 18)
    shape = ckpt.model_config.input_shape(1)[1:]
    rows, started = [], time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "c3d.onnx"
        write_onnx_fp32(model, info, onnx, 18)
        for name, options in (("openvino f32 (latency hint)", {}), ("openvino defaults", {"mode": "defaults"})):
            with load_plan(Plan("openvino", "fp32", "cpu", onnx, "onnx"), **options) as engine:
                rows.append({"variant": name, "p50_ms": round(p50(engine, shape, args.iters), 2),
                             "detail": engine.detail})
            print(rows[-1], flush=True)
        for name, options in VARIANTS.items():
            options = dict(options)
            if options.pop("accuracy_control", False):
                options["agreement_clips"] = calib  # tuned on training clips; judged below on held-out ones
            xml = Path(tmp) / "int8.xml"
            done = write_openvino_int8(onnx, info, xml, calib, **options)
            with load_plan(Plan("openvino", "int8", "cpu", xml, "openvino-int8")) as engine:
                got = run_batched(engine, clips)
                verdict = judge(reference, got, "int8", labels=labels, what="held-out clips")
                flipped = np.flatnonzero(reference.argmax(1) != got.argmax(1))
                rows.append({"variant": name, "p50_ms": round(p50(engine, shape, args.iters), 2),
                             "top1_agreement": verdict.top1_agreement, "accuracy": verdict.accuracy,
                             "fp32_accuracy": verdict.reference_accuracy, "max_abs_err": verdict.max_abs_err,
                             "median_abs_err": float(np.median(np.abs(got - reference))),
                             "flipped_fp32_margins": [round(float(margins[i]), 3) for i in flipped],
                             "passes_export_rule": verdict.ok, "reason": verdict.reason, "quantization": done})
            print({k: v for k, v in rows[-1].items() if k != "quantization"}, flush=True)
    result = {"checkpoint": str(args.checkpoint), "held_out_clips": len(clips), "calibration_clips": len(calib),
              "fp32_margin_percentiles": {q: round(float(np.percentile(margins, q)), 3) for q in (5, 25, 50)},
              "machine": bench_machine(), "started": started, "rows": rows}
    name = f"int8-study-{device_slug(result['machine'])}-{time.strftime('%Y-%m-%d')}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
