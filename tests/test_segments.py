"""`predict`'s analysis: smoothing, video-level labels, segments and video-level accuracy, on synthetic probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from c3d_rt.offline.accuracy import class_of, video_accuracy
from c3d_rt.offline.segments import NoWindowsError, find_segments, smooth, video_level

LABELS = ["A", "B", "C"]
CLIP, STRIDE, FPS = 16, 8, 25.0


def windows(n: int) -> tuple[np.ndarray, np.ndarray]:
    first = np.arange(n) * STRIDE
    return first, first + CLIP - 1


def one_hot(sequence: str, high: float = 0.9) -> np.ndarray:
    """A window a letter ("A", "B", "C"; "." a window of no clear class): its class at ``high``, the rest shared."""
    probs = np.full((len(sequence), len(LABELS)), 1 / len(LABELS))
    for i, ch in enumerate(sequence):
        if ch != ".":
            probs[i] = (1 - high) / (len(LABELS) - 1)
            probs[i, LABELS.index(ch)] = high
    return probs


def segments_of(probs: np.ndarray, threshold: float = 0.5, min_gap_s: float = 0.0, n_frames: int | None = None):
    first, last = windows(len(probs))
    frames = n_frames if n_frames is not None else int(last[-1]) + 1 if len(probs) else 0
    return find_segments(probs, first, last, FPS, LABELS, threshold, min_gap_s, frames)


@pytest.mark.parametrize("boundary", [76, 80, 84, 88, 92, 95])
def test_back_to_back_clips_of_two_classes_give_a_boundary_within_one_stride(boundary):
    # frames before ``boundary`` show A, after it B; a window's probabilities follow the share of its frames
    first, last = windows(20)
    n_frames = int(last[-1]) + 1
    share_a = np.clip((boundary - first) / CLIP, 0, 1)
    probs = np.stack([0.05 + 0.9 * share_a, 0.05 + 0.9 * (1 - share_a), np.full(20, 0.05)], axis=1)
    found = find_segments(smooth(probs, 3), first, last, FPS, LABELS, 0.5, 0.0, n_frames)
    assert [s.label for s in found] == ["A", "B"]
    a, b = found
    assert a.start_frame == 0 and b.end_frame == n_frames and a.end_frame == b.start_frame
    assert abs(b.start_frame - boundary) <= STRIDE
    assert b.start_s == pytest.approx(b.start_frame / FPS) and a.end_s == pytest.approx(a.end_frame / FPS)
    assert a.windows + b.windows == 20


def test_ten_windows_of_each_class_split_halfway_between_their_centres():
    found = segments_of(one_hot("A" * 10 + "B" * 10))
    # window 9's centre is frame 80, window 10's 88: the boundary is 84
    assert [(s.label, s.start_frame, s.end_frame, s.windows) for s in found] == [("A", 0, 84, 10), ("B", 84, 168, 10)]
    assert found[0].mean_score == pytest.approx(0.9) and found[0].peak_score == pytest.approx(0.9)


def test_the_last_segment_ends_at_the_videos_last_frame_at_most():
    _, last = windows(4)
    assert segments_of(one_hot("AAAA"), n_frames=200)[0].end_frame == int(last[-1]) + 1
    assert segments_of(one_hot("AAAA"), n_frames=40)[0].end_frame == 40


def test_windows_below_the_threshold_have_no_label():
    probs = one_hot("AAAA....BBBB")
    found = segments_of(probs, threshold=0.5)
    assert [s.label for s in found] == ["A", "B"]
    assert found[0].end_frame < found[1].start_frame  # the unlabelled stretch lies between them
    assert segments_of(probs, threshold=0.95) == []  # nothing is that sure
    low = segments_of(probs, threshold=0.3)  # the flat windows' top-1 (A, the first of equals) is 1/3: labelled
    assert [(s.label, s.windows) for s in low] == [("A", 8), ("B", 4)]


def test_a_short_dip_is_merged_and_a_long_one_is_not():
    short = segments_of(one_hot("AAAAA.AAAAA"), min_gap_s=0.5)  # the dip owns 8 frames = 0.32 s
    assert [(s.label, s.windows) for s in short] == [("A", 11)]
    assert short[0].mean_score == pytest.approx((10 * 0.9 + 1 / 3) / 11)  # the dip's window counts in the score
    long_dip = segments_of(one_hot("AAAAA.....AAAAA"), min_gap_s=0.5)  # 40 frames = 1.6 s
    assert [s.label for s in long_dip] == ["A", "A"]
    assert [s.label for s in segments_of(one_hot("AAAAA.AAAAA"), min_gap_s=0.0)] == ["A", "A"]


def test_segments_are_not_merged_across_a_segment_of_another_label():
    found = segments_of(one_hot("AAAAA.B.AAAAA"), min_gap_s=5.0)
    assert [s.label for s in found] == ["A", "B", "A"]


def test_smoothing_removes_a_one_window_flicker():
    probs = one_hot("AAAAABAAAAA")
    assert [s.label for s in segments_of(probs)] == ["A", "B", "A"]
    assert [s.label for s in segments_of(smooth(probs, 3))] == ["A"]


def test_smooth_is_a_centred_average_that_averages_what_exists_at_the_edges():
    probs = np.arange(10, dtype=np.float64).reshape(5, 2)  # rows (0,1) (2,3) (4,5) (6,7) (8,9)
    assert np.array_equal(smooth(probs, 1), probs)
    out = smooth(probs, 3)
    assert np.allclose(out[0], (probs[0] + probs[1]) / 2) and np.allclose(out[4], (probs[3] + probs[4]) / 2)
    assert np.allclose(out[2], probs[1:4].mean(axis=0))
    assert np.allclose(smooth(probs, 100), probs.mean(axis=0))
    assert smooth(np.zeros((0, 2)), 3).shape == (0, 2)
    with pytest.raises(ValueError, match="at least 1"):
        smooth(probs, 0)


def test_video_level_is_the_mean_and_clips_takes_evenly_spaced_windows():
    probs = one_hot("AAAAAAAAAB")
    assert np.allclose(video_level(probs), probs.mean(axis=0))
    # 2 clips: the first and the last window
    assert np.allclose(video_level(probs, clips=2), (probs[0] + probs[9]) / 2)
    # 4 clips: windows 0, 3, 6, 9 (linspace 0, 3, 6, 9)
    assert np.allclose(video_level(probs, clips=4), probs[[0, 3, 6, 9]].mean(axis=0))
    assert np.allclose(video_level(probs, clips=50), probs.mean(axis=0))  # more clips than windows: all of them


def test_no_windows_gives_no_segments_and_no_video_level_label():
    first, last = windows(0)
    assert find_segments(np.zeros((0, 3)), first, last, FPS, LABELS, 0.5, 1.0, 10) == []
    with pytest.raises(NoWindowsError, match="shorter than one clip"):
        video_level(np.zeros((0, 3)))


def test_a_zero_frame_rate_is_refused():
    first, last = windows(3)
    with pytest.raises(ValueError, match="fps must be positive"):
        find_segments(one_hot("AAA"), first, last, 0.0, LABELS, 0.5, 1.0, 40)


def test_segment_to_dict_rounds_times_and_scores():
    from c3d_rt.offline.segments import Segment

    d = Segment("A", 0, 84, 0.0, 84 / 25 + 1e-9, 0.123456789, 0.9, 10).to_dict()
    assert d == {"label": "A", "start_frame": 0, "end_frame": 84, "start_s": 0.0, "end_s": 3.36,
                 "mean_score": 0.123457, "peak_score": 0.9, "windows": 10}


def test_video_accuracy_counts_top1_top5_and_the_confusion_matrix():
    labels = [f"c{i}" for i in range(7)]
    probs = np.zeros((4, 7))
    probs[0, 0] = 1  # c0 right
    probs[1, [2, 1]] = [0.6, 0.4]  # c1 taken for c2, second
    probs[2, [0, 1, 3, 4, 5, 6]] = [0.3, 0.25, 0.2, 0.1, 0.1, 0.05]  # c2 sixth: outside the top 5
    probs[3, [2, 1, 3, 4, 5, 6]] = [0.5, 0.1, 0.1, 0.1, 0.1, 0.1]  # c0 taken for c2, and last
    result = video_accuracy(["c0", "c1", "c2", "c0"], probs, labels)
    assert result["videos"] == 4 and result["k"] == 5
    assert result["top1"] == pytest.approx(0.25) and result["top5"] == pytest.approx(0.5)
    confusion = np.array(result["confusion"])
    assert confusion.shape == (7, 7) and confusion.sum() == 4
    assert confusion[0, 0] == 1 and confusion[0, 2] == 1 and confusion[1, 2] == 1 and confusion[2, 0] == 1
    assert result["per_class"]["c0"] == {"videos": 2, "correct": 1, "predicted": 2, "top1": 0.5}
    assert result["per_class"]["c2"]["predicted"] == 2 and result["per_class"]["c6"]["top1"] is None


def test_video_accuracy_with_fewer_than_five_classes_uses_them_all_for_top_k():
    result = video_accuracy(["A", "B"], one_hot("BA"), LABELS)
    assert result["k"] == 3 and result["top1"] == 0.0 and result["top5"] == 1.0
    with pytest.raises(ValueError, match="not the model's"):
        video_accuracy(["A", "Z"], one_hot("AB"), LABELS)


def test_class_of_is_the_folder_a_video_sits_in_where_the_model_knows_it():
    assert class_of(Path("A/v_A_g01_c01.avi"), LABELS) == "A"
    assert class_of(Path("test/B/clip.mp4"), LABELS) == "B"
    assert class_of(Path("B/frames_of_a_video"), LABELS) == "B"  # a folder of frame images
    assert class_of(Path("clip.mp4"), LABELS) is None
    assert class_of(Path("holiday/clip.mp4"), LABELS) is None
    assert class_of(Path("A/B.mp4"), ["B"]) is None  # the file's own name does not count
