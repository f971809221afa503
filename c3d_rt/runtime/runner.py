"""The real-time recognizer: capture thread -> ring of preprocessed frames -> inference thread -> sinks.

* The **capture thread** reads the source, stamps each frame, preprocesses every
  ``frame_interval``-th one into the ring and offers the frame to the display
  and video sinks through a small bounded queue.
* The **inference thread** runs the model on the newest due window (see
  :mod:`.ring`), then applies softmax, smoothing, the threshold and top-k, and
  publishes the prediction with its latency broken down by stage.
* The **main thread** draws and shows frames where a display exists, writes the
  output video, and handles q/Esc and Ctrl-C. It is never on the path from
  frame to prediction.

Every buffer is bounded and latency percentiles live in fixed-size histograms,
so memory stays flat however long the run.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import C3DError
from ..engines import Engine, open_engine
from .prediction import STAGES, PostProcessor, Prediction, make_prediction
from .ring import FrameRing, Window
from .sinks import Display, PredictionLog, VideoOutput, annotate, display_unavailable_reason
from .sources import VideoSource, check_source, open_source
from .stats import LatencyHistogram

FRAME_QUEUE = 32  # frames waiting for the display/video sinks, at most


@dataclass(frozen=True)
class RunSettings:
    stride: int = 1  # run the model every N sampled frames
    smooth: int = 1  # moving average over the last N predictions
    threshold: float = 0.0  # below this smoothed probability the label is None
    topk: int = 5
    max_frames: int | None = None  # stop after this many frames read
    show: bool = True  # open a window where a display exists
    output: Path | None = None  # annotated video
    log_path: Path | None = None  # one JSON line per prediction
    log_mode: str = "new"  # a log_path that exists: refused (new), added to (append) or replaced (overwrite)


@dataclass
class RunSummary:
    model: str
    engine: str  # engine/precision/device
    source: str
    end_reason: str
    duration_s: float
    frames_read: int
    capture_fps: float
    frames_dropped: int | None  # frames the source lost because reading fell behind (None: unknowable)
    windows_due: int
    predictions: int
    windows_dropped: int  # due windows skipped because the model was busy
    predictions_per_s: float
    sink_frames_dropped: int  # frames the display/video could not keep up with
    latency_ms: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        dropped = "unknown (a stream hides upstream drops)" if self.frames_dropped is None else self.frames_dropped
        lines = [f"{self.predictions} predictions in {self.duration_s:.1f}s ({self.predictions_per_s:.1f}/s) from "
                 f"{self.frames_read} frames at {self.capture_fps:.1f} fps; {self.end_reason}",
                 f"capture frames dropped: {dropped}; windows dropped (model busy): {self.windows_dropped} of "
                 f"{self.windows_due}; display/video frames dropped: {self.sink_frames_dropped}",
                 f"{'latency (ms)':<16} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"]
        for stage in STAGES:
            s = self.latency_ms.get(stage, {})
            cell = lambda k: f"{s[k]:8.2f}" if s.get(k) is not None else f"{'-':>8}"  # noqa: E731
            lines.append(f"{stage:<16} {cell('p50_ms')} {cell('p95_ms')} {cell('p99_ms')} {cell('max_ms')}")
        return "\n".join(lines)


class LiveRecognizer:
    """Runs a model on a source until the stream ends, ``max_frames`` is reached, q/Esc, or Ctrl-C."""

    def __init__(self, model: Engine, source: VideoSource, settings: RunSettings = RunSettings(),
                 log: Callable[[str], None] = print, prediction_log: PredictionLog | None = None) -> None:
        """``prediction_log``: ``settings.log_path`` opened already (``run_live`` takes it before the model loads);
        without it the log is opened here. Either way the recognizer closes it."""
        self.model, self.source, self.settings = model, source, settings
        self.ring = FrameRing(model.info.preprocessing, settings.stride, wait_for_consumer=not source.live)
        self.post = PostProcessor(model.info.labels, settings.smooth, settings.threshold, settings.topk)
        self.latency = {stage: LatencyHistogram() for stage in STAGES}
        self.latest: Prediction | None = None
        self.predictions = 0
        self.frames_read = 0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.end_reason = ""
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.sink_frames_dropped = 0
        self.prediction_log = prediction_log or open_prediction_log(settings)
        self.video = VideoOutput(settings.output, source.fps) if settings.output else None
        self.display: Display | None = None
        if settings.show:
            reason = display_unavailable_reason()
            if reason:
                log(f"no window: {reason}; running headless")
            else:
                self.display = Display()
        self.frames: queue.Queue = queue.Queue(maxsize=FRAME_QUEUE)
        self.wants_frames = self.display is not None or self.video is not None
        self.wall_offset = time.time() - time.perf_counter()

    # --- threads -----------------------------------------------------------------------------------

    def _capture_loop(self) -> None:
        try:
            while not self.stop.is_set():
                if self.settings.max_frames and self.frames_read >= self.settings.max_frames:
                    self.end_reason = f"--max-frames {self.settings.max_frames} reached"
                    break
                frame = self.source.read()
                if frame is None:
                    self.end_reason = self.source.end_reason or "end of stream"
                    break
                self.frames_read += 1
                self.t_first = self.t_first if self.t_first is not None else frame.t_read
                self.t_last = frame.t_read
                self.ring.push(frame.image, frame.index, frame.t_read)
                if self.wants_frames:
                    self._offer(frame.image)
        except BaseException as exc:  # surfaced by run() in the main thread
            self.error = exc
        finally:
            self.ring.close()

    def _offer(self, image: np.ndarray) -> None:
        """Hand a frame to the sinks; a live source never waits for them (the oldest frame is dropped)."""
        if not self.source.live:
            while not self.stop.is_set():
                try:
                    return self.frames.put(image, timeout=0.1)
                except queue.Full:
                    continue
            return
        try:
            self.frames.put_nowait(image)
        except queue.Full:
            try:
                self.frames.get_nowait()
                self.sink_frames_dropped += 1
            except queue.Empty:
                pass
            self.frames.put_nowait(image)

    def _inference_loop(self) -> None:
        batch = np.empty((1, *self.model.input_shape), np.float32)  # (1, 3, T, c, c), reused
        try:
            while True:
                window = self.ring.take(batch[0], timeout=0.2)
                if window is None:
                    if self.ring.closed or self.stop.is_set():
                        break
                    continue
                t0 = time.perf_counter()
                logits = self.model(batch)
                t1 = time.perf_counter()
                topk, smoothed, label, score = self.post(logits[0])
                t2 = time.perf_counter()
                self._publish(window, topk, smoothed, label, score, t0, t1, t2)
        except BaseException as exc:
            self.error = exc
            self.stop.set()
            self.ring.close()

    def _publish(self, window: Window, topk, smoothed, label, score, t0: float, t1: float, t2: float) -> None:
        prediction = make_prediction(self.predictions, window, (topk, smoothed, label, score), t0, t1, t2,
                                     self.wall_offset)
        self.latest = prediction
        self.predictions += 1
        for stage, ms in prediction.latency_ms.items():
            self.latency[stage].add(ms)
        if self.prediction_log:
            self.prediction_log.write(prediction)

    # --- main thread -------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        start = time.perf_counter()
        if self.prediction_log:
            self.prediction_log.start()
        workers = [threading.Thread(target=self._capture_loop, name="c3d-rt-capture", daemon=True),
                   threading.Thread(target=self._inference_loop, name="c3d-rt-inference", daemon=True)]
        for w in workers:
            w.start()
        try:
            self._sink_loop(workers)
        except KeyboardInterrupt:
            self.end_reason = "interrupted (Ctrl-C)"
        finally:
            self.stop.set()
            self.ring.close()
            for w in workers:
                w.join(timeout=5)
            self._close_sinks()
        if self.error is not None:
            if isinstance(self.error, C3DError):
                raise self.error
            raise C3DError(f"the live run failed: {type(self.error).__name__}: {self.error}") from self.error
        return self.summary(time.perf_counter() - start)

    def _sink_loop(self, workers: list[threading.Thread]) -> None:
        while any(w.is_alive() for w in workers) or not self.frames.empty():
            if not self.wants_frames:
                workers[1].join(timeout=0.1)
                continue
            try:
                image = self.frames.get(timeout=0.05)
            except queue.Empty:
                continue
            annotated = annotate(image, self.latest, self._status_line())
            if self.video is not None:
                self.video.write(annotated)
            if self.display is not None and self.display.show(annotated):
                self.end_reason = "stopped by the user (q/Esc)"
                return

    def _status_line(self) -> str:
        fps = self._capture_fps()
        p = self.latest
        if p is None:
            return f"{fps:.1f} fps  (filling the first window)"
        return f"{fps:.1f} fps  infer {p.latency_ms['inference']:.0f} ms  glass-to-label {p.latency_ms['glass_to_label']:.0f} ms"

    def _capture_fps(self) -> float:
        if self.t_first is None or self.t_last is None or self.t_last <= self.t_first:
            return 0.0
        return (self.frames_read - 1) / (self.t_last - self.t_first)

    def _close_sinks(self) -> None:
        if self.prediction_log is not None:
            self.prediction_log.close(discard_unused=self.error is not None)
        for sink in (self.video, self.display):
            if sink is not None:
                sink.close()

    def _end_reason(self) -> str:
        """Why the run ended, and why it made no prediction where that is the case."""
        reason = self.end_reason or "stopped"
        prep = self.model.info.preprocessing
        needed = (prep.clip_len - 1) * prep.frame_interval + 1
        if self.predictions == 0 and self.frames_read < needed:
            reason += (f"; no prediction: the source gave {self.frames_read} frames and one clip needs {needed} "
                       f"({prep.clip_len} frames, every {prep.frame_interval}). Use a longer video, --loop, "
                       "or a larger --max-frames")
        return reason

    def summary(self, duration_s: float) -> RunSummary:
        return RunSummary(
            model=str(self.model.path), engine=self.model.key, source=self.source.description,
            end_reason=self._end_reason(), duration_s=round(duration_s, 3), frames_read=self.frames_read,
            capture_fps=round(self._capture_fps(), 2), frames_dropped=self.source.frames_dropped,
            windows_due=self.ring.windows_due, predictions=self.predictions, windows_dropped=self.ring.windows_dropped,
            predictions_per_s=round(self.predictions / duration_s, 2) if duration_s > 0 else 0.0,
            sink_frames_dropped=self.sink_frames_dropped,
            latency_ms={stage: h.summary() for stage, h in self.latency.items()})


def open_prediction_log(settings: RunSettings) -> PredictionLog | None:
    """``settings.log_path`` locked for this run (an existing one only with ``log_mode`` append or overwrite)."""
    return PredictionLog(settings.log_path, settings.log_mode) if settings.log_path else None


def run_live(model_path: str | Path, source_spec: str, settings: RunSettings = RunSettings(), *,
             engine: str = "auto", precision: str = "auto", device: str = "auto", realtime: bool = False,
             loop: bool = False, log: Callable[[str], None] = print,
             engine_options: dict | None = None) -> RunSummary:
    """Open the engine and the source, run until the end, and return the summary (what ``c3d-rt webcam`` does).

    What can be refused without the model is refused first: a source file that is not there or cannot be read,
    and a log that exists (without append or overwrite) or that another run is writing (its lock is then held
    for the whole run). The engine is loaded (and, for ``auto``, chosen) and warmed up before the source opens,
    so a model that cannot run is refused before the camera starts, and the first window is not slowed by set-up.
    """
    check_source(source_spec)
    prediction_log = open_prediction_log(settings)
    try:
        model = open_engine(model_path, engine, precision, device, log=log, live=True, **(engine_options or {}))
        try:
            model.warmup()
            log(f"model: {model.describe()}")
            with open_source(source_spec, realtime=realtime, loop=loop) as source:
                log(f"source: {source.description}; a prediction every {settings.stride} sampled frame(s)")
                return LiveRecognizer(model, source, settings, log=log, prediction_log=prediction_log).run()
        finally:
            model.close()
    except BaseException:
        if prediction_log is not None:  # the run never started (or failed): a log it created and left empty goes
            prediction_log.close(discard_unused=True)
        raise
