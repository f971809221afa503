"""The motion data sets: class names say what the camera does, on textures and on real footage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from c3d_rt.synth import MOTIONS, CameraPath, render_view, view_texture

W, H = 171, 128


def _gray(frame: np.ndarray) -> np.ndarray:
    return np.float32(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))


def _views(motion: str, t1: float) -> tuple[np.ndarray, np.ndarray]:
    texture = view_texture(np.random.default_rng(0), W, H)
    path = CameraPath(speed=4.0, zoom_rate=0.03, turn_rate=3.0)
    return render_view(texture, MOTIONS[motion], path, 0, W, H), render_view(texture, MOTIONS[motion], path, t1, W, H)


@pytest.mark.parametrize("motion, shift", [("pan_right", (-4, 0)), ("pan_left", (4, 0)),
                                           ("tilt_down", (0, -4)), ("tilt_up", (0, 4))])
def test_a_pan_slides_the_scene_the_other_way(motion, shift):
    """A camera panning right sees the scene slide left, as a real one does: a model trained here names a
    real camera's motion correctly."""
    first, second = _views(motion, 1)
    (dx, dy), _ = cv2.phaseCorrelate(_gray(first), _gray(second))
    assert (dx, dy) == pytest.approx(shift, abs=0.5)


def _best_similarity(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """The (scale, on-screen counter-clockwise degrees) that best maps ``first`` onto ``second``."""
    errors = {}
    for scale in (0.9, 1.0, 1.1):
        for angle in (-9.0, 0.0, 9.0):
            warped = cv2.warpAffine(first, cv2.getRotationMatrix2D((W / 2, H / 2), angle, scale), (W, H))
            errors[scale, angle] = np.abs(_gray(warped) - _gray(second))[30:98, 40:130].mean()
    return min(errors, key=errors.get)


@pytest.mark.parametrize("motion, scale, angle", [("zoom_in", 1.1, 0.0), ("zoom_out", 0.9, 0.0),
                                                  ("rotate_cw", 1.0, 9.0), ("rotate_ccw", 1.0, -9.0)])
def test_zoom_magnifies_and_a_clockwise_roll_turns_the_scene_counter_clockwise(motion, scale, angle):
    first, second = _views(motion, 3)
    assert _best_similarity(first, second) == (scale, angle)
