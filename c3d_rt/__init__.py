"""c3d-rt: C3D action recognition from training to a live camera."""

from .core.config import ModelConfig, Preprocessing, TrainConfig
from .core.version import __version__

# The stages, lowest first: a module imports only from its own stage and from stages of a lower layer
# (tests/test_layers.py holds every import to it; the README's "Where things are" draws it).
LAYERS = {
    "core": 0,  # the C3D contract, preprocessing, errors, console, files, machine facts, camera motion
    "artifacts": 1, "data": 1, "model": 1,  # self-describing model files; videos and data sets; the network
    "engines": 2, "training": 2,  # one engine layer for everyone; the trainer
    "runtime": 3, "export": 3, "offline": 3,  # the live recognizer; writers and their proof; recorded videos
    "serve": 4, "bench": 4,  # many cameras through one engine; every engine side by side
    "demo": 5,  # the whole path on the built-in set
    "cli": 6,  # the `c3d-rt` command line
}

__all__ = ["LAYERS", "C3D", "ModelConfig", "Preprocessing", "TrainConfig", "build_c3d", "__version__"]


def __getattr__(name: str):
    """``C3D`` and ``build_c3d`` on first use: importing the package (the CLI, a live box) needs no torch."""
    if name in ("C3D", "build_c3d"):
        from .model import c3d

        return getattr(c3d, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
