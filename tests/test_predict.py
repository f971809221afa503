"""`c3d-rt predict`: every window at the stride, none skipped, segments where the video changes, resumable runs."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from c3d_rt.artifacts.info import ArtifactInfo
from c3d_rt.core.config import ModelConfig, Preprocessing
from c3d_rt.engines.base import Engine
from c3d_rt.offline.predict import PredictSettings, predict_videos
from c3d_rt.offline.sources import SourceListError, VideoItem, collect_videos
from c3d_rt.offline.windows import VideoStats, decode_windows

from .conftest import TINY_PREP, write_video
from .test_cli import _run

CONFIG = ModelConfig(num_classes=2, width=0.0625, crop_size=32, dropout=0.0)
PREP = Preprocessing.for_model(CONFIG)


class BrightnessModel(Engine):
    """A model whose answer is known: "bright" when a clip is brighter than the mean pixel, else "dark".

    It stands in for a trained network so that where segments must fall is known exactly; decoding, windows,
    batching, segments and outputs are predict's own. ``delay`` makes it slow (a model that cannot keep up)."""

    name = "brightness"

    def __init__(self, path: Path, delay: float = 0.0, interrupt_after: int | None = None) -> None:
        info = ArtifactInfo(["dark", "bright"], PREP, CONFIG, "fp32", "onnx", None, "test", "0" * 64, str(path))
        super().__init__(path, info)
        self.delay, self.calls, self.interrupt_after = delay, 0, interrupt_after

    def _run(self, clips: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        time.sleep(self.delay)
        level = clips.mean(axis=(1, 2, 3, 4))
        return np.stack([-level, level], axis=1).astype(np.float32) / 10


def write_levels(path: Path, levels: list[int], fourcc: str = "MJPG", fps: float = 25.0) -> Path:
    """A real video whose frame t is flat grey at ``levels[t]`` plus a little noise."""
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (64, 48))
    assert writer.isOpened()
    for level in levels:
        frame = np.clip(level + rng.integers(-5, 6, (48, 64, 3)), 0, 255).astype(np.uint8)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture()
def model_file(tmp_path) -> Path:
    path = tmp_path / "brightness.onnx"
    path.write_bytes(b"stands for the model file whose SHA-256 the records carry")
    return path


@pytest.mark.parametrize("name,fourcc,frames", [("a.avi", "MJPG", 61), ("b.mp4", "mp4v", 40), ("c.avi", "MJPG", 16)])
def test_windows_cover_the_video_exactly_at_the_stride(tmp_path, name, fourcc, frames):
    path = write_video(tmp_path / name, frames, fourcc=fourcc)
    for stride in (1, 5, 8):
        stats = VideoStats()
        windows = list(decode_windows(VideoItem(path, Path(name)), 0, TINY_PREP, stride, stats))
        assert [w.first for w in windows] == TINY_PREP.window_starts(frames, stride)
        assert all(w.last == w.first + TINY_PREP.window_span - 1 for w in windows)
        assert stats.frames == frames and stats.windows == len(windows) and not stats.error
        assert windows[0].clip.shape == (3, 16, 32, 32) and windows[0].clip.dtype == np.uint8


def test_fps_resampling_keeps_the_timeline(tmp_path):
    path = write_video(tmp_path / "v.avi", 50)  # 25 fps, 2 s
    stats = VideoStats()
    windows = list(decode_windows(VideoItem(path, Path("v.avi")), 0, TINY_PREP, 8, stats, target_fps=12.5))
    assert stats.fps == 25.0 and [w.first for w in windows] == [0, 16]  # every other frame: 25 sampled, windows 0, 8
    assert [w.last for w in windows] == [30, 46]


def test_no_window_is_skipped_by_a_slow_model(tmp_path, model_file):
    videos = [write_levels(tmp_path / "in" / f"v{i}.avi", [40] * 30 + [200] * (20 + 7 * i)) for i in range(3)]
    slow = BrightnessModel(model_file, delay=0.05)
    run = predict_videos(slow, collect_videos([tmp_path / "in"]), tmp_path / "out", PredictSettings(stride=2),
                         batch=3, progress=False, log=lambda m: None)
    for video in videos:
        record = json.loads((tmp_path / "out" / "in" / f"{video.name}.json").read_text())
        frames = 50 + 7 * int(video.stem[1])
        assert [w["first_frame"] for w in record["windows"]] == PREP.window_starts(frames, 2)
    assert run.stats.windows == sum(len(PREP.window_starts(50 + 7 * i, 2)) for i in range(3))
    assert max(run.stats.batch_sizes) == 3


def test_segments_start_and_end_where_the_video_changes(tmp_path, model_file):
    video = write_levels(tmp_path / "in" / "dark-bright-dark.avi", [30] * 80 + [220] * 96 + [30] * 64)
    run = predict_videos(BrightnessModel(model_file), collect_videos([video]), tmp_path / "out",
                         PredictSettings(stride=8, smooth=1, threshold=0.5, min_gap=0.0), batch=4, progress=False,
                         log=lambda m: None)
    record = run.records["dark-bright-dark.avi"]
    labels = [(s["label"], s["start_frame"], s["end_frame"]) for s in record["segments"]]
    assert [lb for lb, _, _ in labels] == ["dark", "bright", "dark"], labels
    truth = [(0, 80), (80, 176), (176, 240)]
    for (_, start, end), (true_start, true_end) in zip(labels, truth):
        assert abs(start - true_start) <= 8 and abs(end - true_end) <= 8, (labels, truth)
    assert record["video_level"]["label"] == "dark"  # 144 dark frames of 240
    with open(tmp_path / "out" / "segments.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == ["dark", "bright", "dark"]


def test_broken_short_and_good_videos_each_get_a_status(tmp_path, model_file):
    write_levels(tmp_path / "in" / "good.avi", [40] * 40)
    write_levels(tmp_path / "in" / "short.avi", [40] * 9)
    (tmp_path / "in" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 and then nothing")
    run = predict_videos(BrightnessModel(model_file), collect_videos([tmp_path / "in"]), tmp_path / "out",
                         PredictSettings(), batch=2, progress=False, log=lambda m: None)
    status = {Path(r["name"]).name: (r["status"], r["reason"]) for r in run.records.values()}
    assert status["good.avi"] == ("ok", "")
    assert status["short.avi"][0] == "failed" and "too short: 9 frames" in status["short.avi"][1]
    assert status["broken.mp4"][0] == "failed" and ("unreadable" in status["broken.mp4"][1]
                                                    or "empty" in status["broken.mp4"][1])
    with open(tmp_path / "out" / "summary.csv") as f:
        summary = {Path(r["name"]).name: r for r in csv.DictReader(f)}
    assert summary["short.avi"]["status"] == "failed" and summary["good.avi"]["label"] == "dark"


def test_a_resumed_run_writes_what_an_uninterrupted_one_does(tmp_path, model_file):
    for i in range(4):
        write_levels(tmp_path / "in" / "cls" / f"v{i}.avi", [40 + 50 * i] * (40 + 8 * i))
    items = collect_videos([tmp_path / "in"])
    settings = PredictSettings(stride=4)
    whole = predict_videos(BrightnessModel(model_file), items, tmp_path / "whole", settings, batch=2,
                           progress=False, log=lambda m: None)
    first = predict_videos(BrightnessModel(model_file, interrupt_after=4), items, tmp_path / "resumed", settings,
                           batch=2, progress=False, log=lambda m: None)
    assert first.interrupted and 0 < first.done < 4
    again = predict_videos(BrightnessModel(model_file), items, tmp_path / "resumed", settings, batch=2,
                           progress=False, log=lambda m: None)
    assert again.skipped == first.done and again.done == 4 - first.done
    for name in ("in/cls/v0.avi.json", "in/cls/v1.avi.json", "in/cls/v2.avi.json", "in/cls/v3.avi.json",
                 "summary.csv", "segments.csv"):
        assert (tmp_path / "whole" / name).read_text() == (tmp_path / "resumed" / name).read_text(), name
    assert whole.done == 4


def test_sources_folders_lists_and_clashes(tmp_path):
    a = write_video(tmp_path / "set" / "walk" / "a.avi", 20)
    b = write_video(tmp_path / "set" / "run" / "b.avi", 20)
    (tmp_path / "set" / ".hidden.avi.tmp").write_bytes(b"")
    listing = tmp_path / "set" / "list.txt"
    listing.write_text("walk/a.avi  # the walk\n\nrun/b.avi\n")
    assert [i.key for i in collect_videos([tmp_path / "set"])] == ["set/run/b.avi", "set/walk/a.avi"]
    assert [i.key for i in collect_videos([tmp_path / "set" / "walk"])] == ["walk/a.avi"]  # its class kept
    assert [i.key for i in collect_videos([listing])] == ["walk/a.avi", "run/b.avi"]
    assert len(collect_videos([a, tmp_path / "set"])) == 2  # the same video once
    other = write_video(tmp_path / "other" / "a.avi", 20)
    with pytest.raises(SourceListError, match="same outputs a.avi.json"):
        collect_videos([a, other])
    with pytest.raises(SourceListError, match="no such file or folder"):
        collect_videos([tmp_path / "nope"])
    listing.write_text("walk/a.avi\nmissing.avi\n")
    with pytest.raises(SourceListError, match="1 listed videos do not exist"):
        collect_videos([listing])
    assert b.is_file()


def test_predict_command_on_an_export(tiny_export, tmp_path, capsys):
    export_dir, _ = tiny_export
    write_video(tmp_path / "in" / "x.avi", 40)
    write_video(tmp_path / "in" / "y.mp4", 33, fourcc="mp4v")
    write_video(tmp_path / "in" / "short.avi", 5)
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "in"), "--model", str(export_dir), "--engine", "ort", "--out", str(out),
            "--timeline"]
    code = _run(args)
    err = capsys.readouterr().err
    assert code == 1 and "1 of 3 videos failed" in err and "short.avi" in err and "Traceback" not in err
    record = json.loads((out / "in" / "x.avi.json").read_text())
    assert record["model"]["engine"] == "ort" and len(record["model"]["sha256"]) == 64
    assert [w["first_frame"] for w in record["windows"]] == TINY_PREP.window_starts(40, 8)
    assert (out / "in" / "x.avi.png").is_file() and (out / "in" / "y.mp4.png").is_file()
    assert "batch: batch " in err  # the batch was measured and said
    assert _run(args) == 1 and "2 of 3 videos already done" in capsys.readouterr().err


def test_class_folders_give_the_video_level_accuracy(tmp_path, model_file):
    for i, dark_tail in enumerate((4, 10, 84)):  # b2: 4 bright windows of 13
        write_levels(tmp_path / "set" / "dark" / f"d{i}.avi", [30] * 40)
        write_levels(tmp_path / "set" / "bright" / f"b{i}.avi", [220] * 30 + [30] * dark_tail)
    run = predict_videos(BrightnessModel(model_file), collect_videos([tmp_path / "set"]), tmp_path / "out",
                         PredictSettings(), batch=4, progress=False, log=lambda m: None)
    accuracy = json.loads((tmp_path / "out" / "accuracy.json").read_text())
    assert accuracy == run.accuracy and accuracy["videos"] == 6
    assert accuracy["confusion"] == [[3, 0], [1, 2]]  # truth down (dark, bright), prediction across
    assert accuracy["top1"] == pytest.approx(5 / 6) and accuracy["top5"] == 1.0
    assert cv2.imread(str(tmp_path / "out" / "confusion.png")) is not None


def test_another_models_outputs_are_refused(tmp_path, model_file):
    write_levels(tmp_path / "in" / "v.avi", [40] * 20)
    items = collect_videos([tmp_path / "in"])
    predict_videos(BrightnessModel(model_file), items, tmp_path / "out", PredictSettings(), batch=2, progress=False,
                   log=lambda m: None)
    other = tmp_path / "other.onnx"
    other.write_bytes(b"another model")
    with pytest.raises(Exception, match="holds the outputs of another model"):
        predict_videos(BrightnessModel(other), items, tmp_path / "out", PredictSettings(), batch=2, progress=False,
                       log=lambda m: None)
    again = predict_videos(BrightnessModel(other), items, tmp_path / "out", PredictSettings(), batch=2,
                           progress=False, overwrite=True, log=lambda m: None)
    assert again.done == 1 and json.loads((tmp_path / "out" / "in" / "v.avi.json").read_text())["model"]["file"] \
        == str(other.resolve())


def test_links_keep_their_own_names_and_classes(tmp_path):
    target = write_video(tmp_path / "elsewhere" / "clip.avi", 20)
    (tmp_path / "set" / "walk").mkdir(parents=True)
    (tmp_path / "set" / "walk" / "v1.avi").symlink_to(target)
    assert [i.key for i in collect_videos([tmp_path / "set"])] == ["set/walk/v1.avi"]


def test_a_later_run_without_class_folders_leaves_no_stale_accuracy(tmp_path, model_file):
    write_levels(tmp_path / "set" / "dark" / "d.avi", [30] * 20)
    write_levels(tmp_path / "loose.avi", [30] * 20)
    quiet = dict(batch=2, progress=False, log=lambda m: None)
    first = predict_videos(BrightnessModel(model_file), collect_videos([tmp_path / "set"]), tmp_path / "out",
                           PredictSettings(), **quiet)
    assert first.accuracy and (tmp_path / "out" / "accuracy.json").is_file()
    second = predict_videos(BrightnessModel(model_file), collect_videos([tmp_path / "loose.avi"]), tmp_path / "out",
                            PredictSettings(), **quiet)
    assert second.accuracy is None and not (tmp_path / "out" / "accuracy.json").exists()
    assert not (tmp_path / "out" / "confusion.png").exists()


def test_an_interrupted_run_counts_no_unfinished_video_as_failed(tmp_path, model_file):
    for i in range(3):
        write_levels(tmp_path / "in" / f"v{i}.avi", [40] * 60)
    run = predict_videos(BrightnessModel(model_file, interrupt_after=2), collect_videos([tmp_path / "in"]),
                         tmp_path / "out", PredictSettings(stride=4), batch=2, progress=False, log=lambda m: None)
    assert run.interrupted and run.failed == [] and any(not r for r in run.records.values())
