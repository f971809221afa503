"""The ring of the newest ``clip_len`` preprocessed frames, and which window the model runs next.

The capture thread pushes frames; every ``frame_interval``-th frame of the
stream is preprocessed once, with the one implementation in
:mod:`c3d_rt.core.transforms`, straight into a preallocated slot. Every ``stride``
pushed frames a window becomes *due*. The inference thread takes windows:

* from a **live** source it only takes a window that became due while it was
  waiting; windows that became due while the model was busy are stale and are
  counted as dropped, never run late;
* from a **pull** source (a file read as fast as the pipeline takes it) the
  capture thread waits until the due window was taken, so none is dropped.

Memory is fixed at start: ``(3, T, c, c)`` float32 plus a few numbers per slot.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.config import Preprocessing
from ..core.transforms import normalize_crop, resize_frame


@dataclass
class Window:
    """What the inference thread received: which frames, and when they were read and preprocessed."""

    frame_indices: list[int]  # source frame index of each of the T frames, oldest first
    t_read_newest: float  # perf_counter() when the newest frame was read
    t_ready: float  # when the newest frame was in the ring (the window became complete)
    t_taken: float  # when the window was copied out for the model
    preprocess_ms: float  # preprocessing time of the newest frame


class FrameRing:
    def __init__(self, prep: Preprocessing, stride: int = 1, wait_for_consumer: bool = False,
                 on_due: Callable[[], None] | None = None) -> None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.prep, self.stride, self.wait_for_consumer = prep, stride, wait_for_consumer
        self.on_due = on_due  # told (under the ring's lock: keep it short) whenever a window becomes due
        T, c = prep.clip_len, prep.crop_size
        self.clips = np.zeros((3, T, c, c), np.float32)  # (C, T, H, W); slot t is clips[:, t]
        self.frame_index = np.full(T, -1, np.int64)
        self.t_read = np.zeros(T)
        self.t_ready = np.zeros(T)
        self.preprocess_ms = np.zeros(T)
        self.top, self.left = prep.center_offsets
        self.pushed = 0  # frames written into the ring so far
        self.due_seq = 0  # value of ``pushed`` when the newest due window completed
        self.taken_seq = 0  # ``due_seq`` of the last window taken
        self.windows_due = 0
        self.windows_taken = 0
        self.closed = False
        self._cond = threading.Condition()

    def wants(self, frame_index: int) -> bool:
        """Whether this stream frame is sampled (every ``frame_interval``-th, as in training)."""
        return frame_index % self.prep.frame_interval == 0

    def push(self, image_bgr: np.ndarray, frame_index: int, t_read: float) -> bool:
        """Preprocess a sampled frame into the next slot; return False for frames the model does not sample."""
        if not self.wants(frame_index):
            return False
        t0 = time.perf_counter()
        resized = resize_frame(image_bgr, self.prep)  # outside the lock: the consumer may be copying
        resize_s = time.perf_counter() - t0
        with self._cond:
            while self.wait_for_consumer and self.due_seq > self.taken_seq and not self.closed:
                self._cond.wait()
            t1 = time.perf_counter()
            slot = self.pushed % self.prep.clip_len
            normalize_crop(resized, self.prep, self.top, self.left, out=self.clips[:, slot])
            now = time.perf_counter()
            self.frame_index[slot], self.t_read[slot], self.t_ready[slot] = frame_index, t_read, now
            self.preprocess_ms[slot] = (resize_s + now - t1) * 1e3
            self.pushed += 1
            if self.pushed >= self.prep.clip_len and (self.pushed - self.prep.clip_len) % self.stride == 0:
                self.due_seq = self.pushed
                self.windows_due += 1
                self._cond.notify_all()
                if self.on_due is not None:
                    self.on_due()
        return True

    def take(self, out: np.ndarray, timeout: float | None = None) -> Window | None:
        """Copy the next window into ``out`` ``(3, T, c, c)``, oldest frame first.

        Returns None when the ring is closed (and, for a pull source, drained) or on timeout.
        """
        with self._cond:
            seen = self.taken_seq if self.wait_for_consumer else self.due_seq  # live: what is due now is stale
            if not self._cond.wait_for(lambda: self.due_seq > seen or self.closed, timeout):
                return None
            if self.due_seq <= seen:
                return None  # closed with nothing new
            return self._copy_out(out)

    def take_ready(self, out: np.ndarray) -> Window | None:
        """Without waiting: copy the newest frames into ``out`` if a window is due and not yet taken.

        This is how one consumer serves many rings (``c3d-rt serve``'s batcher): it
        polls every ring when any of them says a window is due. A live window that
        waited for the model is taken with the newest frames in the ring, so it may
        be a frame or two fresher than the one that became due; its frame indices
        say which frames it holds.
        """
        with self._cond:
            if self.due_seq <= self.taken_seq:
                return None
            return self._copy_out(out)

    def _copy_out(self, out: np.ndarray) -> Window:
        """Called with the lock held."""
        order = (self.pushed + np.arange(self.prep.clip_len)) % self.prep.clip_len  # oldest slot first
        np.take(self.clips, order, axis=1, out=out)
        newest = order[-1]
        window = Window(self.frame_index[order].tolist(), float(self.t_read[newest]),
                        float(self.t_ready[newest]), time.perf_counter(), float(self.preprocess_ms[newest]))
        self.taken_seq = self.due_seq
        self.windows_taken += 1
        self._cond.notify_all()
        return window

    def close(self) -> None:
        """No more frames: wake everyone waiting."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    @property
    def windows_dropped(self) -> int:
        return self.windows_due - self.windows_taken
