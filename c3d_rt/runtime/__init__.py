"""The real-time recognizer: frame sources, the ring of preprocessed frames, ONNX Runtime sessions, sinks."""

from .backends import BackendError, OrtModel
from .runner import LiveRecognizer, Prediction, RunSettings, RunSummary, run_live
from .sources import SourceError, open_source

__all__ = ["BackendError", "LiveRecognizer", "OrtModel", "Prediction", "RunSettings", "RunSummary", "SourceError",
           "open_source", "run_live"]
