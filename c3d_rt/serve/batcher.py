"""The cross-stream batcher: one thread gathers the windows due in every stream and runs them as one batch.

It sleeps until any stream's ring says a window is due, takes every stream's due
window (one per stream per batch, starting from a rotating stream so none
starves when more are due than fit), waits up to ``max_wait_ms`` for more
streams to fill the batch, runs the engine once, and hands each stream the row
of logits that is its own. Memory is one preallocated ``(max_batch, 3, T, H, W)``
array.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

from ..engines import Engine
from ..runtime.ring import Window
from .streams import Stream


class Batcher:
    def __init__(self, engine: Engine, streams: Callable[[], list[Stream]], *, max_batch: int = 8,
                 max_wait_ms: float = 5.0, on_batch: Callable[[int, float], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.engine, self.streams, self.max_batch, self.max_wait_s = engine, streams, max_batch, max_wait_ms / 1e3
        self.on_batch, self.on_error = on_batch, on_error
        self.clips = np.empty((max_batch, *engine.input_shape), np.float32)
        self.due = threading.Event()
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._rotation = 0
        self.thread = threading.Thread(target=self._loop, name="c3d-rt-batcher", daemon=True)

    def notify(self) -> None:
        """A ring's ``on_due``: some window is ready."""
        self.due.set()

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self.stop_event.set()
        self.due.set()
        self.thread.join(timeout)

    def _loop(self) -> None:
        try:
            while not self.stop_event.is_set():
                taken = self._gather([])  # first look, then sleep: a window that came due during the last
                if not taken:              # batch (its notice already consumed) is not left waiting
                    self.due.wait(0.2)
                    self.due.clear()
                    continue
                deadline = time.perf_counter() + self.max_wait_s
                while len(taken) < self.max_batch and not self.stop_event.is_set():
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0 or not self.due.wait(remaining):
                        break
                    self.due.clear()
                    self._gather(taken)
                self._run(taken)
        except BaseException as exc:  # the engine failed: the server reports it and stops
            self.error = exc
            if self.on_error is not None:
                self.on_error(exc)

    def _gather(self, taken: list[tuple[Stream, Window]]) -> list[tuple[Stream, Window]]:
        streams = self.streams()
        if not streams:
            return taken
        start = self._rotation % len(streams)
        already = {stream for stream, _ in taken}
        for stream in streams[start:] + streams[:start]:
            if len(taken) >= self.max_batch:
                break
            if stream in already:
                continue
            window = stream.take(self.clips[len(taken)])
            if window is not None:
                taken.append((stream, window))
        self._rotation += 1
        return taken

    def _run(self, taken: list[tuple[Stream, Window]]) -> None:
        n = len(taken)
        t0 = time.perf_counter()
        logits = self.engine(self.clips[:n])
        t1 = time.perf_counter()
        if self.on_batch is not None:
            self.on_batch(n, t1 - t0)
        for row, (stream, window) in enumerate(taken):
            try:
                stream.publish(window, logits[row], t0, t1)
            except Exception as exc:  # one stream's sink (a full disk...) must not stop the others
                stream.sink_failed(exc)
