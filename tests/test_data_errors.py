"""Data and demo errors a new user met (issue #20): decoder noise, a read-only checkpoint folder, small videos in the
cache, a quick demo over a full one. Each runs the real console entry point (``python -m c3d_rt.cli``)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import write_video

REPO = Path(__file__).resolve().parents[1]
NOISE = ("moov atom not found", "Unexpected element", "[mjpeg @", "[mov,mp4", "VIDEOIO(", "[ WARN")


def _drop_root_override() -> None:
    """In the child, before exec: root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH obeys permission bits, so a
    folder made read-only with chmod is read-only for it too (as it is for any other user)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def can_make_read_only() -> bool:
    """Whether a chmod 555 folder is read-only for the ``cli`` subprocesses (not for root without CAP_SETPCAP)."""
    if os.geteuid() != 0:
        return True
    try:
        subprocess.run([sys.executable, "-c", ""], preexec_fn=_drop_root_override, check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


needs_read_only = pytest.mark.skipif(not can_make_read_only(), reason="root without CAP_SETPCAP: chmod cannot make a "
                                                                      "folder read-only for the command")


def cli(*args: str | Path, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m c3d_rt.cli ARGS`` as a user runs it (root obeys permission bits, as any user does)."""
    env = {**os.environ, "DISPLAY": "", "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "c3d_rt.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, errors="replace", timeout=300, env=env,
                          preexec_fn=_drop_root_override if os.geteuid() == 0 else None)


@contextlib.contextmanager
def read_only(folder: Path):
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(mode)


def digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- decoder noise (defect 4) ------------------------------------------------------------------------------------

def broken_videos(root: Path) -> dict[str, Path]:
    """Two classes of good videos, plus what a partial download leaves: an .mp4 cut in half (no moov atom), an .avi
    cut inside its header, and an .avi with garbage in the middle of its frames."""
    for cls in ("a", "b"):
        for i in range(4):
            write_video(root / cls / f"{cls}_g{i:02d}_c01.avi", 20, size=(49, 37), seed=i)
    mp4 = write_video(root / "a" / "cut_g05_c01.mp4", 20, size=(49, 37), fourcc="mp4v")
    mp4.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    avi = write_video(root / "b" / "cut_g05_c01.avi", 20, size=(49, 37))
    avi.write_bytes(avi.read_bytes()[:200])
    garbled = write_video(root / "b" / "garbled_g06_c01.avi", 20, size=(49, 37), seed=7)
    data = bytearray(garbled.read_bytes())
    data[len(data) // 3: 2 * len(data) // 3: 97] = np.random.default_rng(0).integers(
        0, 255, len(range(len(data) // 3, 2 * len(data) // 3, 97)), dtype=np.uint8).tobytes()
    garbled.write_bytes(bytes(data))
    assert not cv2.VideoCapture(str(mp4)).isOpened()  # really broken
    return {"mp4": mp4, "avi": avi, "garbled": garbled}


TINY_TRAIN = ("--epochs", "1", "--width", "0.0625", "--crop-size", "32", "--workers", "0", "--batch-size", "8")


def test_decoder_noise_stays_off_the_terminal_and_our_warning_names_the_file(tmp_path):
    bad = broken_videos(tmp_path / "data")
    loud = tmp_path / "loud"
    shutil.copytree(tmp_path / "data", loud)  # the index remembers unreadable videos: each run gets a fresh copy
    train = cli("train", tmp_path / "data", "--out", tmp_path / "run", *TINY_TRAIN)
    assert train.returncode == 0, train.stderr[-3000:]
    cache = cli("cache", tmp_path / "data", "--crop-size", "32", "--rebuild")
    assert cache.returncode == 0, cache.stderr[-3000:]
    for run in (train, cache):
        assert not any(n in run.stderr + run.stdout for n in NOISE), run.stderr[-3000:]
    lines = train.stderr.splitlines()
    for path in (bad["mp4"], bad["avi"]):  # one line of ours for each, naming the file
        assert [ln for ln in lines if ln.startswith("warning:") and str(path) in ln], train.stderr[-3000:]
    assert "UserWarning" not in train.stderr  # our own warning, not Python's report of a warning
    verbose = cli("cache", loud, "--crop-size", "32", "--verbose")
    assert "moov atom not found" in verbose.stderr and "VIDEOIO(FFMPEG)" in verbose.stderr  # --verbose shows all
    # (OpenCV's own AVI reader, whose "Unexpected element" went past any log level, is never asked: FFmpeg reads all)


# --- eval beside a read-only checkpoint (defect 5) ---------------------------------------------------------------

@needs_read_only
def test_eval_of_a_checkpoint_in_a_read_only_folder_prints_its_metrics(tiny_ckpt, tiny_data, tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    shutil.copy(tiny_ckpt, folder / "best.pt")
    with read_only(folder):
        run = cli("eval", folder / "best.pt", tiny_data, "--workers", "0", "--json", tmp_path / "m.json")
    out = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 0, out[-3000:]
    assert "top-1" in out and "top-5" in out
    assert f"cannot write in {folder}" in out and "--confusion" in out  # where it is not, and how to have it
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt"]
    assert json.loads((tmp_path / "m.json").read_text())["confusion_png"] is None
    with read_only(folder):
        asked = cli("eval", folder / "best.pt", tiny_data, "--workers", "0", "--confusion", folder / "cm.png")
    assert asked.returncode == 1 and "cannot write" in asked.stderr  # asked for there: refused before any work


# --- the frame cache of small videos (defect 3) ------------------------------------------------------------------

def test_caching_videos_smaller_than_the_frames_says_so_with_the_sizes(tmp_path):
    for cls in ("a", "b"):
        for i in range(2):
            write_video(tmp_path / "data" / cls / f"{cls}_g{i:02d}_c01.avi", 24, size=(64, 48), seed=i)
    run = cli("cache", tmp_path / "data")  # crop 112: frames of 171x128
    assert run.returncode == 0, run.stderr[-3000:]
    text = " ".join(run.stderr.split())
    assert "warning: 4 of 4 videos are smaller than the cache's 171x128 frames (64x48)" in text, text
    assert "upscaled" in text and "6.3 MB of cache for" in text and "kB of videos" in text, text
    assert "--crop-size 32" in text, text  # the largest crop whose frames (49x37) these videos fill
    fits = cli("cache", tmp_path / "data", "--crop-size", "32")
    assert fits.returncode == 0 and "upscaled" not in fits.stderr + fits.stdout


def test_caching_opens_each_video_once_before_decoding_it_and_reads_an_index_without_sizes(tmp_path, monkeypatch):
    """The probe records each video's frame size with its frame count (it opens the video anyway): the upscale
    warning reuses it instead of opening every video a second time. An index written before sizes were recorded
    still loads: its frame counts serve as they are, and a missing size is probed once and recorded."""
    from collections import Counter

    import c3d_rt.data.video as video
    from c3d_rt.core.config import ModelConfig, Preprocessing
    from c3d_rt.data.cache import cache_videos
    from c3d_rt.data.splits import INDEX_FILE, probe_videos

    data = tmp_path / "data"
    for cls in ("a", "b"):
        for i in range(2):
            write_video(data / cls / f"{cls}_g{i:02d}_c01.avi", 24, size=(64, 48), seed=i)
    opened, open_video = [], video.open_video
    monkeypatch.setattr(video, "open_video", lambda path: opened.append(path.name) or open_video(path))
    prep, said = Preprocessing.for_model(ModelConfig(crop_size=112)), []
    report = cache_videos(data, prep, progress=False, log=said.append)
    assert report.cached == 4 and report.upscaled == 4 and "(64x48)" in said[0], said
    assert set(Counter(opened).values()) == {2}, Counter(opened)  # the probe, then the decoding
    index = json.loads((data / INDEX_FILE).read_text())
    old = {rel: entry[:2] for rel, entry in index.items()}  # [size:mtime, frames]: no frame size
    (data / INDEX_FILE).write_text(json.dumps(old))
    opened.clear()
    assert probe_videos(data, sorted(old)) == {rel: 24 for rel in old} and not opened  # counts still serve
    said.clear()
    assert cache_videos(data, prep, rebuild=True, progress=False, log=said.append).upscaled == 4
    assert "(64x48)" in said[0] and set(Counter(opened).values()) == {2}, (said, Counter(opened))
    assert json.loads((data / INDEX_FILE).read_text()) == index  # the sizes recorded again


# --- the demo's folder (defect 2) ---------------------------------------------------------------------------------

def _full_demo_folder(out: Path) -> dict[str, bytes]:
    """What `c3d-rt demo` (the full one) leaves, as far as telling it apart goes; a stale confusion PNG beside it."""
    from c3d_rt.data.synth import SynthSpec, spec_dict

    (out / "data").mkdir(parents=True)
    (out / "data" / "dataset.json").write_text(json.dumps({"generator": "c3d-rt synth", "allow_hflip": False,
                                                           "motion_names": "camera",
                                                           "spec": spec_dict(SynthSpec(80, width=73, height=55))}))
    (out / "run").mkdir()
    (out / "run" / "best.pt").write_bytes(b"the 98.9% model")
    (out / "run" / "best.confusion.png").write_bytes(b"its confusion matrix")
    return digest(out)


def test_quick_demo_never_replaces_the_full_demo(tmp_path):
    before = _full_demo_folder(tmp_path / "runs" / "demo")
    refused = cli("demo", "--quick", "--out", tmp_path / "runs" / "demo")
    assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-2000:]
    text = " ".join(refused.stderr.split())
    assert "the full demo" in text and "--quick" in text and "--overwrite" in text, text
    assert digest(tmp_path / "runs" / "demo") == before
    (tmp_path / "runs" / "demo-quick").mkdir()
    (tmp_path / "runs" / "demo-quick" / "demo.json").write_text(json.dumps({"settings": {"epochs": 3}}))
    default = cli("demo", "--quick", cwd=tmp_path)  # the README's line: its own folder, runs/demo-quick
    assert default.returncode == 1 and "runs/demo-quick" in default.stderr and "other settings" in default.stderr


def test_quick_demo_with_overwrite_replaces_the_whole_demo(tmp_path):
    out = tmp_path / "demo"
    _full_demo_folder(out)
    run = cli("demo", "--quick", "--out", out, "--overwrite")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert not (out / "run" / "best.confusion.png").exists()  # it described the model that is gone
    assert json.loads((out / "demo.json").read_text())["settings"]["epochs"] == 1
    again = cli("demo", "--quick", "--out", out)  # the same demo again: a re-run, no --overwrite needed
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
