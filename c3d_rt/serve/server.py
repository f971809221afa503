"""The server's state: many streams, one engine, one batcher, events and metrics (:mod:`.main` starts it).

Start-up order (:mod:`.main`): the HTTP server binds first (so ``/healthz`` answers while the
model loads), then the engine is loaded and warmed up off the event loop, then
the streams start. ``/readyz`` is ready once the engine is loaded and at least
one stream is running. SIGINT and SIGTERM stop everything within a few seconds:
the streams' threads are told to stop, logs are flushed, clients' event streams
and videos end.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..core.errors import C3DError
from ..runtime.prediction import Prediction
from .events import EventHub, Webhook
from .metrics import ServerMetrics
from .streams import Stream, StreamSpec, StreamSpecError

TOKEN_ENV = "C3D_RT_TOKEN"
STOP_GRACE_S = 3.0  # how long shutdown waits for threads before leaving them (they are daemons)


class ServeError(C3DError):
    """The server cannot start as asked."""


@dataclass
class ServeSettings:
    model: Path = Path("export")
    streams: list[StreamSpec] = field(default_factory=list)
    engine: str = "auto"
    precision: str = "auto"
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_streams: int = 64
    media_root: Path | None = None
    log_dir: Path | None = None
    webhook: str | None = None
    mjpeg_fps: float = 10.0
    stream_defaults: StreamSpec | None = None  # stride, smooth... for streams added over HTTP
    triton_url: str = ""  # the server of --engine triton


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(settings: ServeSettings) -> None:
    """Refuse what must not start: an exposed server without a token, duplicate names, a bad folder."""
    if not is_loopback(settings.host) and not settings.token:
        raise ServeError(f"--host {settings.host} would expose the server beyond this machine without a token. Give "
                         f"--token SECRET (or set {TOKEN_ENV}); every endpoint except /healthz will then need it. "
                         "Or bind 127.0.0.1 (the default) and put a proxy in front.")
    if not settings.model.exists():
        raise ServeError(f"--model {settings.model}: no such file or folder; pass the folder `c3d-rt export` wrote "
                         "or one exported file")
    names = [s.name for s in settings.streams]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ServeError(f"stream name(s) {', '.join(duplicates)} given more than once; names must be unique")
    if len(names) > settings.max_streams:
        raise ServeError(f"{len(names)} streams given and --max-streams is {settings.max_streams}")
    if settings.media_root is not None and not settings.media_root.is_dir():
        raise ServeError(f"--media-root {settings.media_root}: no such folder")
    if settings.log_dir is not None:
        try:
            settings.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServeError(f"--log-dir {settings.log_dir}: cannot create it ({exc.strerror})") from None
    if settings.webhook and not settings.webhook.startswith(("http://", "https://")):
        raise ServeError(f"--webhook {settings.webhook!r}: expected an http:// or https:// URL")


class Server:
    """The streams, the engine and the batcher; the HTTP layer (:mod:`.app`) calls into this."""

    def __init__(self, settings: ServeSettings, loop: asyncio.AbstractEventLoop,
                 log: Callable[[str], None] = print) -> None:
        self.settings, self.loop, self.log = settings, loop, log
        self.streams: dict[str, Stream] = {}
        self._streams_lock = threading.Lock()
        self.engine = None
        self.batcher = None
        self.failure: str | None = None  # why the pipeline stopped, if it did
        self.hub = EventHub(loop)
        self.metrics = ServerMetrics(self.stream_list)
        self.webhook = Webhook(settings.webhook, loop, lambda o: self.metrics.webhook.labels(o).inc(), log) \
            if settings.webhook else None
        self.stopping = asyncio.Event()
        self.viewers = 0  # open MJPEG responses

    # --- start and stop -----------------------------------------------------------------------------

    def load_engine(self) -> None:
        """Blocking (run it in an executor): open, warm up and describe the engine, then start the batcher."""
        from ..engines import engine_options, open_engine
        from .batcher import Batcher

        s = self.settings
        options = engine_options(s.engine, url=s.triton_url, batch=s.max_batch)  # auto times at the server's batch
        engine = open_engine(s.model, s.engine, s.precision, s.device, log=self.log, live=True, **options)
        engine.warmup(batch=1)
        if s.max_batch > 1:
            engine.warmup(batch=s.max_batch)
        self.log(f"model: {engine.describe()}; batches of up to {s.max_batch}, waiting at most {s.max_wait_ms:g} ms")
        self.metrics.engine.info({"engine": engine.name, "precision": engine.precision, "device": engine.device,
                                  "model": str(engine.path), "max_batch": str(s.max_batch)})
        self.engine = engine
        self.batcher = Batcher(engine, self.stream_list, max_batch=s.max_batch, max_wait_ms=s.max_wait_ms,
                               on_batch=self.metrics.observe_batch, on_error=self._pipeline_failed)
        self.batcher.start()
        if self.webhook is not None:
            self.loop.call_soon_threadsafe(self.webhook.start)

    def _pipeline_failed(self, exc: BaseException) -> None:
        self.failure = f"the engine failed: {type(exc).__name__}: {exc}"
        self.log(f"error: {self.failure}; stopping")
        try:
            self.loop.call_soon_threadsafe(self.stopping.set)
        except RuntimeError:  # already stopped
            pass

    def shutdown(self) -> None:
        """Blocking: stop every stream and the batcher, flush logs, release the engine."""
        for stream in self.stream_list():
            stream.stop()
        if self.batcher is not None:
            self.batcher.stop(STOP_GRACE_S / 2)
        for stream in self.stream_list():
            stream.close(timeout=STOP_GRACE_S / max(1, len(self.streams)))
        if self.engine is not None and (self.batcher is None or not self.batcher.thread.is_alive()):
            self.engine.close()

    # --- streams ------------------------------------------------------------------------------------

    def stream_list(self) -> list[Stream]:
        with self._streams_lock:
            return list(self.streams.values())

    def add_stream(self, spec: StreamSpec) -> Stream:
        """Start serving ``spec``; raises StreamSpecError for a taken name or a full server."""
        if self.engine is None:
            raise StreamSpecError("the engine is still loading; try again when /readyz says ready", 503)
        with self._streams_lock:
            if spec.name in self.streams:
                raise StreamSpecError(f"a stream named {spec.name!r} already exists; DELETE it first or pick "
                                      "another name", 409)
            if len(self.streams) >= self.settings.max_streams:
                raise StreamSpecError(f"the server already serves {len(self.streams)} streams (--max-streams "
                                      f"{self.settings.max_streams}); remove one first", 429)
            try:
                stream = Stream(spec, self.engine.info.preprocessing, self.engine.labels, on_due=self.batcher.notify,
                                on_prediction=self._on_prediction, log_dir=self.settings.log_dir, log=self.log)
            except C3DError as exc:  # its log cannot be opened
                raise StreamSpecError(f"stream {spec.name!r}: {exc}", 500) from None
            self.streams[spec.name] = stream
        stream.start()
        return stream

    def remove_stream(self, name: str) -> bool:
        with self._streams_lock:
            stream = self.streams.pop(name, None)
        if stream is None:
            return False
        stream.close(timeout=STOP_GRACE_S)
        return True

    def _on_prediction(self, stream: Stream, prediction: Prediction, changed: bool) -> None:
        """From the batcher thread: metrics, the event stream and, on a label change, the webhook."""
        self.metrics.observe_prediction(prediction.latency_ms)
        event = {"stream": stream.name, "seq": prediction.seq, "frame": prediction.frame_index,
                 "timestamp": round(prediction.timestamp, 4), "label": prediction.label,
                 "prob": round(prediction.score, 5),
                 "topk": [{"label": lb, "prob": round(p, 5)} for lb, p in prediction.topk],
                 "latency_ms": prediction.latency_ms}
        try:
            self.hub.publish_threadsafe(event)
            if changed and self.webhook is not None:
                self.webhook.post_threadsafe({**event, "event": "label_change"})
        except RuntimeError:  # the event loop has closed: the server is stopping
            pass

    def readiness(self) -> tuple[bool, str]:
        if self.failure:
            return False, self.failure
        if self.engine is None:
            return False, "the engine is loading"
        running = [s.name for s in self.stream_list() if s.state == "running"]
        if not running:
            return False, "no stream is running"
        return True, f"{len(running)} stream(s) running"


