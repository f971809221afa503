"""c3d-rt: C3D action recognition from training to a live camera."""

from .config import ModelConfig, Preprocessing, TrainConfig
from .model import C3D, build_c3d

__version__ = "0.1.0"
__all__ = ["C3D", "ModelConfig", "Preprocessing", "TrainConfig", "build_c3d", "__version__"]
