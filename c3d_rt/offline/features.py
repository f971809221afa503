"""`c3d-rt features`: C3D activations (fc6, fc7 after ReLU, or logits) of every window of recorded videos.

Per video ``DIR/<relative path>.npy`` float32 and ``DIR/<relative path>.json`` (the model's identity, the layer,
each row's frame range). ``pool="mean"`` keeps one vector a video. ``segments=N`` is the anomaly-detection
protocol of Sultani et al. 2018 (UCF-Crime): one feature per 16-frame clip (stride 16), each L2-normalised,
averaged over N equal temporal segments (the segment bounds of their ``Save_C3DFeatures_32Segments.m``, whose last
segment leaves out the last clip), each average L2-normalised again: an ``(N, dims)`` array a video.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.fileio import atomic_path
from ..engines.base import Engine
from . import outputs
from .run import OfflineRun, VideoResult, run_windows
from .sources import VideoItem

MARKER = "features.json"
LAYER_NOTE = {"fc6": "fc6 after its ReLU (the C3D authors' extractor and the anomaly-detection papers use these)",
              "fc7": "fc7 after its ReLU", "logits": "fc8, the logits (before softmax)"}


@dataclass
class FeatureSettings:
    layer: str = "fc6"
    stride: int = 8
    pool: str = "none"  # none: a row a window; mean: one vector a video
    segments: int | None = None  # Sultani et al.'s protocol: N L2-normalised segment features
    fps: float | None = None

    def record(self, engine: Engine) -> dict:
        prep = engine.info.preprocessing
        return {**asdict(self), "clip_len": prep.clip_len, "frame_interval": prep.frame_interval,
                "resize_wh": list(prep.resize_wh), "crop_size": prep.crop_size}


def pool_features(rows: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """The array a video's file holds: the windows' rows, their mean, or the segment protocol's N rows."""
    if settings.segments:
        return sultani_segments(rows, settings.segments)
    if settings.pool == "mean":
        return rows.mean(axis=0)
    return rows


def sultani_segments(clips: np.ndarray, n: int = 32) -> np.ndarray:
    """(n, dims): each clip's feature L2-normalised, averaged within n equal segments, each average L2-normalised.

    The bounds are MATLAB's ``round(linspace(1, clips, n + 1))``, as in the authors' script: a segment with no clip
    of its own takes the clip at its start."""
    unit = clips / np.maximum(np.linalg.norm(clips, axis=1, keepdims=True), 1e-12)
    out = np.empty((n, unit.shape[1]), np.float32)
    for i, (start, end) in enumerate(segment_bounds(len(unit), n)):
        mean = unit[start : end + 1].mean(axis=0)
        out[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out


def segment_bounds(clips: int, n: int) -> list[tuple[int, int]]:
    """First and last clip (0-based, inclusive) of each of ``n`` segments: MATLAB's ``round(linspace(1, clips,
    n + 1))`` (halves rounded up), a segment ending one before the next starts; one without a clip of its own takes
    the clip at its start."""
    starts = np.floor(np.linspace(1, clips, n + 1) + 0.5).astype(int) - 1
    return [(int(starts[i]), int(max(starts[i], starts[i + 1] - 1))) for i in range(n)]


def extract_features(engine: Engine, items: list[VideoItem], out_dir: Path, settings: FeatureSettings, *, batch: int,
                     decoders: int = 1, overwrite: bool = False, progress: bool = True,
                     log: Callable[[str], None] = print) -> OfflineRun:
    model = outputs.model_identity(engine)
    chosen = settings.record(engine)
    records, todo = outputs.start_run(items, out_dir, model, chosen, overwrite=overwrite, marker=MARKER,
                                      companions=(".npy",), log=log, note=LAYER_NOTE[settings.layer])
    run = OfflineRun(out_dir, records, skipped=len(items) - len(todo))

    def on_video(result: VideoResult) -> None:
        record = _record(result, model, chosen, settings)
        if record["status"] == "ok":
            array = pool_features(result.outputs[settings.layer].astype(np.float32), settings)
            record["shape"] = list(array.shape)
            record["rows"] = _rows(settings, len(result.first))
            with atomic_path(outputs.record_path(out_dir, result.item, ".npy")) as tmp, open(tmp, "wb") as f:
                np.save(f, array.astype(np.float32))
        outputs.write_record(outputs.record_path(out_dir, result.item), record)
        run.records[result.item.key] = record
        run.done += 1
        if not progress:
            log(f"  {result.item.key}: " + (f"{record['shape']}" if record["status"] == "ok" else
                                            f"FAILED ({record['reason']})"))

    def compute(clips: np.ndarray) -> dict[str, np.ndarray]:
        return engine.layers(clips, [settings.layer])

    try:
        run.stats = run_windows(todo, engine.info.preprocessing, compute, on_video, stride=settings.stride,
                                batch=batch, decoders=decoders, target_fps=settings.fps, progress=progress,
                                desc="features")
    except KeyboardInterrupt:
        run.interrupted = True
    finally:  # the table holds every finished video, whatever ended the run
        _summary(run)
    return run


def _record(result: VideoResult, model: dict, chosen: dict, settings: FeatureSettings) -> dict:
    stats = result.stats
    fps = stats.time_fps
    record = {"video": str(result.item.path), "name": result.item.key, "status": "failed" if stats.error else "ok",
              "reason": stats.error, "frames": stats.frames, "fps": stats.fps or None, "model": model,
              "settings": chosen, "layer": settings.layer, "note": LAYER_NOTE[settings.layer]}
    if settings.segments and not stats.error and len(result.first) < 1:
        record.update(status="failed", reason="no clip")
    record["windows"] = [{"first_frame": int(a), "last_frame": int(b), "start_s": round(a / fps, 3),
                          "end_s": round((b + 1) / fps, 3)} for a, b in zip(result.first, result.last)]
    return record


def _rows(settings: FeatureSettings, windows: int) -> str | list[list[int]]:
    """What the .npy's rows are, when they are not the windows listed in ``windows``."""
    if settings.segments:  # each segment's first and last window (0-based, inclusive)
        return [list(b) for b in segment_bounds(windows, settings.segments)]
    return "one row: the mean of all windows" if settings.pool == "mean" else "one row a window"


def _summary(run: OfflineRun) -> None:
    rows = [[r["video"], r["name"], len(r.get("windows", [])), "x".join(map(str, r.get("shape", []))), r["status"],
             r["reason"]] for r in run.records.values() if r]
    outputs.write_csv(run.out_dir / "summary.csv", ["video", "name", "windows", "shape", "status", "reason"], rows)
