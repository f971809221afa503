"""One served stream: its source (reopened with back-off when it fails), ring, post-processing and log.

A stream owns a capture thread that reads its source into a :class:`FrameRing`;
the server's one batcher takes the stream's due windows and hands back each
window's logits to :meth:`Stream.publish`, which smooths, thresholds and logs them
exactly as ``c3d-rt webcam`` does (the same :class:`PostProcessor` and
:func:`make_prediction`). A failing source never raises out of the stream: the
stream shows ``reconnecting`` with the error and tries again, with back-off.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ..core.config import Preprocessing
from ..core.errors import C3DError
from ..runtime.prediction import STAGES, PostProcessor, Prediction, make_prediction
from ..runtime.ring import FrameRing, Window
from ..runtime.sinks import PredictionLog, annotate
from ..runtime.sources import SourceError, VideoSource, open_source
from ..runtime.stats import LatencyHistogram

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # between attempts to reopen a failed source; the last repeats
HEALTHY_FRAMES = 30  # a connection that delivered this many frames resets the back-off
MAX_REMOTE_SYNTHETIC_FPS = 60.0  # a request may not ask the server to render faster than this
STATES = ("starting", "running", "reconnecting", "ended", "stopped")


class StreamSpecError(C3DError):
    """A stream that cannot be served; ``status`` is the HTTP status a request gets for it."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def redact(source: str) -> str:
    """A source as shown to users and logs: a URL without its password (rtsp://user:***@host/...)."""
    if "://" not in source:
        return source
    parts = urlsplit(source)
    if parts.password is None:
        return source
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class StreamSpec:
    """What a stream is: from ``--source NAME=SPEC``, a ``[[stream]]`` table in ``--config``, or ``POST /api/streams``."""

    name: str
    source: str
    stride: int = 1
    smooth: int = 1
    threshold: float = 0.0
    topk: int = 5
    realtime: bool = False  # pace a file at its frame rate
    loop: bool = False  # start a file again at its end

    FIELDS = ("name", "source", "stride", "smooth", "threshold", "topk", "realtime", "loop")

    @classmethod
    def from_dict(cls, data: object, defaults: "StreamSpec | None" = None) -> "StreamSpec":
        """Validate a JSON/TOML object: unknown fields, wrong types and out-of-range values are errors."""
        if not isinstance(data, dict):
            raise StreamSpecError(f"a stream is an object with {', '.join(cls.FIELDS)}; got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.FIELDS))
        if unknown:
            raise StreamSpecError(f"unknown stream field(s) {', '.join(unknown)}; expected {', '.join(cls.FIELDS)}")
        base = defaults or cls("-", "-")
        values = {k: data.get(k, getattr(base, k)) for k in cls.FIELDS}
        for key in ("name", "source"):
            if key not in data or not isinstance(data[key], str) or not data[key].strip():
                raise StreamSpecError(f"stream field {key!r} must be a non-empty string; got {data.get(key)!r}")
        checks = {"stride": (int, 1, 10_000), "smooth": (int, 1, 1000), "topk": (int, 1, 1000),
                  "threshold": ((int, float), 0.0, 1.0)}
        for key, (kind, low, high) in checks.items():
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
                raise StreamSpecError(f"stream field {key!r} must be a number in [{low}, {high}]; got {value!r}")
        for key in ("realtime", "loop"):
            if not isinstance(values[key], bool):
                raise StreamSpecError(f"stream field {key!r} must be true or false; got {values[key]!r}")
        spec = cls(**{**values, "name": values["name"].strip(), "source": values["source"].strip(),
                      "threshold": float(values["threshold"])})
        check_name(spec.name)
        return spec


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise StreamSpecError(f"stream name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a "
                              "letter or digit")


def check_remote_source(source: str, media_root: Path | None) -> str:
    """A source that a request may open: a camera index, ``synthetic``, a network URL, or a file under
    ``media_root``. Returns the source to open (a file as its resolved path); raises PermissionError."""
    if source.isdigit():
        return source
    if re.fullmatch(r"synthetic(@[0-9.]+)?", source):
        fps = float(source.partition("@")[2] or 30)
        if fps > MAX_REMOTE_SYNTHETIC_FPS:
            raise PermissionError(f"synthetic@{fps:g}: over HTTP the synthetic camera runs at most "
                                  f"{MAX_REMOTE_SYNTHETIC_FPS:g} fps")
        return source
    if "://" in source:
        scheme = urlsplit(source).scheme.lower()
        if scheme not in NETWORK_SCHEMES:
            raise PermissionError(f"source scheme {scheme!r} is not allowed over HTTP; use one of "
                                  f"{', '.join(NETWORK_SCHEMES)}")
        return source
    if media_root is None:
        raise PermissionError("files cannot be added over HTTP unless the server was started with --media-root DIR")
    root = media_root.resolve()
    candidate = (root / source).resolve()  # an absolute source stays absolute; '..' is resolved away
    if not candidate.is_relative_to(root):
        raise PermissionError(f"{source!r} is outside --media-root {root}")
    if not candidate.is_file():
        raise FileNotFoundError(f"{source!r}: no such file under --media-root {root}")
    return str(candidate)


@dataclass
class StreamCounters:
    frames: int = 0  # frames read from the source, over every connection
    frames_dropped: int = 0  # frames the source lost because reading fell behind
    windows_due: int = 0
    windows_dropped: int = 0  # due windows superseded before the batcher took them
    predictions: int = 0
    reconnects: int = 0
    label_changes: int = 0


@dataclass
class FrameClock:
    """Capture frame rate over the last 64 frames (a stream may run for days)."""

    times: deque = field(default_factory=lambda: deque(maxlen=64))

    def tick(self, t: float) -> None:
        self.times.append(t)

    @property
    def fps(self) -> float:
        times = list(self.times)  # the capture thread appends meanwhile
        if len(times) < 2 or time.perf_counter() - times[-1] > 2.0 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


def stream_log(log_dir: Path, name: str) -> Path:
    """A stream's log in ``--log-dir``. Serve always appends (a stream added again keeps its history); the file is
    locked while the stream runs, so a second writer (another serve, a webcam run) is refused."""
    return log_dir / f"{name}.jsonl"


def check_stream_logs(log_dir: Path | None, specs: list[StreamSpec]) -> None:
    """Refuse, before the model loads, a stream whose log another run is writing: each log is locked and let go
    at once (one that did not exist is not left behind); each stream takes its lock for good when it starts."""
    if log_dir is None:
        return
    for spec in specs:
        PredictionLog(stream_log(log_dir, spec.name), "append", "--log-dir").close(discard_unused=True)


class Stream:
    """A source read by its own thread into a ring whose windows the server's batcher takes."""

    def __init__(self, spec: StreamSpec, prep: Preprocessing, labels: list[str], *, on_due: Callable[[], None],
                 on_prediction: Callable[["Stream", Prediction, bool], None], log_dir: Path | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.spec, self.prep, self.on_due, self.on_prediction, self.log = spec, prep, on_due, on_prediction, log
        self.post = PostProcessor(labels, spec.smooth, spec.threshold, spec.topk)
        self.latency = {stage: LatencyHistogram() for stage in STAGES}
        self.counters = StreamCounters()
        self.clock = FrameClock()
        self.state, self.error, self.description = "starting", "", redact(spec.source)
        self.latest: Prediction | None = None
        self.latest_frame: tuple[int, np.ndarray] | None = None  # (frame number, BGR image): what the video shows
        self.ring = self._new_ring(live=True)
        self.stop_event = threading.Event()
        self.prediction_log = PredictionLog(stream_log(log_dir, spec.name), "append", "--log-dir") if log_dir else None
        self._lock = threading.Lock()  # publish (batcher) against close (server); ring swaps against totals()
        self._jpeg: tuple[int, int, bytes] | None = None  # (frame number, predictions, JPEG): shared by viewers
        self._sink_error_logged = False
        self._frame_offset = 0  # frame numbers continue across reconnects
        self.wall_offset = time.time() - time.perf_counter()
        self.thread = threading.Thread(target=self._capture_loop, name=f"c3d-rt-capture-{spec.name}", daemon=True)

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self) -> None:
        self.thread.start()

    def _new_ring(self, live: bool) -> FrameRing:
        return FrameRing(self.prep, self.spec.stride, wait_for_consumer=not live, on_due=self.on_due)

    # --- capture thread ---------------------------------------------------------------------------

    def _capture_loop(self) -> None:
        failures = 0  # in a row: each one waits longer before the next attempt
        while not self.stop_event.is_set():
            source = self._open()
            if source is not None:
                ended_cleanly, frames = self._read_all(source)
                if self.stop_event.is_set():
                    break
                if ended_cleanly:
                    self.state = "ended"
                    self.error = source.end_reason or "end of file"
                    self.log(f"stream {self.name}: {self.error}")
                    break
                if frames >= HEALTHY_FRAMES:  # a flapping source keeps backing off
                    failures = 0
                self._set_reconnecting(source.end_reason or "the source stopped delivering frames")
            self.stop_event.wait(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
            failures += 1
        if self.state != "ended":
            self.state = "stopped" if self.stop_event.is_set() else self.state
        self.ring.close()

    def _open(self) -> VideoSource | None:
        try:
            source = open_source(self.spec.source, realtime=self.spec.realtime, loop=self.spec.loop, reconnect=False)
        except (SourceError, OSError) as exc:
            self._set_reconnecting(str(exc).replace(self.spec.source, self.description).rstrip("."))
            return None
        self.description = redact(source.description)
        self.state, self.error = "running", ""
        self._replace_ring(self._new_ring(source.live))
        return source

    def _set_reconnecting(self, why: str) -> None:
        if self.state != "reconnecting":
            self.log(f"stream {self.name}: {why}; reconnecting with back-off")
        self.state, self.error = "reconnecting", why
        self.counters.reconnects += 1

    def _read_all(self, source: VideoSource) -> tuple[bool, int]:
        """Read until the source ends: (whether it is a file, which ended for good; frames read)."""
        dropped_before, frames = 0, 0
        try:
            while not self.stop_event.is_set():
                frame = source.read()
                if frame is None:
                    break
                number = self._frame_offset + frame.index
                self.counters.frames += 1
                frames += 1
                self.clock.tick(frame.t_read)
                self.latest_frame = (number, frame.image)
                self.ring.push(frame.image, number, frame.t_read)
                dropped = source.frames_dropped or 0
                self.counters.frames_dropped += dropped - dropped_before
                dropped_before = dropped
        finally:
            self._frame_offset += getattr(source, "next_index", self.counters.frames)
            source.close()
        return bool(getattr(source, "is_file", False)), frames

    def _replace_ring(self, ring: FrameRing) -> None:
        """A new connection gets a new ring; the old one's counts are kept and anyone waiting on it woken."""
        with self._lock:
            old, self.ring = self.ring, ring
            self.counters.windows_due += old.windows_due
            self.counters.windows_dropped += old.windows_dropped
        old.close()

    # --- batcher side -------------------------------------------------------------------------------

    def take(self, out: np.ndarray) -> Window | None:
        return self.ring.take_ready(out)

    def publish(self, window: Window, logits: np.ndarray, t0: float, t1: float) -> Prediction:
        """Post-process one window's logits (the batch ran from ``t0`` to ``t1``) and tell the listeners."""
        with self._lock:
            post = self.post(logits)
            prediction = make_prediction(self.counters.predictions, window, post, t0, t1, time.perf_counter(),
                                         self.wall_offset)
            changed = self.latest is None or self.latest.label != prediction.label
            self.latest = prediction
            self.counters.predictions += 1
            self.counters.label_changes += int(changed)
            for stage, ms in prediction.latency_ms.items():
                self.latency[stage].add(ms)
            if self.prediction_log is not None:
                self.prediction_log.write(prediction)
        self.on_prediction(self, prediction, changed)
        return prediction

    # --- server side -----------------------------------------------------------------------------------

    def stop(self) -> None:
        self.stop_event.set()
        self.ring.close()

    def close(self, timeout: float = 2.0) -> None:
        """Flush and close the log, then stop the capture thread (waiting at most ``timeout``)."""
        self.stop()
        with self._lock:  # first: a stream added again under this name appends after the last line
            if self.prediction_log is not None:
                self.prediction_log.close()
                self.prediction_log = None
        if self.thread.is_alive():
            self.thread.join(timeout)

    def sink_failed(self, exc: BaseException) -> None:
        """The batcher could not publish this stream's prediction (its log could not be written...)."""
        self.error = f"publishing a prediction failed: {type(exc).__name__}: {exc}"
        if not self._sink_error_logged:
            self._sink_error_logged = True
            self.log(f"warning: stream {self.name}: {self.error}")

    def totals(self) -> StreamCounters:
        """Counters over every connection, the current one included."""
        with self._lock:
            c, ring = self.counters, self.ring
            return dataclasses.replace(c, windows_due=c.windows_due + ring.windows_due,
                                       windows_dropped=c.windows_dropped + ring.windows_dropped)

    def snapshot(self) -> dict:
        """What ``GET /api/streams`` says about this stream."""
        totals = self.totals()
        p = self.latest
        last = None if p is None else {
            "frame": p.frame_index, "label": p.label, "prob": round(p.score, 4),
            "topk": [{"label": lb, "prob": round(pr, 4)} for lb, pr in p.topk],
            "latency_ms": p.latency_ms, "age_s": round(time.time() - p.timestamp, 3)}
        return {"name": self.name, "source": redact(self.spec.source), "description": self.description,
                "state": self.state, "error": self.error or None, "fps": round(self.clock.fps, 2), "stride": self.spec.stride,
                "frames": totals.frames, "frames_dropped": totals.frames_dropped, "windows_due": totals.windows_due,
                "windows_dropped": totals.windows_dropped, "predictions": totals.predictions,
                "reconnects": totals.reconnects, "last_prediction": last,
                "latency_ms": {stage: self.latency[stage].summary() for stage in ("inference", "glass_to_label")}}

    def annotated_jpeg(self, quality: int = 80) -> tuple[int, bytes] | None:
        """The newest frame with the current label drawn on it, as JPEG (None before the first frame)."""
        import cv2

        latest = self.latest_frame
        if latest is None:
            return None
        number, image = latest
        cached = self._jpeg
        if cached is not None and cached[:2] == (number, self.counters.predictions):
            return number, cached[2]  # every viewer of this frame gets one encoding
        predictions = self.counters.predictions
        status = f"{self.name}: {self.state}  {self.clock.fps:.1f} fps"
        ok, data = cv2.imencode(".jpg", annotate(image, self.latest, status), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            return None
        self._jpeg = (number, predictions, data.tobytes())
        return number, self._jpeg[2]
