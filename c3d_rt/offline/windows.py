"""Every window of a recorded video, decoded once, in threads that run ahead of the engine.

A video is read front to back once. Every ``frame_interval``-th frame (of the video, or of its ``--fps``
resampled timeline) is resized and kept among the newest ``clip_len``; every ``stride`` sampled frames a window
is complete and leaves as ``crop_clip``'s uint8 ``(3, T, c, c)`` (a quarter of float32's bytes; the mean is
subtracted per batch, with the one preprocessing of :mod:`c3d_rt.core.transforms`). Windows fall where
:meth:`Preprocessing.window_starts` says, as in the live ring and the export's checks. Decoder threads take
whole videos and put windows on one bounded queue, so decoding overlaps inference and memory stays fixed.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..core.config import Preprocessing
from ..core.transforms import crop_clip, resize_frame
from ..data.video import open_video
from .sources import VideoItem

ASSUMED_FPS = 25.0  # a container that states no frame rate: times are in frames / 25 (said in the outputs)


@dataclass
class VideoStats:
    """What decoding one video found."""

    frames: int = 0  # decoded
    timeline_frames: int = 0  # frames on the --fps timeline (= frames without --fps)
    claimed_frames: int = 0  # what the container says
    fps: float = 0.0  # the container's frame rate (0: it states none)
    width: int = 0
    height: int = 0
    windows: int = 0
    decode_s: float = 0.0  # reading and resizing, in the decoder thread
    error: str = ""  # why the video gave no window (unreadable, empty, too short)
    notes: list[str] = field(default_factory=list)

    @property
    def time_fps(self) -> float:
        """The frame rate times are computed with."""
        return self.fps if self.fps > 0 else ASSUMED_FPS


@dataclass
class Window:
    video: int  # index of the video in the run
    first: int  # source frame index of the window's first frame
    last: int  # and of its last
    clip: np.ndarray  # (3, T, c, c) uint8, before the mean


def repeats(index: int, source_fps: float, target_fps: float | None) -> int:
    """How often source frame ``index`` appears on the ``target_fps`` timeline (0: dropped; 2: shown twice): the
    number of target ticks ``k / target_fps`` while it is the frame on screen, ``[index, index + 1) / source_fps``."""
    if not target_fps:
        return 1
    ratio = target_fps / source_fps
    return math.ceil((index + 1) * ratio - 1e-9) - math.ceil(index * ratio - 1e-9)


def decode_windows(item: VideoItem, video: int, prep: Preprocessing, stride: int, stats: VideoStats,
                   target_fps: float | None = None, stop: threading.Event | None = None) -> Iterator[Window]:
    """The windows of one video, in order; ``stats`` is filled as it goes (``error`` says why there were none)."""
    cap = open_video(item.path)
    try:
        if not cap.isOpened():
            stats.error = "unreadable: OpenCV cannot open it (not a video, or truncated)"
            return
        stats.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        stats.claimed_frames = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        if target_fps and stats.fps <= 0:
            stats.error = f"--fps {target_fps:g}: the container states no frame rate to resample from"
            return
        yield from _windows(cap, video, prep, stride, stats, target_fps, stop)
    finally:
        cap.release()
    _explain_no_window(stats, prep, stride, target_fps)


def _windows(cap, video, prep, stride, stats, target_fps, stop) -> Iterator[Window]:
    recent: deque = deque(maxlen=prep.clip_len)  # (source index, resized frame) of the newest sampled frames
    sampled = 0  # frames on the (resampled) timeline so far
    t0 = time.perf_counter()
    while stop is None or not stop.is_set():
        if not cap.grab():
            break
        index = stats.frames
        stats.frames += 1
        times = repeats(index, stats.time_fps, target_fps)
        wanted = [s for s in range(sampled, sampled + times) if s % prep.frame_interval == 0]
        sampled += times
        stats.timeline_frames = sampled
        if not wanted:
            continue
        ok, frame = cap.retrieve()
        if not ok:
            stats.frames -= 1
            break
        if not stats.width:
            stats.height, stats.width = frame.shape[:2]
        resized = resize_frame(frame, prep)
        for s in wanted:
            recent.append((index, resized))
            n = s // prep.frame_interval + 1  # sampled frames pushed, as the live ring counts them
            if n >= prep.clip_len and (n - prep.clip_len) % stride == 0:
                stats.windows += 1
                stats.decode_s += time.perf_counter() - t0
                yield Window(video, recent[0][0], recent[-1][0], crop_clip([f for _, f in recent], prep))
                t0 = time.perf_counter()
    stats.decode_s += time.perf_counter() - t0


def _explain_no_window(stats: VideoStats, prep: Preprocessing, stride: int, target_fps: float | None) -> None:
    if stats.claimed_frames - stats.frames > 1:  # a truncated or damaged file: what was read is still used
        stats.notes.append(f"decoding stopped at frame {stats.frames} of the {stats.claimed_frames} the container "
                           "states (truncated or damaged file)")
    if stats.windows or stats.error:
        return
    if stats.frames == 0:
        stats.error = "empty: no decodable frame"
        return
    need = prep.window_span
    at = f" ({stats.timeline_frames} at --fps {target_fps:g})" if target_fps else ""
    stats.error = (f"too short: {stats.frames} frames{at}, a window needs {need} (clips of {prep.clip_len} frames, "
                   f"every {prep.frame_interval})")


class WindowFeed:
    """Decoder threads over a list of videos -> one bounded queue of windows and end-of-video records.

    The queue holds ``("window", Window)``, ``("done", video, VideoStats)`` and, once every decoder has finished,
    ``("end", None, None)``. A video's windows come in order and before its "done"; videos interleave when there
    is more than one decoder. ``close()`` stops the decoders (Ctrl-C) without waiting for the queue to drain.
    """

    def __init__(self, items: list[VideoItem], prep: Preprocessing, stride: int, *, decoders: int = 1,
                 capacity: int = 64, target_fps: float | None = None) -> None:
        self.items, self.prep, self.stride, self.target_fps = items, prep, stride, target_fps
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, capacity))
        self.stop = threading.Event()
        self._next = 0
        self._lock = threading.Lock()
        self._running = max(1, min(decoders, len(items) or 1))
        self.threads = [threading.Thread(target=self._decode, name=f"c3d-rt-decoder-{i}", daemon=True)
                        for i in range(self._running)]
        for thread in self.threads:
            thread.start()

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= len(self.items) or self.stop.is_set():
                return None
            self._next += 1
            return self._next - 1

    def _put(self, entry: tuple) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self) -> None:
        try:
            while (video := self._take()) is not None:
                stats = VideoStats()
                try:
                    for window in decode_windows(self.items[video], video, self.prep, self.stride, stats,
                                                 self.target_fps, self.stop):
                        if not self._put(("window", window)):
                            return
                except Exception as exc:  # a decoder that breaks on one video fails that video, not the run
                    stats.error = f"decoding failed: {type(exc).__name__}: {exc}"
                if not self.stop.is_set():
                    self._put(("done", video, stats))
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:
                self._put(("end", None, None))

    def __iter__(self) -> Iterator[tuple]:
        while True:
            entry = self.queue.get()
            if entry[0] == "end":
                return
            yield entry

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
