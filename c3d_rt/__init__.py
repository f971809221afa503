"""c3d-rt: C3D action recognition from training to a live camera."""

from .config import ModelConfig, Preprocessing, TrainConfig

__version__ = "0.1.0"
__all__ = ["C3D", "ModelConfig", "Preprocessing", "TrainConfig", "build_c3d", "__version__"]


def __getattr__(name: str):
    """``C3D`` and ``build_c3d`` on first use: importing the package (the CLI, a live box) needs no torch."""
    if name in ("C3D", "build_c3d"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
