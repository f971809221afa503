"""What reaches the user's terminal: no third-party advice, and progress bars only where they draw in place.

Known, harmless warnings of the libraries underneath are filtered at the source (each entry says why it is
not the user's to act on); ``c3d-rt --verbose`` shows them all. Progress bars draw only on a terminal; in a
file or a CI log each stage says one line instead (the commands' own log lines). Torch-free.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

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


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def set_verbose(on: bool) -> None:
    """``--verbose``: every third-party warning and log line reaches the user."""
    if on:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def filter_harmless_warnings() -> None:
    """Install the filters of :data:`HARMLESS_WARNINGS` for the whole process (nothing with ``--verbose``)."""
    if verbose():
        warnings.simplefilter("default")
        return
    for category, message, module, _why in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


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
