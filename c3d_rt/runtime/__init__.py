"""The real-time recognizer: frame sources, the ring of preprocessed frames, the runner, sinks.

Models are loaded through :mod:`c3d_rt.engines`; nothing here loads a model itself. May import: core,
artifacts, engines. Torch-free.
"""

from .prediction import Prediction
from .runner import LiveRecognizer, RunSettings, RunSummary, run_live
from .sources import SourceError, open_source

__all__ = ["LiveRecognizer", "Prediction", "RunSettings", "RunSummary", "SourceError", "open_source", "run_live"]
