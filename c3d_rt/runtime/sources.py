"""Frame sources for the live recognizer: a camera index, a video file, a network URL, or a synthetic camera.

Every source hands out :class:`Frame` objects stamped with the moment they were
read. *Live* sources (cameras, streams, paced files, the synthetic camera) run
at their own pace: a reader that falls behind loses frames, and the source
counts them. A file without ``--realtime`` is a *pull* source: it gives the next
frame when asked, so the pipeline can process every window.
"""

from __future__ import annotations

import glob
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..core.errors import C3DError
from ..core.motion import MOTIONS, CameraPath, render_view, view_texture

RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 4.0)  # back-off between attempts to reopen a lost camera or stream
DEFAULT_SYNTHETIC_FPS = 30.0
SOURCE_HELP = "a camera index (0), a video file, a URL (rtsp://, http://), or 'synthetic' ('synthetic@FPS')"


class SourceError(C3DError):
    """A source that cannot be opened or parsed."""


@dataclass
class Frame:
    index: int  # position in the stream, counting every frame the source produced (dropped ones too)
    image: np.ndarray  # BGR uint8 (H, W, 3)
    t_read: float  # time.perf_counter() when the frame was read


class VideoSource:
    """Base class: ``read()`` blocks until the next frame and returns None at the end of the stream."""

    description = "source"
    fps: float = 0.0  # nominal frame rate (0 when unknown)
    live = True  # frames come at the source's pace; False: handed out on demand
    frames_dropped: int | None = 0  # frames lost because the reader was late (None: cannot be known)
    end_reason = ""

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Pacer:
    """Keeps a source on its own clock: says when frame n is due and how many frames are already late."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.start: float | None = None

    def wait_for(self, n: int) -> int:
        """Sleep until frame ``n`` is due; return how many frames after ``n`` are also already due (late)."""
        now = time.perf_counter()
        if self.start is None:
            self.start = now - n * self.period
        due = self.start + n * self.period
        if now < due:
            time.sleep(due - now)
            return 0
        return int((now - due) / self.period)


def _quiet_opencv():
    """OpenCV prints backend errors to stderr on failed opens; we report our own message instead."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return previous


class CaptureSource(VideoSource):
    """An OpenCV ``VideoCapture`` on a camera index, a file or a URL."""

    def __init__(self, target: int | str, description: str, *, live: bool, reconnect: bool,
                 realtime: bool = False, loop: bool = False) -> None:
        self.target, self.description = target, description
        self.live, self.reconnect, self.loop = live, reconnect, loop
        self.next_index = 0
        self.capture = self._open()
        if self.capture is None:
            raise SourceError(self._open_failure())
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.pacer = _Pacer(self.fps or 25.0) if realtime else None
        self.frames_dropped = 0 if (realtime or isinstance(target, int)) else None
        self.last_read: float | None = None
        self.is_file = not isinstance(target, int) and "://" not in str(target)
        self.failed_reconnects = 0  # since the last frame read: a source that opens but never delivers still ends

    def _open(self) -> cv2.VideoCapture | None:
        previous = _quiet_opencv()
        try:
            if isinstance(self.target, int):
                capture = cv2.VideoCapture(self.target)
                capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # a camera keeps at most one frame waiting
            elif "://" in str(self.target):
                capture = cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG)
            else:
                capture = cv2.VideoCapture(str(self.target))
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if not capture.isOpened():
            capture.release()
            return None
        return capture

    def _open_failure(self) -> str:
        if isinstance(self.target, int):
            devices = sorted(glob.glob("/dev/video*")) if sys.platform.startswith("linux") else []
            found = f"this machine has {', '.join(devices)}" if devices else "this machine has no /dev/video* devices"
            return (f"camera {self.target} could not be opened (tried OpenCV's default capture backend; {found}). "
                    "Pass another index, a video file, a URL, or --source synthetic.")
        if "://" in str(self.target):
            return (f"stream {self.target} could not be opened (tried OpenCV's FFmpeg backend). Check that the URL "
                    "is reachable from this machine and that the camera serves RTSP, HTTP MJPEG or another FFmpeg "
                    "format.")
        return (f"{self.target}: OpenCV could not open it as a video (is it a video file, and not empty or "
                "damaged?). Try `ffprobe` on it, or re-encode it.")

    def read(self) -> Frame | None:
        while True:
            if self.pacer is not None:
                self._skip_late(self.pacer.wait_for(self.next_index))
            ok, image = self.capture.read()
            t_read = time.perf_counter()
            if ok and image is not None:
                self.failed_reconnects = 0
                self._count_camera_gap(t_read)
                frame = Frame(self.next_index, image, t_read)
                self.next_index += 1
                return frame
            if not self._recover():
                return None

    def _skip_late(self, late: int) -> None:
        """A paced file behaves like a camera: frames whose time has passed are lost, and counted."""
        for _ in range(late):
            if not self.capture.grab():
                return
            self.next_index += 1
            self.frames_dropped += 1

    def _count_camera_gap(self, t_read: float) -> None:
        if isinstance(self.target, int) and self.fps > 0 and self.last_read is not None:
            gap_frames = round((t_read - self.last_read) * self.fps)
            self.frames_dropped += max(0, gap_frames - 1)
        self.last_read = t_read

    def _recover(self) -> bool:
        """After a failed read: rewind a looping file, reconnect a live source with back-off, or end."""
        if not self.reconnect:
            if self.loop and self.next_index > 0:
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok = self.capture.grab()  # an empty or unreadable file must not loop forever
                if ok:
                    self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    return True
            if not self.next_index:
                self.end_reason = "no frame could be decoded"
            else:
                self.end_reason = "end of file" if self.is_file else f"{self.description} stopped delivering frames"
            return False
        self.capture.release()
        while self.failed_reconnects < len(RECONNECT_DELAYS_S):
            delay = RECONNECT_DELAYS_S[self.failed_reconnects]
            self.failed_reconnects += 1
            print(f"warning: {self.description} stopped delivering frames; reconnecting in {delay:g}s "
                  f"(attempt {self.failed_reconnects}/{len(RECONNECT_DELAYS_S)})", file=sys.stderr)
            time.sleep(delay)
            capture = self._open()
            if capture is not None:
                self.capture, self.last_read = capture, None
                return True
        self.end_reason = f"{self.description} was lost and did not come back after {len(RECONNECT_DELAYS_S)} attempts"
        return False

    def close(self) -> None:
        self.capture.release()


class SyntheticSource(VideoSource):
    """A virtual camera moving over a random texture, paced at ``fps``; the motion changes every few seconds.

    It is the built-in stand-in for a webcam on machines without one: the same
    nine motions as the synthetic training set, rendered live.
    """

    live = True

    def __init__(self, fps: float = DEFAULT_SYNTHETIC_FPS, size: tuple[int, int] = (320, 240), seed: int = 0,
                 segment_frames: int = 64) -> None:
        self.fps, self.size, self.segment_frames = _positive_fps(fps), size, segment_frames
        self.description = f"synthetic camera ({size[0]}x{size[1]} at {fps:g} fps)"
        rng = np.random.default_rng(seed)
        self.texture = view_texture(rng, *size)
        self.render = render_view
        self.motions = list(MOTIONS.values())
        self.path = CameraPath.draw(rng, size[0])
        self.pacer = _Pacer(fps)
        self.next_index = 0
        self.frames_dropped = 0

    def read(self) -> Frame | None:
        late = self.pacer.wait_for(self.next_index)
        self.next_index += late
        self.frames_dropped += late
        index = self.next_index
        motion = self.motions[(index // self.segment_frames) % len(self.motions)]
        tc = index % self.segment_frames - self.segment_frames / 2
        image = self.render(self.texture, motion, self.path, tc, *self.size)
        self.next_index += 1
        return Frame(index, image, time.perf_counter())


def _synthetic_fps(spec: str) -> float:
    fps_text = spec.partition("@")[2] or str(DEFAULT_SYNTHETIC_FPS)
    try:
        fps = float(fps_text)
    except ValueError:
        raise SourceError(f"--source {spec!r}: expected 'synthetic' or 'synthetic@FPS' (e.g. synthetic@30)") from None
    return _positive_fps(fps)


def _positive_fps(fps: float) -> float:
    if not math.isfinite(fps) or fps <= 0:
        raise SourceError(f"synthetic source: frame rate must be a number > 0, got {fps:g} (e.g. synthetic@30)")
    return fps


def _check_file(spec: str) -> Path:
    """A source file that is there, a file, readable and not empty (whether it decodes, only opening it tells)."""
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"--source {spec!r}: no such file. Expected {SOURCE_HELP}.")
    if path.is_dir():
        raise SourceError(f"--source {spec!r} is a folder. Expected {SOURCE_HELP}.")
    try:
        with path.open("rb") as f:
            empty = not f.read(1)
    except OSError as exc:
        raise SourceError(f"--source {spec!r}: the file cannot be read ({exc.strerror}). Check its permissions, or "
                          "copy it somewhere you can read.") from None
    if empty:
        raise SourceError(f"--source {spec!r}: the file is empty (0 bytes), so it holds no video. Expected "
                          f"{SOURCE_HELP}.")
    return path


def check_source(spec: str) -> None:
    """Refuse a ``--source`` that cannot work, touching no device: run before any model loads, so a typo costs
    nothing. A camera index or a URL is left alone: only opening it tells, and :func:`open_source` does that."""
    spec = spec.strip()
    if spec.isdigit() or "://" in spec:
        return
    if spec.startswith("synthetic"):
        _synthetic_fps(spec)
        return
    _check_file(spec)


def open_source(spec: str, *, realtime: bool = False, loop: bool = False, reconnect: bool = True) -> VideoSource:
    """Parse ``--source``: a camera index, ``synthetic[@FPS]``, a URL, or a video file.

    ``reconnect=False``: a camera or stream that stops delivering ends the source at once (``serve``
    reconnects its streams itself, showing the state); otherwise the source retries a few times.
    """
    spec = spec.strip()
    if spec.isdigit():
        return CaptureSource(int(spec), f"camera {spec}", live=True, reconnect=reconnect)
    if spec.startswith("synthetic"):
        return SyntheticSource(_synthetic_fps(spec))
    if "://" in spec:
        return CaptureSource(spec, f"stream {spec}", live=True, reconnect=reconnect)
    path = _check_file(spec)
    paced = " (paced at its frame rate)" if realtime else ""
    return CaptureSource(str(path), f"file {path}{paced}", live=realtime, reconnect=False, realtime=realtime, loop=loop)
