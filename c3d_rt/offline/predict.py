"""`c3d-rt predict`: every window of recorded videos classified, with segments and a video-level label per video.

Per video ``DIR/<relative path>.json`` (the model's identity, each window's frames, times and top-k, the
video-level prediction and the segments), optionally ``DIR/<relative path>.png`` (the timeline); over all
videos ``summary.csv`` and ``segments.csv``, and where the videos sit in class folders ``accuracy.json`` and
``confusion.png``: the C3D paper's video accuracy (the mean of window probabilities), beside `eval`'s clip accuracy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.transforms import softmax
from ..engines.base import Engine
from . import outputs
from .accuracy import class_of, video_accuracy
from .run import OfflineRun, VideoResult, run_windows
from .segments import clip_indices, find_segments, smooth, video_level
from .sources import VideoItem

MARKER = "predict.json"


@dataclass
class PredictSettings:
    """What changes the numbers of a video's record (a rerun with other settings does the video again)."""

    stride: int = 8
    clips: int | None = None  # video level from N evenly spaced windows instead of all
    smooth: int = 3
    threshold: float = 0.5
    min_gap: float = 1.0  # seconds
    topk: int = 5
    fps: float | None = None

    def record(self, engine: Engine) -> dict:
        prep = engine.info.preprocessing
        return {**asdict(self), "clip_len": prep.clip_len, "frame_interval": prep.frame_interval}


@dataclass
class PredictRun(OfflineRun):
    accuracy: dict | None = None  # video-level accuracy over the videos in class folders


def predict_videos(engine: Engine, items: list[VideoItem], out_dir: Path, settings: PredictSettings, *, batch: int,
                   decoders: int = 1, timeline: bool = False, overwrite: bool = False, progress: bool = True,
                   log: Callable[[str], None] = print) -> PredictRun:
    """Classify every window of ``items`` with ``engine``; write each video's record as soon as it is done."""
    model = outputs.model_identity(engine)
    chosen = settings.record(engine)
    records, todo = outputs.start_run(items, out_dir, model, chosen, overwrite=overwrite, marker=MARKER,
                                      companions=(".png",) if timeline else (), log=log)
    run = PredictRun(out_dir, records, skipped=len(items) - len(todo))
    labels, prep = engine.labels, engine.info.preprocessing

    def on_video(result: VideoResult) -> None:
        probs = window_probs(result, settings)
        record = video_record(result, probs, engine, model, settings, chosen)
        if timeline and record["status"] == "ok":
            _timeline(result, record, probs[1], labels, outputs.record_path(out_dir, result.item, ".png"))
        outputs.write_record(outputs.record_path(out_dir, result.item), record)
        run.records[result.item.key] = record
        run.done += 1
        if not progress:
            log(_video_line(record))

    try:
        run.stats = run_windows(todo, prep, lambda clips: {"logits": engine(clips)}, on_video, stride=settings.stride,
                                batch=batch, decoders=decoders, target_fps=settings.fps, progress=progress)
    except KeyboardInterrupt:
        run.interrupted = True
    finally:  # the tables hold every finished video, whatever ended the run
        write_tables(run, items, labels)
    return run


def window_probs(result: VideoResult, settings: PredictSettings) -> tuple[np.ndarray, np.ndarray] | None:
    """(each window's softmax probabilities, the same ``--smooth``ed), once a video; None for a failed video."""
    if result.stats.error:
        return None
    probs = softmax(result.outputs["logits"].astype(np.float64))
    return probs, smooth(probs, settings.smooth)


def video_record(result: VideoResult, probs: tuple[np.ndarray, np.ndarray] | None, engine: Engine, model: dict,
                 settings: PredictSettings, chosen: dict) -> dict:
    """A video's record; ``probs`` is :func:`window_probs`'s."""
    stats, item, labels = result.stats, result.item, engine.labels
    fps = stats.time_fps
    record = {"video": str(item.path), "name": item.key, "status": "failed" if stats.error else "ok",
              "reason": stats.error, "frames": stats.frames, "claimed_frames": stats.claimed_frames,
              "fps": stats.fps or None,
              "duration_s": round(stats.frames / fps, 3), "width": stats.width, "height": stats.height,
              "model": model, "settings": chosen, "notes": list(stats.notes)}
    if not stats.fps:
        record["notes"].append(f"the container states no frame rate: times assume {fps:g} frames a second")
    if probs is None:
        return record
    probs, smoothed = probs
    k = max(1, min(settings.topk, len(labels)))
    overall = video_level(probs, settings.clips)
    top = np.argsort(-overall, kind="stable")[:k]
    record["video_level"] = {"label": labels[top[0]], "score": round(float(overall[top[0]]), 6),
                             "topk": [{"label": labels[i], "prob": round(float(overall[i]), 6)} for i in top],
                             "windows": len(clip_indices(len(probs), settings.clips)) if settings.clips else len(probs),
                             "protocol": "mean of the windows' softmax probabilities",
                             "probs": [round(float(p), 6) for p in overall]}
    segments = find_segments(smoothed, result.first, result.last, fps, labels, settings.threshold, settings.min_gap,
                             stats.frames)
    record["segments"] = [s.to_dict() for s in segments]
    record["windows"] = [_window(probs[i], int(result.first[i]), int(result.last[i]), fps, labels, k)
                         for i in range(len(probs))]
    return record


def _window(probs: np.ndarray, first: int, last: int, fps: float, labels: list[str], k: int) -> dict:
    top = np.argsort(-probs, kind="stable")[:k]
    return {"first_frame": first, "last_frame": last, "start_s": round(first / fps, 3),
            "end_s": round((last + 1) / fps, 3),
            "topk": [{"label": labels[i], "prob": round(float(probs[i]), 6)} for i in top]}


def _timeline(result: VideoResult, record: dict, smoothed: np.ndarray, labels: list[str], png: Path) -> None:
    from ..core.figures import save_timeline_png

    centres = (result.first + result.last + 1) / 2 / result.stats.time_fps
    spans = [(s["label"], s["start_s"], s["end_s"]) for s in record["segments"]]
    save_timeline_png(png, centres, smoothed, labels, spans, title=result.item.key)


def _video_line(record: dict) -> str:
    if record["status"] != "ok":
        return f"  {record['name']}: FAILED ({record['reason']})"
    top = record["video_level"]
    return (f"  {record['name']}: {top['label']} {top['score']:.2f} ({len(record['windows'])} windows, "
            f"{len(record['segments'])} segments)")


SUMMARY_HEADER = ["video", "name", "frames", "fps", "label", "score", "top5", "segments", "status", "reason"]
SEGMENTS_HEADER = ["video", "name", "label", "start_s", "end_s", "start_frame", "end_frame", "mean_score",
                   "peak_score"]


def write_tables(run: PredictRun, items: list[VideoItem], labels: list[str]) -> None:
    """summary.csv, segments.csv and (videos in class folders) the video-level accuracy, from every finished record."""
    done = [r for r in run.records.values() if r]
    rows, segment_rows = [], []
    for r in done:
        top = r.get("video_level") or {}
        top5 = "|".join(f"{t['label']}:{t['prob']:.4f}" for t in top.get("topk", [])[:5])
        rows.append([r["video"], r["name"], r["frames"], r["fps"] or "", top.get("label", ""), top.get("score", ""),
                     top5, len(r.get("segments", [])), r["status"], r["reason"]])
        segment_rows += [[r["video"], r["name"], s["label"], s["start_s"], s["end_s"], s["start_frame"],
                          s["end_frame"], round(s["mean_score"], 6), round(s["peak_score"], 6)]
                         for s in r.get("segments", [])]
    outputs.write_csv(run.out_dir / "summary.csv", SUMMARY_HEADER, rows)
    outputs.write_csv(run.out_dir / "segments.csv", SEGMENTS_HEADER, segment_rows)
    run.accuracy = _accuracy(run, items, labels)


def _accuracy(run: PredictRun, items: list[VideoItem], labels: list[str]) -> dict | None:
    """Video-level top-1/top-5 and a confusion matrix over the videos whose folder names their class."""
    truth, probs = [], []
    for item in items:
        record, cls = run.records.get(item.key), class_of(item.rel, labels)
        if cls is None or not record or record["status"] != "ok":
            continue
        truth.append(cls)
        probs.append(record["video_level"]["probs"])
    if not truth:  # no class folders this run: an earlier run's figures would describe other videos
        for name in ("accuracy.json", "confusion.png"):
            (run.out_dir / name).unlink(missing_ok=True)
        return None
    result = video_accuracy(truth, np.array(probs), labels)
    result["videos_without_class"] = sum(1 for item in items if class_of(item.rel, labels) is None)
    outputs.write_record(run.out_dir / "accuracy.json", result)
    from ..core.figures import save_confusion_png

    save_confusion_png(result["confusion"], labels, run.out_dir / "confusion.png",
                       title=f"video-level top-1 {result['top1']:.1%} over {result['videos']} videos")
    return result
