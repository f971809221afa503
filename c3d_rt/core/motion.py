"""Camera motion, as a camera operator names it: the nine motions, a virtual camera's path and the view it sees.

The synthetic set (:mod:`c3d_rt.data.synth`), its real-footage variant (:mod:`c3d_rt.data.footage`) and the
live synthetic camera (:mod:`c3d_rt.runtime.sources`) all render through :func:`camera_matrix`. OpenCV and
NumPy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# class name -> (dx, dy, zoom, rotate) unit motion of the camera per frame
MOTIONS: dict[str, tuple[float, float, float, float]] = {
    "static": (0, 0, 0, 0),
    "pan_left": (-1, 0, 0, 0),
    "pan_right": (1, 0, 0, 0),
    "tilt_up": (0, -1, 0, 0),
    "tilt_down": (0, 1, 0, 0),
    "zoom_in": (0, 0, 1, 0),
    "zoom_out": (0, 0, -1, 0),
    "rotate_cw": (0, 0, 0, 1),
    "rotate_ccw": (0, 0, 0, -1),
}


def random_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A colourful texture with structure at every scale and many sharp edges to track."""
    texture = np.zeros((size, size, 3), np.float32)
    for cells in (4, 16, 64):
        noise = rng.random((cells, cells, 3), dtype=np.float32)
        texture += cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC) * (96 / math.sqrt(cells))
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    for _ in range(int(rng.integers(size // 4, size // 2))):
        color = tuple(float(c) for c in rng.integers(0, 256, 3))
        center = tuple(int(c) for c in rng.integers(0, size, 2))
        radius = int(rng.integers(3, max(4, size // 14)))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.circle(texture, center, radius, color, -1)
        elif kind == 1:
            half = rng.integers(2, radius + 1, 2)
            cv2.rectangle(texture, tuple(int(c - h) for c, h in zip(center, half)),
                          tuple(int(c + h) for c, h in zip(center, half)), color, -1)
        else:
            end = tuple(int(c + d) for c, d in zip(center, rng.integers(-3 * radius, 3 * radius + 1, 2)))
            cv2.line(texture, center, end, color, int(rng.integers(1, 4)))
    return texture.astype(np.uint8)


def view_texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random texture large enough that a width x height view stays inside it while it pans, zooms and turns."""
    return random_texture(rng, int(2.2 * math.hypot(width, height)))


@dataclass(frozen=True)
class CameraPath:
    """How fast a virtual camera moves: drawn at random once per clip."""

    speed: float  # pixels per frame (pan, tilt)
    zoom_rate: float  # relative scale change per frame
    turn_rate: float  # degrees per frame

    @classmethod
    def draw(cls, rng: np.random.Generator, width: int, pace: float = 1.0) -> "CameraPath":
        scale_px = width / 171  # speeds are tuned at the reference resolution
        return cls(rng.uniform(2.5, 5.0) * scale_px * pace, rng.uniform(0.015, 0.03) * pace,
                   rng.uniform(1.2, 2.5) * pace)


def camera_matrix(motion: tuple[float, float, float, float], path: CameraPath, tc: float, width: int, height: int,
                  centre: tuple[float, float], scale: float = 1.0) -> np.ndarray:
    """Where each pixel of the camera's ``width x height`` view samples the scene at centred time ``tc``.

    A 2x3 matrix from view pixels to scene pixels, for ``cv2.warpAffine(..., WARP_INVERSE_MAP)``. The view's
    middle looks at ``centre`` of the scene; one view pixel spans ``scale`` scene pixels. Motions are the
    camera's own, as a camera operator names them: ``pan_right`` turns the camera right, so the scene slides
    left across the picture; ``zoom_in`` magnifies it; ``tilt_down`` slides it up; ``rotate_cw`` rolls the
    camera clockwise, so the scene turns counter-clockwise on screen.
    """
    dx, dy, dz, dr = motion
    zoom = math.exp(-dz * path.zoom_rate * tc)  # zooming in, the view covers less of the scene
    # getRotationMatrix2D's positive angle turns the sampling grid counter-clockwise on screen, so the
    # picture turns clockwise: a camera rolling clockwise needs the opposite sign.
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), -dr * path.turn_rate * tc, zoom * scale)
    matrix[0, 2] += centre[0] - width / 2 + dx * path.speed * scale * tc  # the view follows the camera
    matrix[1, 2] += centre[1] - height / 2 + dy * path.speed * scale * tc
    return matrix


def render_view(texture: np.ndarray, motion: tuple[float, float, float, float], path: CameraPath, tc: float,
                width: int, height: int) -> np.ndarray:
    """The camera's view of the middle of ``texture`` at centred time ``tc`` (frames from the clip's middle)."""
    half = texture.shape[0] / 2
    matrix = camera_matrix(motion, path, tc, width, height, (half, half))
    return cv2.warpAffine(texture, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)
