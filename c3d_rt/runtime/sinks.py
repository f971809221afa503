"""Where predictions go: an OpenCV window (only where a display really works), a JSON-lines log, a video file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: logs are not locked there
    fcntl = None

import cv2
import numpy as np

from ..core.errors import C3DError
from .prediction import Prediction

WINDOW_TITLE = "c3d-rt"
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or Esc
_PROBE = "import cv2; cv2.namedWindow('c3d-rt-probe'); cv2.waitKey(1); cv2.destroyAllWindows()"


class SinkError(C3DError):
    """An output that cannot be written."""


def display_unavailable_reason() -> str:
    """Empty when an OpenCV window can be opened here, else why not.

    OpenCV's Qt and GTK back-ends abort the whole process when no display can be
    reached, so the first window is opened in a child process; only if that
    works does the recognizer open one itself.
    """
    if "GUI:                           NONE" in cv2.getBuildInformation():
        return "this OpenCV has no GUI support (opencv-python-headless)"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "opening a window did not finish within 15 s"
    if probe.returncode != 0:
        detail = probe.stderr.decode(errors="replace").strip().splitlines()
        return f"opening a window failed ({detail[-1][:160] if detail else f'exit status {probe.returncode}'})"
    return ""


def annotate(image: np.ndarray, prediction: Prediction | None, status: str) -> np.ndarray:
    """A copy of ``image`` with the current label, its probability and a status line drawn on it."""
    out = image.copy()
    scale = max(0.4, out.shape[0] / 480)
    thickness = max(1, round(scale * 2))
    lines = []
    if prediction is not None:
        label = prediction.label if prediction.label is not None else "(below threshold)"
        lines.append(f"{label}  {prediction.score:.0%}")
    lines.append(status)
    y = int(28 * scale)
    for text in lines:
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7, thickness)
        cv2.rectangle(out, (4, y - h - 6), (12 + w, y + 6), (0, 0, 0), -1)
        cv2.putText(out, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7, (255, 255, 255), thickness, cv2.LINE_AA)
        y += int(h + 16 * scale)
    return out


class Display:
    """An OpenCV window; ``show`` returns True when the user pressed q or Esc."""

    def __init__(self) -> None:
        cv2.namedWindow(WINDOW_TITLE, cv2.WINDOW_NORMAL)

    def show(self, image: np.ndarray) -> bool:
        cv2.imshow(WINDOW_TITLE, image)
        return (cv2.waitKey(1) & 0xFF) in QUIT_KEYS

    def close(self) -> None:
        cv2.destroyAllWindows()


LOG_MODES = ("new", "append", "overwrite")  # a log that exists already: refused, added to, or replaced


class PredictionLog:
    """One JSON object per prediction, each written whole by one ``write`` call, so a crash loses nothing already
    logged and no line is ever half a line.

    The file is locked (``flock``, exclusive, not waiting) for as long as it is open: a second writer, in this
    process or another, is refused at once instead of interleaving its lines. ``mode`` says what happens to a log
    that exists already: ``new`` refuses it, ``append`` adds to it (``serve``: a stream removed and added again
    keeps its history), ``overwrite`` empties it when the run starts (:meth:`start`), not before, so a run that
    fails to start destroys nothing. ``option`` is what messages call it (``--log``, ``--log-dir``).
    """

    def __init__(self, path: str | Path, mode: str = "new", option: str = "--log") -> None:
        if mode not in LOG_MODES:
            raise ValueError(f"mode {mode!r}: expected one of {', '.join(LOG_MODES)}")
        self.path, self.mode, self.option = Path(path), mode, option
        self.lines = 0
        self.made = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]  # deepest first
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd, self.created = _open_for_appending(self.path)
        except OSError as exc:
            self._remove_made()
            raise SinkError(f"{option} {path}: cannot write there ({exc.strerror}).") from None
        try:
            self._lock()
            if mode == "new" and not self.created:
                raise SinkError(f"{option} {path}: already exists (an earlier run's predictions). Pass --append to "
                                "add to it, --overwrite to replace it, or another file name.")
        except BaseException:
            os.close(self.fd)
            self.fd = None
            self._remove_made()
            raise

    def _lock(self) -> None:
        if fcntl is None:  # no flock (Windows): one writer is the user's to ensure
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SinkError(f"{self.option} {self.path}: another run is writing it now (it is locked: two writers "
                            "would interleave their lines). Wait for that run to end, or write to another file."
                            ) from None
        except OSError as exc:
            raise SinkError(f"{self.option} {self.path}: cannot lock it for writing ({exc.strerror}); this file "
                            "system may not support locks: write the log to a local folder.") from None

    def start(self) -> None:
        """The run begins: ``overwrite`` empties the log now (the lock is held, so no one else is writing it)."""
        if self.mode == "overwrite" and self.fd is not None and not self.lines:
            os.ftruncate(self.fd, 0)

    def write(self, prediction: Prediction) -> None:
        data = (json.dumps(prediction.to_dict()) + "\n").encode()
        view = memoryview(data)
        while view:  # one write() for a regular file; the loop only guards a short write
            view = view[os.write(self.fd, view):]
        self.lines += 1

    def close(self, discard_unused: bool = False) -> None:
        """Release the log (the lock goes with it). ``discard_unused``: the run failed or never got going, so a log
        this object created and never wrote to is removed, with the folders made for it."""
        if self.fd is None:
            return
        if discard_unused and self.created and not self.lines:
            self.path.unlink(missing_ok=True)  # still locked: no one else can be writing it
            self._remove_made()
        os.close(self.fd)
        self.fd = None

    def _remove_made(self) -> None:
        for folder in self.made:
            try:
                folder.rmdir()
            except OSError:  # not empty (something else is there now) or gone
                return


def _open_for_appending(path: Path) -> tuple[int, bool]:
    """(descriptor, whether this call created the file): every write lands at the end, whatever others did."""
    flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666), True
    except FileExistsError:
        return os.open(path, flags), False


class VideoOutput:
    """The annotated video (mp4v in .mp4, or MJPG in .avi), written under a temporary name and renamed at the end."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps if fps > 0 else 25.0
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"--output {path}: cannot write there ({exc.strerror}).") from None

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            h, w = image.shape[:2]
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self.writer.isOpened():
                raise SinkError(f"--output {self.path}: OpenCV cannot write {self.fourcc} video here; "
                                "use a .mp4 or .avi name in a writable folder.")
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            os.replace(self.tmp, self.path)
