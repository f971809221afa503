"""`c3d-rt features`: fc6/fc7 of every window equal the eager model's; the anomaly-detection segment protocol."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from c3d_rt.core.transforms import subtract_mean
from c3d_rt.model.checkpoint import load_checkpoint
from c3d_rt.offline.features import sultani_segments
from c3d_rt.offline.sources import VideoItem
from c3d_rt.offline.windows import VideoStats, decode_windows

from .conftest import TINY_PREP, write_video
from .test_cli import _run


@pytest.fixture(scope="module")
def features_export(tiny_ckpt, tmp_path_factory) -> Path:
    from c3d_rt.export.job import export_checkpoint

    out = tmp_path_factory.mktemp("features-export")
    report = export_checkpoint(tiny_ckpt, out, formats=["onnx", "onnx-features"], check_clips=20, log=lambda m: None)
    assert [a.status for a in report.artifacts] == ["ok", "ok"]
    return out


def eager_layers(ckpt_path: Path, video: Path, stride: int) -> dict[str, np.ndarray]:
    model = load_checkpoint(ckpt_path).build_model().eval()
    windows = list(decode_windows(VideoItem(video, Path(video.name)), 0, TINY_PREP, stride, VideoStats()))
    clips = torch.from_numpy(subtract_mean(np.stack([w.clip for w in windows]), TINY_PREP))
    with torch.inference_mode():
        fc6, fc7, logits = model.forward_layers(clips)
    return {"fc6": fc6.numpy(), "fc7": fc7.numpy(), "logits": logits.numpy()}


@pytest.mark.parametrize("engine", ["ort", "openvino", "torch"])
def test_features_of_every_window_equal_the_eager_models(features_export, tiny_ckpt, tmp_path, engine):
    if engine == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
    video = write_video(tmp_path / "in" / "v.avi", 45)
    model = tiny_ckpt if engine == "torch" else features_export
    out = tmp_path / "out"
    assert _run(["features", str(tmp_path / "in"), "--model", str(model), "--engine", engine, "--layer", "fc6",
                 "--stride", "4", "--out", str(out), "--batch", "3"]) == 0
    got = np.load(out / "in" / "v.avi.npy")
    want = eager_layers(tiny_ckpt, video, 4)["fc6"]
    assert got.shape == want.shape == (len(TINY_PREP.window_starts(45, 4)), want.shape[1]) and got.dtype == np.float32
    assert (got >= 0).all()  # after ReLU
    scale = np.abs(want).max(axis=1, keepdims=True)
    assert np.all(np.abs(got - want) <= 1e-5 + 1e-3 * scale)
    record = json.loads((out / "in" / "v.avi.json").read_text())
    assert record["layer"] == "fc6" and "after its ReLU" in record["note"]
    assert [w["first_frame"] for w in record["windows"]] == TINY_PREP.window_starts(45, 4)


def test_pooled_features_and_a_resumed_run(features_export, tiny_ckpt, tmp_path, capsys):
    video = write_video(tmp_path / "in" / "v.avi", 40)
    args = ["features", str(video), "--model", str(features_export), "--engine", "ort", "--layer", "fc7", "--pool",
            "mean", "--out", str(tmp_path / "out")]
    assert _run(args) == 0
    got = np.load(tmp_path / "out" / "v.avi.npy")
    want = eager_layers(tiny_ckpt, video, 8)["fc7"].mean(axis=0)
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-4)
    capsys.readouterr()
    assert _run(args) == 0 and "1 of 1 videos already done" in capsys.readouterr().err


def test_a_file_without_feature_outputs_is_refused_with_the_way_out(tiny_export, tmp_path, capsys):
    export_dir, _ = tiny_export
    write_video(tmp_path / "v.avi", 20)
    code = _run(["features", str(tmp_path / "v.avi"), "--model", str(export_dir / "c3d.onnx"), "--engine", "ort",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "--formats onnx-features" in err and "Traceback" not in err


def test_segment_protocol_follows_the_authors_script():
    rng = np.random.default_rng(0)
    clips = rng.uniform(0, 3, (5, 8)).astype(np.float32)
    unit = clips / np.linalg.norm(clips, axis=1, keepdims=True)
    got = sultani_segments(clips, 2)  # MATLAB round(linspace(1, 5, 3)) = [1, 3, 5]: clips 1-2 and 3-4, not 5
    for row, members in zip(got, ([0, 1], [2, 3])):
        mean = unit[members].mean(axis=0)
        assert np.allclose(row, mean / np.linalg.norm(mean), atol=1e-6)
    many = sultani_segments(rng.uniform(0, 1, (3, 8)), 32)  # fewer clips than segments: each takes its start clip
    assert many.shape == (32, 8) and np.allclose(np.linalg.norm(many, axis=1), 1, atol=1e-5)
