"""The training input pipeline, measured: clips/s from raw video decode and from the frame cache.

    python benchmarks/input_pipeline.py [--videos 8] [--seconds 3] [--workers 0,1,2] [--out benchmarks/results]

Writes UCF101-like videos (320x240 XVID, 25 fps, 7 s of camera motion over a texture), builds the
frame cache, then times the training DataLoader (random start, crop, no flip; batch 8) over both,
per worker count, at crop 112 (frames 171x128, C3D's input) and crop 64 (98x73), with the
consecutive-frame sampling and the seed's every-4th-frame sampling. Clips are uint8, as the
trainer loads them (and, for the cache, float32 as well). It also times and sizes the
alternative store (JPEG frame folders, as the seed writes them) and states JPEG's error.
Results: ``input-pipeline-<machine>-<date>.json`` and ``.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from results_file import machine_tag, write_results
from torch.utils.data import DataLoader

from c3d_rt.core.config import ModelConfig, Preprocessing
from c3d_rt.core.machine import machine_info
from c3d_rt.core.motion import MOTIONS, view_texture
from c3d_rt.core.transforms import preprocess_clip, random_crop_origin
from c3d_rt.data.cache import cache_videos
from c3d_rt.data.datasets import VideoClipDataset
from c3d_rt.data.splits import load_data_split
from c3d_rt.data.synth import SynthSpec, camera_frames, write_video

SIZE, FRAMES = (320, 240), 175  # UCF101's frame size; 7 s at 25 fps


def make_videos(root: Path, n: int) -> Path:
    spec = SynthSpec(clips_per_class=1, frames=FRAMES, width=SIZE[0], height=SIZE[1])
    classes = list(MOTIONS)[1:5]
    for i in range(n):
        cls = classes[i % len(classes)]
        rng = np.random.default_rng(i)
        frames = camera_frames(view_texture(rng, *SIZE), MOTIONS[cls], spec, rng)
        (root / cls).mkdir(parents=True, exist_ok=True)
        write_video(root / cls / f"v_{cls}_g{i:02d}_c01.avi", frames, fourcc="XVID")
    return root


def clips_per_s(root: Path, prep: Preprocessing, workers: int, use_cache: bool, seconds: float,
                uint8: bool = True) -> float:
    split = load_data_split(root, val_fraction=0.0)
    ds = VideoClipDataset(root, split.train, split.classes, prep, train=True, hflip=False, clips_per_video=8,
                          use_cache=use_cache, uint8=uint8)
    assert bool(ds.cached) == use_cache
    loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    n, start = 0, None
    while True:
        for clips, _ in loader:
            if start is None:  # the first batch starts the workers: not timed
                start = time.perf_counter()
                continue
            n += len(clips)
            if time.perf_counter() - start >= seconds:
                return n / (time.perf_counter() - start)


def jpeg_store(root: Path, prep: Preprocessing, seconds: float) -> dict:
    """The seed's store: one JPEG (OpenCV's default quality 95) per resized frame. Size, error, clip read rate."""
    entry = sorted((root / ".c3d_rt_cache").glob("*/*/*.npy"))[0]
    frames = np.load(entry)
    encoded = [cv2.imencode(".jpg", f)[1] for f in frames]
    decoded = np.stack([cv2.imdecode(e, cv2.IMREAD_COLOR) for e in encoded])
    err = np.abs(decoded.astype(np.int16) - frames.astype(np.int16))
    mse = float((err.astype(np.float64) ** 2).mean())
    rng = np.random.default_rng(0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        s = int(rng.integers(0, len(frames) - 16))
        clip = [cv2.imdecode(encoded[i], cv2.IMREAD_COLOR) for i in range(s, s + 16)]
        preprocess_clip(clip, prep, crop_origin=random_crop_origin(prep, rng))
        n += 1
    return {"bytes_per_frame": float(np.mean([len(e) for e in encoded])), "npy_bytes_per_frame": frames[0].nbytes,
            "max_abs_error": int(err.max()), "mean_abs_error": float(err.mean()),
            "psnr_db": float(10 * np.log10(255**2 / mse)) if mse else None,
            "clips_per_s_1_thread": n / (time.perf_counter() - start)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--name", default=None, help="result file stem (default: input-pipeline-<cpu>-<date>)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # per core: one decode thread per DataLoader process
    workers = [int(w) for w in args.workers.split(",")]
    configs = [(112, 1), (112, 4), (64, 1)]  # (crop, frame_interval)
    rows, cache_build = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_videos(Path(tmp) / "data", args.videos)
        for crop in sorted({c for c, _ in configs}):
            prep = Preprocessing.for_model(ModelConfig(crop_size=crop))
            start = time.perf_counter()
            report = cache_videos(root, prep, workers=1, progress=False)
            cache_build[f"{prep.resize_wh[0]}x{prep.resize_wh[1]}"] = {
                "videos": report.cached, "videos_per_s_1_thread": report.cached / (time.perf_counter() - start)}
        for crop, interval in configs:
            prep = Preprocessing.for_model(ModelConfig(crop_size=crop), frame_interval=interval)
            for w in workers:
                raw = clips_per_s(root, prep, w, False, args.seconds)
                cached = clips_per_s(root, prep, w, True, args.seconds)
                as_float = clips_per_s(root, prep, w, True, args.seconds, uint8=False)
                rows.append({"crop": crop, "resize_wh": list(prep.resize_wh), "frame_interval": interval,
                             "workers": w, "raw_clips_per_s": raw, "cache_clips_per_s": cached,
                             "speedup": cached / raw, "cache_float32_clips_per_s": as_float})
                print(f"crop {crop} interval {interval} workers {w}: raw {raw:.1f} clips/s, cache {cached:.1f} "
                      f"clips/s ({cached / raw:.1f}x)", file=sys.stderr)
        jpeg = jpeg_store(root, Preprocessing(), args.seconds)
    info = machine_info()
    info["opencv"] = cv2.__version__
    result = {"machine": info, "videos": {"count": args.videos, "size": list(SIZE), "frames": FRAMES, "codec": "XVID",
                                          "fps": 25},
              "loader": {"batch_size": 8, "torch_threads": 1, "opencv_threads": 1, "train_augmentation": "random "
                         "start and crop, no flip", "clips": "uint8 (3, 16, c, c), as the trainer loads them; the "
                         "last column: float32 clips (mean subtracted in the loader)"},
              "rows": rows, "cache_build": cache_build, "jpeg_alternative_171x128": jpeg,
              "command": "python " + " ".join(sys.argv)}
    write_results(args.out, args.name or f"input-pipeline-{machine_tag(info)}-{info['date']}", result, markdown)


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# Input pipeline: raw decode vs frame cache ({m['date']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, flags `{m['cpu_flags']}`; torch {m['torch']}, OpenCV "
             f"{m['opencv']}, python {m['python']}. Command: `{r['command']}`.", "",
             f"{r['videos']['count']} videos of {r['videos']['size'][0]}x{r['videos']['size'][1]} {r['videos']['codec']}, "
             f"{r['videos']['frames']} frames at 25 fps; DataLoader batch 8, random start and crop; one torch and "
             "one OpenCV thread per process (workers 0 = one core does all).", "",
             "Clips leave the loader as uint8 (the trainer subtracts the mean on its device); the last column sends "
             "float32 clips instead (4x the bytes between processes).", "",
             "| crop (frames) | frame interval | workers | raw decode clips/s | cache clips/s | cache / raw | "
             "cache, float32 clips/s |", "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['crop']} ({row['resize_wh'][0]}x{row['resize_wh'][1]}) | {row['frame_interval']} | "
                     f"{row['workers']} | {row['raw_clips_per_s']:.1f} | {row['cache_clips_per_s']:.1f} | "
                     f"{row['speedup']:.1f}x | {row['cache_float32_clips_per_s']:.1f} |")
    j = r["jpeg_alternative_171x128"]
    lines += ["", "Building the cache (one thread): " + ", ".join(
        f"{k}: {v['videos_per_s_1_thread']:.2f} videos/s" for k, v in r["cache_build"].items()), "",
        f"Alternative store, JPEG frame folders at 171x128 (OpenCV quality 95), one thread: "
        f"{j['clips_per_s_1_thread']:.1f} clips/s (decode 16 JPEGs + crop), {j['bytes_per_frame'] / 1e3:.1f} kB a frame "
        f"against {j['npy_bytes_per_frame'] / 1e3:.1f} kB for .npy; lossy: max |error| {j['max_abs_error']} grey "
        f"levels, mean {j['mean_abs_error']:.2f}, PSNR {j['psnr_db']:.1f} dB.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
