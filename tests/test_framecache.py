"""The decoded-frame cache: the same clips as the videos, bit for bit; resumable, invalidated, self-sufficient."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from c3d_rt.cli.app import app
from c3d_rt.core.config import Preprocessing
from c3d_rt.data.cache import cache_videos
from c3d_rt.data.datasets import VideoClipDataset
from c3d_rt.data.framecache import CACHE_DIR, CacheError, FrameCache, size_dir
from c3d_rt.data.splits import load_data_split

from .conftest import write_video

PREP = Preprocessing(clip_len=16, resize_wh=(49, 37), crop_size=32, frame_interval=2)


@pytest.fixture()
def data(tmp_path):
    """Two classes of real videos at another size than the model's (so the resize matters), one truncated, one
    empty."""
    root = tmp_path / "data"
    for i in range(3):
        write_video(root / "a" / f"a_g{i:02d}_c01.avi", 40 + i, size=(64, 48), seed=i)
        write_video(root / "b" / f"b_g{i:02d}_c01.avi", 20, size=(64, 48), seed=10 + i)
    good = (root / "b" / "b_g00_c01.avi").read_bytes()
    (root / "b" / "truncated.avi").write_bytes(good[: len(good) // 2])
    (root / "a" / "empty.avi").write_bytes(b"")
    return root


def clips(root, prep=PREP, train=True, use_cache=True, epochs=(0, 1)):
    split = load_data_split(root, val_fraction=0.0)
    with pytest.warns(UserWarning):  # the empty video
        ds = VideoClipDataset(root, split.train, split.classes, prep, train=train, use_cache=use_cache)
    out = []
    for epoch in epochs:
        ds.set_epoch(epoch)
        out += [ds[i][0] for i in range(len(ds))]  # numpy clips (the data set is torch-free)
    return ds, out


def test_cached_clips_equal_decoded_clips_bit_for_bit(data):
    raw_ds, raw = clips(data, use_cache=False)
    report = cache_videos(data, PREP, workers=2, progress=False)
    assert (report.cached, report.already, report.unreadable) == (7, 0, ["a/empty.avi"])
    cached_ds, cached = clips(data)
    assert len(cached_ds.cached) == 8 and "reading 8 of 8 videos from the frame cache" in cached_ds.cache_note
    assert cached_ds.skipped == raw_ds.skipped == ["a/empty.avi"]
    assert len(raw) == len(cached) == 14  # 7 readable videos x 2 epochs: random starts, crops and flips
    for a, b in zip(raw, cached):
        np.testing.assert_array_equal(a, b)
    _, raw_eval = clips(data, train=False, use_cache=False, epochs=(0,))
    _, cached_eval = clips(data, train=False, epochs=(0,))
    for a, b in zip(raw_eval, cached_eval):
        np.testing.assert_array_equal(a, b)
    frames = np.load(size_dir(data, PREP.resize_wh) / "a" / "a_g00_c01.avi.npy", mmap_mode="r")
    assert frames.shape == (40, 37, 49, 3) and frames.dtype == np.uint8


def test_rerun_skips_done_and_a_changed_video_is_decoded_again(data):
    cache_videos(data, PREP, workers=1, progress=False)
    again = cache_videos(data, PREP, workers=1, progress=False)
    assert (again.cached, again.already) == (0, 8)
    write_video(data / "a" / "a_g01_c01.avi", 30, size=(64, 48), seed=99)  # same name, other content and size
    split = load_data_split(data, val_fraction=0.0)
    with pytest.warns(UserWarning):
        ds = VideoClipDataset(data, split.train, split.classes, PREP, train=False)
    assert "a/a_g01_c01.avi" not in ds.cached and "1 changed since they were cached" in ds.cache_note
    assert cache_videos(data, PREP, workers=1, progress=False).cached == 1


def test_copied_data_with_new_mtimes_keeps_its_cache(data, tmp_path):
    cache_videos(data, PREP, workers=1, progress=False)
    copy = tmp_path / "copy"
    shutil.copytree(data, copy, copy_function=shutil.copyfile)  # new mtimes, same content
    for video in copy.glob("*/*.avi"):
        os.utime(video, ns=(1, 1))
    report = cache_videos(copy, PREP, workers=1, progress=False)
    assert (report.cached, report.already) == (0, 8)  # the sha256 says it is the same video


def test_unfinished_entry_is_never_read(data):
    cache_videos(data, PREP, workers=1, progress=False)
    npy, meta = FrameCache(size_dir(data, PREP.resize_wh), PREP.resize_wh).paths("a/a_g00_c01.avi")
    meta.unlink()  # killed between the .npy and its .json
    npy.write_bytes(npy.read_bytes()[:100])  # and the .npy half-written as well (never happens: atomic rename)
    split = load_data_split(data, val_fraction=0.0)
    with pytest.warns(UserWarning):
        ds = VideoClipDataset(data, split.train, split.classes, PREP, train=False)
    assert "a/a_g00_c01.avi" not in ds.cached and len(ds.cached) == 7
    assert cache_videos(data, PREP, workers=1, progress=False).cached == 1


def test_cache_without_its_videos_still_trains(data, tmp_path):
    from c3d_rt.core.config import ModelConfig, TrainConfig
    from c3d_rt.training.fit import fit

    cache_videos(data, PREP, workers=2, progress=False)
    for video in data.glob("*/*.avi"):
        video.unlink()
    split = load_data_split(data, val_fraction=0.0)
    assert len(split.train) == 8  # listed from the cache
    ds, _ = clips(data, epochs=(0,))
    assert "8 of them have no video any more" in ds.cache_note
    lines = []
    model = ModelConfig(num_classes=2, width=0.0625, crop_size=32, dropout=0.0, batch_norm=True)
    with pytest.warns(UserWarning, match="empty.avi"):  # unreadable, and remembered as such by the cache
        fit(data, tmp_path / "run", model_config=model, prep=PREP, cfg=TrainConfig(epochs=1, batch_size=4, workers=0),
            progress=False, log=lines.append)
    assert any("have no video any more" in line for line in lines)


def test_another_size_is_detected_and_a_foreign_cache_refused(data):
    cache_videos(data, PREP, workers=1, progress=False)
    other = Preprocessing(clip_len=16, resize_wh=(98, 73), crop_size=64)
    split = load_data_split(data, val_fraction=0.0)
    with pytest.warns(UserWarning):
        ds = VideoClipDataset(data, split.train, split.classes, other, train=False)
    assert not ds.cached and "frame cache at 49x37" in ds.cache_note and "--crop-size 64" in ds.cache_note
    meta = size_dir(data, PREP.resize_wh) / "cache.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "resize_wh": [98, 73]}))
    with pytest.raises(CacheError, match="delete it"):
        FrameCache.open(data, PREP.resize_wh)


def test_cli_cache_command(data):
    result = CliRunner().invoke(app, ["cache", str(data), "--crop-size", "32", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "decoded 7 videos" in result.output and "1 unreadable skipped" in result.output
    assert (data / CACHE_DIR / "49x37" / "cache.json").is_file()  # the resize train uses for crop 32


def test_uint8_clips_with_the_mean_subtracted_on_the_device_equal_float_clips(data):
    import torch

    from c3d_rt.training.loop import network_input

    cache_videos(data, PREP, workers=2, progress=False)
    split = load_data_split(data, val_fraction=0.0)
    for use_cache in (False, True):
        with pytest.warns(UserWarning):
            floats = VideoClipDataset(data, split.train, split.classes, PREP, train=True, use_cache=use_cache)
            uint8s = VideoClipDataset(data, split.train, split.classes, PREP, train=True, use_cache=use_cache,
                                      uint8=True)
        for i in range(len(floats)):
            clip = torch.from_numpy(uint8s[i][0])  # the DataLoader's collate makes the same tensor
            assert clip.dtype == torch.uint8
            assert torch.equal(network_input(clip[None], PREP.mean_bgr)[0], torch.from_numpy(floats[i][0]))


def test_eval_gives_the_same_result_from_the_cache_alone(tiny_data, tiny_ckpt, tmp_path):
    from c3d_rt.training.evaluation import evaluate_checkpoint

    from .conftest import TINY_PREP

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    from_videos = evaluate_checkpoint(tiny_ckpt, data, workers=0, device="cpu", progress=False)
    cache_videos(data, TINY_PREP, workers=2, progress=False)
    for video in data.glob("*/*.avi"):
        video.unlink()
    from_cache = evaluate_checkpoint(tiny_ckpt, data, workers=0, device="cpu", progress=False)
    assert from_cache["val_clips"] == from_videos["val_clips"] > 0
    assert from_cache["val_loss"] == from_videos["val_loss"] and from_cache["confusion"] == from_videos["confusion"]
