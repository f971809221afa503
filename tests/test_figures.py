"""The PNG figures: a confusion matrix and a video's timeline, written whole, of the size promised."""

from __future__ import annotations

import cv2
import numpy as np

from c3d_rt.core.figures import save_confusion_png, save_timeline_png

LABELS = ["walk", "run", "jump", "sit", "wave", "clap", "fall"]


def timeline_probs(n: int, switch: int) -> np.ndarray:
    probs = np.full((n, len(LABELS)), 0.02)
    probs[:switch, 0], probs[switch:, 1] = 0.88, 0.88
    return probs


def test_timeline_png_is_a_1200_by_400_image_that_follows_its_input(tmp_path):
    times = (np.arange(30) * 8 + 8) / 25
    a = save_timeline_png(tmp_path / "a.png", times, timeline_probs(30, 10), LABELS,
                          [("walk", 0.0, 3.5), ("run", 3.5, 9.9)], title="video a")
    b = save_timeline_png(tmp_path / "sub" / "b.png", times, timeline_probs(30, 20), LABELS,
                          [("walk", 0.0, 6.7), ("run", 6.7, 9.9)], title="video b")
    image_a, image_b = cv2.imread(str(a)), cv2.imread(str(b))
    assert image_a is not None and image_a.shape == (400, 1200, 3)
    assert image_b is not None and image_b.shape == (400, 1200, 3)
    assert not np.array_equal(image_a, image_b)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.png", "b.png", "sub"]  # no temporary file left


def test_timeline_draws_a_segments_class_even_outside_the_top_and_a_video_without_segments(tmp_path):
    times = np.arange(5) / 2
    probs = timeline_probs(5, 2)
    plain = cv2.imread(str(save_timeline_png(tmp_path / "p.png", times, probs, LABELS, [], top=1)))
    shaded = cv2.imread(str(save_timeline_png(tmp_path / "s.png", times, probs, LABELS, [("fall", 0.5, 1.5)], top=1)))
    assert plain.shape == shaded.shape == (400, 1200, 3)
    assert not np.array_equal(plain, shaded)


def test_confusion_png_is_written_atomically(tmp_path):
    path = save_confusion_png([[3, 1], [0, 4]], ["a", "b"], tmp_path / "cm.png", title="t")
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] == image.shape[1] and image.shape[0] > 100
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]
