"""The offline loop: windows from the decoder threads, in batches through the engine, back per video.

Nothing is skipped: every window the decoders release is run (a slow engine only makes the decoders wait on the
bounded queue). A video is handed to ``on_video`` once its decoder has finished it and every one of its windows has
been through the engine; batches mix videos, so a short video never runs a batch of one on its own.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..core.config import Preprocessing
from ..core.console import bar_disabled
from ..core.transforms import subtract_mean
from .sources import VideoItem
from .windows import VideoStats, Window, WindowFeed

Compute = Callable[[np.ndarray], dict[str, np.ndarray]]  # float32 clips (B, 3, T, c, c) -> name -> (B, ...)


@dataclass
class VideoResult:
    """Every window of one video with what the engine computed for it."""

    index: int
    item: VideoItem
    first: np.ndarray  # (N,) source frame of each window's first frame
    last: np.ndarray  # (N,) and of its last
    outputs: dict[str, np.ndarray]  # name -> (N, ...) float32
    stats: VideoStats


@dataclass
class RunStats:
    """Where the time of a run went (seconds), for the closing line and the benchmark."""

    videos: int = 0
    windows: int = 0
    frames: int = 0
    batches: int = 0
    inference_s: float = 0.0  # in the engine
    waiting_s: float = 0.0  # the engine idle, waiting for the decoders
    decode_s: float = 0.0  # in the decoder threads (overlaps inference)
    wall_s: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)

    def rates(self) -> str:
        wall = max(self.wall_s, 1e-9)
        return (f"{self.windows / wall:.1f} clips/s, {self.frames / wall:.0f} frames/s; engine busy "
                f"{self.inference_s / wall:.0%} of the time, waited {self.waiting_s:.1f} s for decoding "
                f"(decoding took {self.decode_s:.1f} s in its own threads)")


@dataclass
class OfflineRun:
    """What a `predict` or `features` run did: each video's record, in the order of the items (``{}`` for a video
    not finished), and how many it computed and found done before."""

    out_dir: Path
    records: dict[str, dict] = field(default_factory=dict)
    done: int = 0  # videos computed in this run
    skipped: int = 0  # videos whose record was already there
    stats: RunStats | None = None
    interrupted: bool = False

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records.values() if r and r["status"] != "ok"]


class _Accumulator:
    def __init__(self, items: list[VideoItem], on_video: Callable[[VideoResult], None]) -> None:
        self.items, self.on_video = items, on_video
        self.windows: dict[int, list[tuple[int, int]]] = {}
        self.outputs: dict[int, dict[str, list[np.ndarray]]] = {}
        self.decoded: dict[int, VideoStats] = {}

    def add(self, batch: list[Window], outputs: dict[str, np.ndarray]) -> None:
        for row, window in enumerate(batch):
            self.windows.setdefault(window.video, []).append((window.first, window.last))
            per_name = self.outputs.setdefault(window.video, {})
            for name, values in outputs.items():
                per_name.setdefault(name, []).append(values[row])

    def finish_decoded(self, pending: list[Window]) -> int:
        """Hand over every video whose decoder has finished and none of whose windows still wait for the engine."""
        waiting = {w.video for w in pending}
        finished = [video for video in self.decoded if video not in waiting]
        for video in finished:
            spans = np.array(self.windows.pop(video, []), np.int64).reshape(-1, 2)
            outputs = {name: np.stack(rows) for name, rows in self.outputs.pop(video, {}).items()}
            self.on_video(VideoResult(video, self.items[video], spans[:, 0], spans[:, 1], outputs,
                                      self.decoded.pop(video)))
        return len(finished)


def run_windows(items: list[VideoItem], prep: Preprocessing, compute: Compute, on_video: Callable[[VideoResult], None],
                *, stride: int, batch: int, decoders: int = 1, target_fps: float | None = None,
                progress: bool = True, desc: str = "predict") -> RunStats:
    """Run every window of ``items`` through ``compute`` in batches of ``batch``; ``on_video`` gets each video whole.

    Ctrl-C stops the decoders and re-raises once the videos already handed over are safe (they were written by
    ``on_video``); the windows of unfinished videos are dropped."""
    stats, start = RunStats(), time.perf_counter()
    acc = _Accumulator(items, on_video)
    feed = WindowFeed(items, prep, stride, decoders=decoders, capacity=max(2 * batch, 16), target_fps=target_fps)
    bar = tqdm(total=len(items), desc=desc, unit="video", disable=bar_disabled(progress), file=sys.stderr)
    pending: list[Window] = []

    def flush() -> None:
        clips = subtract_mean(np.stack([w.clip for w in pending]), prep)
        t0 = time.perf_counter()
        outputs = compute(clips)
        stats.inference_s += time.perf_counter() - t0
        stats.batches += 1
        stats.batch_sizes.append(len(pending))
        acc.add(pending, outputs)
        stats.windows += len(pending)
        pending.clear()

    try:
        entries = iter(feed)
        while True:
            t0 = time.perf_counter()
            entry = next(entries, None)
            stats.waiting_s += time.perf_counter() - t0
            if entry is None:
                break
            if entry[0] == "window":
                pending.append(entry[1])
                if len(pending) >= batch:
                    flush()
            else:
                acc.decoded[entry[1]] = entry[2]
                stats.frames += entry[2].frames
                stats.decode_s += entry[2].decode_s
            _finish(acc, pending, stats, bar, start)
        if pending:
            flush()
        _finish(acc, pending, stats, bar, start)
    finally:
        feed.close()
        bar.close()
    stats.wall_s = time.perf_counter() - start
    return stats


def _finish(acc: _Accumulator, pending: list[Window], stats: RunStats, bar, start: float) -> None:
    done = acc.finish_decoded(pending) if acc.decoded else 0
    if done:
        stats.videos += done
        wall = max(time.perf_counter() - start, 1e-9)
        bar.set_postfix_str(f"{stats.frames / wall:.0f} frames/s, {stats.windows / wall:.1f} clips/s", refresh=False)
        bar.update(done)
