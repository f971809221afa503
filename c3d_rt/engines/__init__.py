"""One engine layer for everyone: the live recognizer, the bench, the exporter's proof and ``auto``.

    from c3d_rt.engines import load_engine, choose
    engine = load_engine("export/", "openvino", "int8")   # or: engine, choice = choose("export/")
    logits = engine(clips)                                # (B, 3, T, H, W) float32 -> (B, classes)

Runtimes are imported only when an engine of theirs is loaded, so a machine with
ONNX Runtime alone (no torch, no OpenVINO) runs the ONNX engines.

Owns: the Engine contract (:mod:`.base`), the engine table (:mod:`.registry`), resolving a request to a plan
(:mod:`.resolve`), ``auto`` (:mod:`.auto`), the equivalence rules (:mod:`.equivalence`), one module per
runtime (:mod:`.pytorch`, :mod:`.ort`, :mod:`.openvino`, :mod:`.triton`). May import: core, artifacts,
model (the torch engine only, lazily: loading a checkpoint needs torch).
"""

from ..artifacts.formats import FORMATS, Format
from .auto import choose, open_engine
from .base import DEVICES, PRECISIONS, Engine, EngineError, EngineUnavailable, Plan, time_calls
from .registry import ENGINES, engine_options, load_plan, resolve_device
from .resolve import load_engine, plans, resolve

__all__ = ["DEVICES", "ENGINES", "FORMATS", "PRECISIONS", "Engine", "EngineError", "EngineUnavailable", "Format",
           "Plan", "choose", "engine_options", "load_engine", "open_engine", "load_plan", "plans", "resolve",
           "resolve_device", "time_calls"]
