"""What reaches the user's terminal: no third-party advice, and progress bars only where they draw in place.

Known, harmless warnings of the libraries underneath are filtered at the source (each entry says why it is
not the user's to act on); the video decoders' own diagnostics ("moov atom not found", "[mjpeg @ ...] error
count", OpenCV's "[ WARN] ... VIDEOIO(FFMPEG)") are turned off by their own log levels, and c3d-rt names the file and
what it does about it instead; ``c3d-rt --verbose`` shows them all. Nothing here redirects file descriptor 2: that
would hide every thread's messages (a traceback, an ``error:`` line) along with the decoders'. Progress bars draw
only on a terminal; in a file or a CI log each stage says one line instead (the commands' own log lines). Torch-free.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

import cv2

VERBOSE_ENV = "C3D_RT_VERBOSE"  # an environment variable, so DataLoader workers and subprocesses inherit it

# (category, message regex, module regex, why it is harmless). Filters match at warn time, so they hold for
# libraries imported later too.
HARMLESS_WARNINGS = (
    (DeprecationWarning, "", r"torch\.jit", "TorchScript is deprecated since torch 2.10; c3d-rt still offers it for "
                                            "LibTorch users, knowingly"),
    (FutureWarning, "", r"torch\.onnx", "torch.onnx's notes about its own tree specs and defaults; c3d-rt passes "
                                        "every option explicitly"),
    (UserWarning, r".*(TorchScript|torch\.jit|_check_is_size|pytree)", r"torch", "torch's notes on its own "
                                                                                  "internals during tracing/export"),
    (UserWarning, r"Failed to initialize NumPy", r"torch", "torch built against another NumPy: c3d-rt never hands "
                                                           "torch a NumPy array it would need that for"),
)
# Loggers whose INFO/WARNING advice is for library developers ("torchvision is not installed" for ops c3d-rt
# never uses; ONNX Runtime's quantiser's "pre-processing" advice, for models with shape-inference problems).
HARMLESS_LOGGERS = ("torch.onnx", "torch.onnx._internal.exporter._registration", "torch._inductor", "torch._dynamo",
                    "torch.export", "")
# The decoders' own log levels, set (unless the user set them) before OpenCV first opens a video: FFmpeg inside
# OpenCV reads OPENCV_FFMPEG_LOGLEVEL once, and -8 is AV_LOG_QUIET; OpenCV's own log ("[ WARN] ... VIDEOIO(FFMPEG):
# backend is generally available but can't be used to capture by name" for a broken file) keeps its errors. What a
# broken file means is said by c3d-rt, with the file's name ("skipping DATA/a/x.mp4: unreadable or empty video").
# (OpenCV's own AVI reader, which prints "Unexpected element" with fprintf, is never used: c3d_rt.data.video opens
# files with the FFmpeg backend.)
DECODER_LOG_ENV = {"OPENCV_FFMPEG_LOGLEVEL": "-8", "OPENCV_LOG_LEVEL": "ERROR"}
OUR_PACKAGE = Path(__file__).resolve().parents[1]


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def set_verbose(on: bool) -> None:
    """``--verbose``: every third-party warning and log line reaches the user."""
    if on:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def filter_harmless_warnings() -> None:
    """Install the filters of :data:`HARMLESS_WARNINGS` for the whole process (nothing with ``--verbose``), quiet
    the video decoders, and show c3d-rt's own warnings as one line each."""
    warnings.formatwarning = format_warning
    quiet_decoder_logs()
    if verbose():
        warnings.simplefilter("default")
        return
    for category, message, module, _why in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


_python_formatwarning = warnings.formatwarning


def format_warning(message, category, filename, lineno, line=None) -> str:
    """c3d-rt's own warnings as ``warning: MESSAGE`` (what it says is for the user, not where in our code it was
    said); everyone else's as Python formats them."""
    if category is UserWarning and Path(filename).resolve().is_relative_to(OUR_PACKAGE):
        return f"warning: {message}\n"
    return _python_formatwarning(message, category, filename, lineno, line)


def quiet_decoder_logs() -> None:
    """Turn the video decoders' own logging off (:data:`DECODER_LOG_ENV`) unless the user set it; on with
    ``--verbose``.

    Environment variables, so DataLoader workers and subprocesses inherit them; they must be set before OpenCV
    first opens a video in the process, which :func:`c3d_rt.data.video.open_video` ensures by calling this.
    """
    for name, value in DECODER_LOG_ENV.items():
        if not verbose():
            os.environ.setdefault(name, value)
        elif os.environ.get(name) == value:
            del os.environ[name]  # inherited from a quiet c3d-rt (or set so by hand): --verbose shows all
    _match_opencv_log_level()


def _match_opencv_log_level() -> None:
    """OpenCV reads OPENCV_LOG_LEVEL when it is imported, often before :func:`quiet_decoder_logs` runs: give this
    process the level the variable says now (subprocesses read the variable itself). Unset is OpenCV's default."""
    logging_ = cv2.utils.logging
    levels = {"SILENT": logging_.LOG_LEVEL_SILENT, "DISABLED": logging_.LOG_LEVEL_SILENT,
              "FATAL": logging_.LOG_LEVEL_FATAL, "ERROR": logging_.LOG_LEVEL_ERROR,
              "WARNING": logging_.LOG_LEVEL_WARNING, "WARN": logging_.LOG_LEVEL_WARNING,
              "INFO": logging_.LOG_LEVEL_INFO, "DEBUG": logging_.LOG_LEVEL_DEBUG, "VERBOSE": logging_.LOG_LEVEL_VERBOSE}
    level = levels.get(os.environ.get("OPENCV_LOG_LEVEL", "WARNING").upper())
    if level is not None and logging_.getLogLevel() != level:
        logging_.setLogLevel(level)


@contextlib.contextmanager
def quiet_third_party():
    """Silence the converters' advice while they write (torch.onnx, TorchScript, torch.export, AOTInductor, ONNX
    Runtime's quantiser): none of it is the user's to act on. Errors still show; ``--verbose`` shows all."""
    if verbose():
        yield
        return
    loggers = [logging.getLogger(name) for name in HARMLESS_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a bar the caller wants: None draws it on a terminal only (not in a file or CI log)."""
    return None if progress else True
