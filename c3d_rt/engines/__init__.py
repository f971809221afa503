"""One engine layer for everyone: the live recognizer, the bench, the exporter's proof and ``auto``.

    from c3d_rt.engines import load_engine, choose
    engine = load_engine("export/", "openvino", "int8")   # or: engine, choice = choose("export/")
    logits = engine(clips)                                # (B, 3, T, H, W) float32 -> (B, classes)

Runtimes are imported only when an engine of theirs is loaded, so a machine with
ONNX Runtime alone (no torch, no OpenVINO) runs the ONNX engines.
"""

from .base import Engine, EngineError, EngineUnavailable, time_calls
from .registry import (DEVICES, ENGINES, FORMATS, PRECISIONS, Format, Plan, engine_options, load_engine, load_plan,
                       plans, resolve, resolve_device)


def choose(*args, **kwargs):
    """``--engine auto``: see :func:`c3d_rt.engines.auto.choose`."""
    from .auto import choose as _choose

    return _choose(*args, **kwargs)


def open_engine(*args, **kwargs) -> Engine:
    """The engine a command asked for, ``auto`` included: see :func:`c3d_rt.engines.auto.open_engine`."""
    from .auto import open_engine as _open_engine

    return _open_engine(*args, **kwargs)


__all__ = ["DEVICES", "ENGINES", "FORMATS", "PRECISIONS", "Engine", "EngineError", "EngineUnavailable", "Format",
           "Plan", "choose", "engine_options", "load_engine", "open_engine", "load_plan", "plans", "resolve", "resolve_device", "time_calls"]
