"""The live recognizer on real files, a loopback network stream and the synthetic camera; no mocks."""

import json
import os
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import onnxruntime as ort
import psutil
import pytest

from c3d_rt.artifacts.info import ArtifactError
from c3d_rt.core.config import Preprocessing
from c3d_rt.core.transforms import preprocess_clip, preprocess_frame, softmax
from c3d_rt.data.datasets import VideoClipDataset
from c3d_rt.engines import EngineUnavailable, load_engine
from c3d_rt.runtime import LiveRecognizer, RunSettings, SourceError, open_source, run_live
from c3d_rt.runtime import sources as sources_module
from c3d_rt.runtime.prediction import PostProcessor
from c3d_rt.runtime.ring import FrameRing
from c3d_rt.runtime.sinks import display_unavailable_reason
from c3d_rt.runtime.stats import LatencyHistogram

from .conftest import TINY_PREP, write_video
from .mjpeg_server import MjpegServer

QUIET = dict(log=lambda _m: None)
HEADLESS = dict(show=False)


@pytest.fixture(scope="module")
def onnx_path(tiny_export):
    return tiny_export[0] / "c3d.onnx"


def read_all_frames(path) -> list[np.ndarray]:
    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def numbered_frame(i: int, size=(60, 45)) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)


# --- ring buffer and preprocessing -----------------------------------------------------------------


def test_ring_keeps_the_newest_frames_in_order_at_the_frame_interval():
    prep = Preprocessing(clip_len=16, frame_interval=2, resize_wh=(49, 37), crop_size=32)
    ring = FrameRing(prep, stride=3)
    sampled = [i for i in range(50) if ring.push(numbered_frame(i), i, float(i))]
    assert sampled == list(range(0, 50, 2))  # every 2nd frame, as training samples
    out = np.empty((3, 16, 32, 32), np.float32)
    ring.close()
    assert ring.windows_due == 4  # complete at the 16th sampled frame, then every 3rd: 16, 19, 22, 25
    assert ring.take(out, timeout=0) is None  # a closed live ring hands out nothing stale
    ring = FrameRing(prep, stride=3, wait_for_consumer=True)
    for i in range(0, 31):
        ring.push(numbered_frame(i), i, float(i))  # 16 sampled frames: the first window is due
    window = ring.take(out, timeout=1)
    assert window.frame_indices == list(range(0, 31, 2))
    expected = np.stack([preprocess_frame(numbered_frame(i), prep) for i in window.frame_indices], axis=1)
    np.testing.assert_array_equal(out, expected)


def test_live_ring_never_hands_out_a_window_that_went_stale_while_the_model_was_busy():
    prep = Preprocessing(clip_len=16, resize_wh=(49, 37), crop_size=32)
    ring = FrameRing(prep, stride=1)
    out = np.empty((3, 16, 32, 32), np.float32)
    for i in range(20):  # windows 15..19 became due while nobody was waiting
        ring.push(numbered_frame(i), i, float(i))
    taker = threading.Thread(target=lambda: results.append(ring.take(out, timeout=5)))
    results = []
    taker.start()
    time.sleep(0.2)
    ring.push(numbered_frame(20), 20, 20.0)
    taker.join()
    assert results[0].frame_indices == list(range(5, 21))  # the fresh window, not a stale one
    assert ring.windows_due == 6 and ring.windows_dropped == 5


def test_runtime_preprocessing_is_training_evaluations(tmp_path):
    """The ring's window equals the clip the evaluation data set builds from the same video."""
    prep = Preprocessing(clip_len=16, frame_interval=2, resize_wh=(49, 37), crop_size=32)
    video = write_video(tmp_path / "a" / "v_a_g01_c01.avi", 40, size=(64, 48))
    dataset = VideoClipDataset(tmp_path, ["a/v_a_g01_c01.avi"], ["a"], prep, train=False)
    expected, _ = dataset.load_clip(0)  # centred clip: frames 4, 6, ..., 34
    ring = FrameRing(prep, wait_for_consumer=True)  # a file: every window is handed out

    def produce():
        with open_source(str(video)) as source:
            while (frame := source.read()) is not None and frame.index <= 34:
                ring.push(frame.image, frame.index, frame.t_read)
        ring.close()

    producer = threading.Thread(target=produce)
    producer.start()
    out = np.empty_like(expected)
    windows = []
    while (window := ring.take(out, timeout=5)) is not None:
        windows.append(window.frame_indices)
    producer.join()
    assert windows[-1] == list(range(4, 35, 2)) and len(windows) == 3  # 0..30, 2..32, 4..34
    np.testing.assert_array_equal(out, expected)


def test_postprocessor_smooths_thresholds_and_ranks():
    post = PostProcessor(["a", "b", "c"], smooth=2, threshold=0.6, topk=2)
    top, smoothed, label, score = post(np.log(np.array([0.7, 0.2, 0.1])))
    assert [lb for lb, _ in top] == ["a", "b"] and label == "a" and score == pytest.approx(0.7)
    top, smoothed, label, score = post(np.log(np.array([0.1, 0.8, 0.1])))
    assert top[0][0] == "b" and smoothed[0] == ("b", pytest.approx(0.5)) and label is None  # 0.5 < threshold


def test_latency_histograms_merge_into_one_over_every_sample():
    a, b, whole = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for i, ms in enumerate(np.linspace(1, 200, 400)):
        (a if i % 3 else b).add(ms)
        whole.add(ms)
    a.merge(b)
    assert a.count == whole.count == 400 and a.max_ms == whole.max_ms
    assert a.summary() == pytest.approx(whole.summary())


def test_latency_histogram_percentiles_within_one_percent():
    samples = np.random.default_rng(0).lognormal(1.0, 0.8, 20000)
    hist = LatencyHistogram()
    for s in samples:
        hist.add(s)
    for q in (50, 95, 99):
        assert hist.percentile(q) == pytest.approx(np.percentile(samples, q), rel=0.015)
    assert hist.counts.nbytes < 32_000  # bounded, whatever the number of samples


# --- whole runs ----------------------------------------------------------------------------------


def test_headless_file_run_matches_the_exported_model_offline(tmp_path, onnx_path):
    video = write_video(tmp_path / "clip.avi", 40, size=(64, 48), seed=3)
    log = tmp_path / "pred.jsonl"
    summary = run_live(onnx_path, str(video), RunSettings(stride=4, topk=3, log_path=log, **HEADLESS), engine="ort",
                       **QUIET)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert summary.predictions == len(lines) == 7  # windows ending at frames 15, 19, ..., 39: none dropped
    assert summary.windows_dropped == 0 and summary.frames_read == 40 and summary.end_reason == "end of file"
    frames = read_all_frames(video)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    labels = load_engine(onnx_path, "ort", device="cpu").labels
    for line in lines:
        clip = preprocess_clip([frames[i] for i in line["frame_indices"]], TINY_PREP)[None]
        probs = softmax(session.run(None, {"clip": clip})[0])[0]
        order = np.argsort(-probs)[:3]
        assert [t["label"] for t in line["topk"]] == [labels[i] for i in order]
        np.testing.assert_allclose([t["prob"] for t in line["topk"]], probs[order], atol=1e-4)
        assert line["frame_index"] == line["frame_indices"][-1]
        assert line["latency_ms"]["glass_to_label"] >= line["latency_ms"]["inference"] > 0


def test_network_stream_on_loopback_with_a_reconnect(tmp_path, onnx_path, monkeypatch):
    monkeypatch.setattr(sources_module, "RECONNECT_DELAYS_S", (0.2, 0.2))
    frames = [numbered_frame(i, (64, 48)) for i in range(40)]
    with MjpegServer(frames, fps=100, cut_after=25) as server:  # the first connection drops after 25 frames
        summary = run_live(onnx_path, server.url, RunSettings(**HEADLESS), engine="ort", **QUIET)
    assert server.connections == 2 + 2  # it reconnected after the drop, then tried twice more and gave up
    assert summary.frames_read == 25 + 40  # ...and read the whole second connection
    assert summary.predictions > 0 and "did not come back" in summary.end_reason
    assert summary.frames_dropped is None  # a stream cannot tell what it lost upstream


def test_missing_camera_fails_fast_with_a_clear_message():
    t0 = time.perf_counter()
    with pytest.raises(SourceError, match=r"camera 7 could not be opened .*--source synthetic"):
        open_source("7")
    assert time.perf_counter() - t0 < 5
    with pytest.raises(SourceError, match="no such file"):
        open_source("/no/such/video.mp4")


def test_missing_camera_on_the_command_line_exits_1(onnx_path):
    run = subprocess.run([sys.executable, "-m", "c3d_rt.cli", "webcam", "--model", str(onnx_path), "--source", "7",
                          "--no-show"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "error: camera 7 could not be opened" in run.stderr and "Traceback" not in run.stderr


def test_truncated_video_ends_cleanly(tmp_path, onnx_path):
    video = write_video(tmp_path / "full.avi", 60, size=(64, 48))
    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    summary = run_live(onnx_path, str(cut), RunSettings(stride=2, **HEADLESS), engine="ort", **QUIET)
    assert 16 <= summary.frames_read < 60 and summary.predictions >= 1
    assert summary.end_reason == "end of file"


def test_memory_stays_flat_over_10000_synthetic_frames(onnx_path):
    model = load_engine(onnx_path, "ort", device="cpu", live=True)
    source = sources_module.SyntheticSource(fps=2500, size=(64, 48))
    recognizer = LiveRecognizer(model, source, RunSettings(stride=8, max_frames=10_000, **HEADLESS), **QUIET)
    rss, process = [], psutil.Process()
    sampler = threading.Event()

    def sample():
        while not sampler.wait(0.05):
            rss.append((recognizer.frames_read, process.memory_info().rss))

    thread = threading.Thread(target=sample)
    thread.start()
    summary = recognizer.run()
    sampler.set()
    thread.join()
    assert summary.frames_read == 10_000 and summary.predictions > 100
    warm = [m for n, m in rss if 2_000 <= n <= 3_000]
    late = [m for n, m in rss if n >= 8_000]
    assert warm and late
    assert max(late) - np.median(warm) < 8 * 2**20, "memory grew by more than 8 MiB over 7,000 frames"


def test_display_falls_back_to_headless(monkeypatch, tmp_path, onnx_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert "no display" in display_unavailable_reason()
    monkeypatch.setenv("DISPLAY", ":87")  # set, but nothing listens there: OpenCV's Qt would abort the process
    assert display_unavailable_reason().startswith("opening a window failed")
    messages = []
    video = write_video(tmp_path / "clip.avi", 20, size=(64, 48))
    out = tmp_path / "annotated.mp4"
    summary = run_live(onnx_path, str(video), RunSettings(show=True, output=out), log=messages.append)
    assert any("running headless" in m for m in messages) and summary.predictions == 5
    assert len(read_all_frames(out)) == 20  # every frame, annotated, in the output video


def test_paced_file_keeps_its_frame_rate(tmp_path, onnx_path):
    video = write_video(tmp_path / "clip.avi", 30, size=(64, 48))  # 25 fps
    summary = run_live(onnx_path, str(video), RunSettings(**HEADLESS), engine="ort", realtime=True, **QUIET)
    assert summary.capture_fps == pytest.approx(25, rel=0.1) and summary.duration_s > 1.0
    assert summary.frames_dropped == 0


def test_bad_models_and_providers_are_clear_errors(tmp_path, onnx_path):
    import onnx

    with pytest.raises(ArtifactError, match="no such model file"):
        load_engine(tmp_path / "missing.onnx", "ort")
    plain = onnx.load(str(onnx_path))
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(ArtifactError, match="has no c3d-rt metadata"):
        load_engine(tmp_path / "plain.onnx", "ort")
    wrong = onnx.load(str(onnx_path))
    entry = next(p for p in wrong.metadata_props if p.key == "model_config")
    entry.value = json.dumps({**json.loads(entry.value), "crop_size": 48})
    onnx.save(wrong, str(tmp_path / "wrong.onnx"))
    with pytest.raises(ArtifactError, match=r"metadata says clips of \(B, 3, 16, 48, 48\) but the graph takes"):
        load_engine(tmp_path / "wrong.onnx", "ort", device="cpu")
    if not os.path.exists("/dev/nvidiactl"):
        with pytest.raises(EngineUnavailable, match="no usable NVIDIA GPU here"):
            load_engine(onnx_path, "ort", device="cuda")
