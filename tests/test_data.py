import numpy as np
import pytest

from c3d_rt.core.config import Preprocessing
from c3d_rt.core.transforms import preprocess_clip, preprocess_frame
from c3d_rt.data.datasets import VideoClipDataset, clip_indices, read_clip_frames
from c3d_rt.data.splits import group_split, load_data_split

from .conftest import write_video

PREP = Preprocessing(clip_len=16, resize_wh=(49, 37), crop_size=32)


def test_clip_indices_follow_frame_interval_and_loop_short_videos():
    assert clip_indices(100, 4, 4, 10) == [10, 14, 18, 22]
    assert clip_indices(5, 8, 1, 0) == [0, 1, 2, 3, 4, 0, 1, 2]


def test_frames_come_from_the_requested_indices(tmp_path):
    path = write_video(tmp_path / "v.avi", 40, size=(64, 48))
    frames = read_clip_frames(path, 40, clip_len=4, interval=3)  # centred: start (40-10)//2 = 15
    bright_cols = [int(np.argmax(f.mean(axis=(0, 2)))) for f in frames]
    assert bright_cols == [15, 18, 21, 24]


def test_numpy_clip_equals_per_frame_preprocessing():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(16)]
    clip = preprocess_clip(frames, PREP)
    for t, frame in enumerate(frames):
        np.testing.assert_array_equal(clip[:, t], preprocess_frame(frame, PREP))
    # the centre crop of a resized frame minus the BGR mean, channel first
    import cv2
    expected = cv2.resize(frames[0], (49, 37)).astype(np.float32)[3:35, 9:41] - np.float32([90, 98, 102])
    np.testing.assert_allclose(clip[:, 0], expected.transpose(2, 0, 1))


def test_dataset_skips_empty_and_survives_truncated_files(tmp_path):
    root = tmp_path / "data"
    for i in range(3):
        write_video(root / "a" / f"a_g{i:02d}_c01.avi", 30, seed=i)
        write_video(root / "b" / f"b_g{i:02d}_c01.avi", 30, seed=10 + i)
    (root / "a" / "empty.avi").write_bytes(b"")
    good = (root / "b" / "b_g00_c01.avi").read_bytes()
    (root / "b" / "truncated.avi").write_bytes(good[: len(good) // 3])
    split = load_data_split(root, val_fraction=0.0)
    with pytest.warns(UserWarning, match="empty.avi"):
        dataset = VideoClipDataset(root, split.train, split.classes, PREP, train=True)
    assert dataset.skipped == ["a/empty.avi"]
    assert len(dataset) == 7
    for i in range(len(dataset)):
        clip, label = dataset[i]
        assert clip.shape == (3, 16, 32, 32) and clip.dtype == np.float32 and label in (0, 1)


def test_group_split_keeps_groups_on_one_side():
    videos = [f"C{c}/v_C{c}_g{g:02d}_c{k:02d}.avi" for c in range(3) for g in range(1, 11) for k in range(1, 4)]
    train, val = group_split(videos, 0.2, seed=1)
    group = lambda p: p.split("_c")[0]  # noqa: E731
    assert {group(p) for p in train}.isdisjoint({group(p) for p in val})
    assert len(val) == 3 * 2 * 3 and len(train) + len(val) == len(videos)
    assert group_split(videos, 0.2, seed=1) == (train, val)  # deterministic
