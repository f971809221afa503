"""`webcam` and `serve` refuse what would lose or corrupt a log, dead-end without a model, or wait on a model load
to say that a source does not exist (issue: a new user's first runs).

Rows run the real console entry point (``python -m c3d_rt.cli``) in a subprocess, as a user runs it. A *broken*
model (an .onnx file of garbage) proves that a check runs before the model loads: if it did not, the error would be
the model's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from c3d_rt.engines import EngineUnavailable
from c3d_rt.engines.auto import choose
from c3d_rt.engines.resolve import resolve
from c3d_rt.runtime import sources
from c3d_rt.runtime.sinks import PredictionLog, SinkError
from c3d_rt.runtime.sources import SourceError
from tests.conftest import write_video
from tests.test_cli_errors import REPO, _run

MODEL_ERROR = "c3d.onnx"  # a broken model's error names its file; a check that runs first never gets there


@pytest.fixture(scope="module")
def onnx_path(tiny_export) -> Path:
    return tiny_export[0] / "c3d.onnx"


@pytest.fixture()
def broken(tmp_path) -> Path:
    """A model that fails to load: an .onnx file of garbage."""
    path = tmp_path / "broken" / "c3d.onnx"
    path.parent.mkdir()
    path.write_bytes(b"not an onnx model")
    return path


def _flat(run: subprocess.CompletedProcess) -> str:
    out = run.stdout + run.stderr
    assert "Traceback" not in out, out[-3000:]
    return " ".join(out.split())


def _webcam(model: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return _run(["webcam", "--model", str(model), "--engine", "ort", "--no-show", *args], cwd)


def _no_empty_list(message: str) -> None:
    """No line of ``message`` announces a list (ends in ':') that does not follow."""
    lines = message.splitlines()
    for i, line in enumerate(lines):
        if line.rstrip().endswith(":"):
            assert i + 1 < len(lines) and lines[i + 1].startswith("  "), f"an empty list in:\n{message}"


# --- 1. the prediction log ------------------------------------------------------------------------------


def test_webcam_refuses_an_existing_log_and_names_append_and_overwrite(tmp_path, onnx_path):
    video = write_video(tmp_path / "clip.avi", 20)
    log = tmp_path / "pred.jsonl"
    log.write_text('{"earlier": "run"}\n')
    run = _webcam(onnx_path, "--source", str(video), "--log", str(log))
    out = _flat(run)
    assert run.returncode == 1, out
    assert f"--log {log}" in out and "already exists" in out and "--append" in out and "--overwrite" in out, out
    assert log.read_text() == '{"earlier": "run"}\n'


def test_webcam_log_append_keeps_and_overwrite_replaces(tmp_path, onnx_path):
    video = write_video(tmp_path / "clip.avi", 20)  # 5 predictions at stride 1
    log = tmp_path / "pred.jsonl"
    log.write_text('{"earlier": "run"}\n')
    run = _webcam(onnx_path, "--source", str(video), "--log", str(log), "--append")
    assert run.returncode == 0, _flat(run)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[0] == {"earlier": "run"} and len(lines) == 1 + 5 and all("topk" in p for p in lines[1:])
    run = _webcam(onnx_path, "--source", str(video), "--log", str(log), "--overwrite")
    assert run.returncode == 0, _flat(run)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 5 and [p["seq"] for p in lines] == list(range(5))
    run = _webcam(onnx_path, "--source", str(video), "--log", str(log), "--append", "--overwrite")
    assert run.returncode == 1 and "contradict" in _flat(run)
    run = _webcam(onnx_path, "--source", str(video), "--append")
    assert run.returncode == 1 and "--append" in _flat(run) and "--log" in _flat(run)


def test_two_prediction_logs_on_one_file_cannot_both_write(tmp_path):
    """Two writers of one log (two webcam runs, say) interleave and lose lines: the second is refused."""
    path = tmp_path / "pred.jsonl"
    first = PredictionLog(path)
    try:
        for mode in ("append", "overwrite"):
            with pytest.raises(SinkError, match=rf"--log {re.escape(str(path))}: another run is writing it"):
                PredictionLog(path, mode=mode)
    finally:
        first.close()
    with pytest.raises(SinkError, match="already exists"):
        PredictionLog(path)
    PredictionLog(path, mode="append").close()  # the lock went with the first writer


def test_a_second_webcam_on_the_same_log_is_refused_before_the_model_loads(tmp_path, onnx_path, broken):
    log = tmp_path / "pred.jsonl"
    first = subprocess.Popen([sys.executable, "-m", "c3d_rt.cli", "webcam", "--model", str(onnx_path), "--engine",
                              "ort", "--no-show", "--source", "synthetic@60", "--max-frames", "240", "--log", str(log)],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and log.read_text()) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert log.exists() and log.read_text(), "the first run wrote no prediction"
        second = _webcam(broken, "--source", "synthetic", "--log", str(log), "--append")
        out = _flat(second)
        stdout, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
    assert second.returncode == 1, out
    assert f"--log {log}: another run is writing it" in out and MODEL_ERROR not in out, out
    assert first.returncode == 0, stderr[-3000:]
    made = int(re.match(r"(\d+) predictions", stdout).group(1))
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # every line whole
    assert [p["seq"] for p in lines] == list(range(made)) and made > 0


def test_a_webcam_that_fails_leaves_no_log_behind(tmp_path, broken):
    video = write_video(tmp_path / "clip.avi", 20)
    run = _webcam(broken, "--source", str(video), "--log", str(tmp_path / "new" / "sub" / "pred.jsonl"))
    assert run.returncode == 1 and MODEL_ERROR in _flat(run)
    assert not (tmp_path / "new").exists()


def test_serve_refuses_a_stream_log_another_run_is_writing_before_the_model_loads(tmp_path, broken):
    pytest.importorskip("aiohttp", reason="the serve extra is not installed: pip install 'c3d-rt[serve]'")
    logs = tmp_path / "logs"
    webcam = PredictionLog(logs / "cam.jsonl")  # a webcam run writing where the stream's log would go
    try:
        run = _run(["serve", "--model", str(broken), "--engine", "ort", "--source", "cam=synthetic", "--log-dir",
                    str(logs), "--port", "0"], REPO)
    finally:
        webcam.close()
    out = _flat(run)
    assert run.returncode == 1, out
    assert f"{logs / 'cam.jsonl'}: another run is writing it" in out and MODEL_ERROR not in out, out
    assert "listening on" not in out


def test_a_served_stream_takes_its_log_for_itself(tmp_path):
    pytest.importorskip("aiohttp", reason="the serve extra is not installed: pip install 'c3d-rt[serve]'")
    from c3d_rt.core.config import Preprocessing
    from c3d_rt.serve.streams import Stream, StreamSpec

    spec = StreamSpec("cam", "synthetic")
    make = lambda: Stream(spec, Preprocessing(), ["a", "b"], on_due=lambda: None,  # noqa: E731
                          on_prediction=lambda *_: None, log_dir=tmp_path, log=lambda _m: None)
    (tmp_path / "cam.jsonl").write_text('{"earlier": "run"}\n')
    first = make()  # serve appends: a stream added again keeps its history
    with pytest.raises(SinkError, match="another run is writing it"):
        make()
    first.close()
    make().close()
    assert (tmp_path / "cam.jsonl").read_text() == '{"earlier": "run"}\n'


# --- 2. no model here -------------------------------------------------------------------------------------


@pytest.fixture()
def checkout(tmp_path) -> Path:
    """A folder like the repository: export/ holds only .gitkeep."""
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / ".gitkeep").touch()
    return tmp_path


@pytest.mark.parametrize("command,demo", [("webcam", "demo"), ("bench", "demo"), ("webcam", "demo-quick")])
def test_an_export_folder_with_no_model_points_at_the_demo_models(checkout, command, demo):
    (checkout / "runs" / demo / "export").mkdir(parents=True)  # `c3d-rt demo` or `c3d-rt demo --quick` ran here
    run = _run([command], checkout)
    out = _flat(run)
    assert run.returncode == 1, out
    assert "--model export: holds no model file" in out and f"pass --model runs/{demo}/export" in out, out


@pytest.mark.parametrize("command", ["webcam", "bench"])
def test_an_export_folder_with_no_model_says_how_to_make_one(checkout, command):
    run = _run([command], checkout)
    out = _flat(run)
    assert run.returncode == 1, out
    assert "--model export: holds no model file" in out and "c3d-rt export CKPT --out export" in out, out
    assert "c3d-rt demo" in out and not out.rstrip().endswith(":"), out


def test_auto_never_prints_an_empty_list(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EngineUnavailable) as caught:
        choose(empty, "cpu", log=lambda _m: None)
    _no_empty_list(str(caught.value))
    assert "holds no model file" in str(caught.value)
    with pytest.raises(EngineUnavailable, match="holds no model file") as caught:
        resolve(empty, "ort")
    _no_empty_list(str(caught.value))


# --- 3. the source, before the model --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "folder", "empty"])
def test_webcam_checks_a_file_source_before_the_model_loads(tmp_path, broken, kind):
    source = {"missing": tmp_path / "nope.mp4", "folder": tmp_path, "empty": tmp_path / "empty.mp4"}[kind]
    if kind == "empty":
        source.touch()
    says = {"missing": "no such file", "folder": "is a folder", "empty": "is empty"}[kind]
    run = _webcam(broken, "--source", str(source))
    out = _flat(run)
    assert run.returncode == 1, out
    assert f"--source {str(source)!r}" in out and says in out and MODEL_ERROR not in out, out


@pytest.mark.skipif(sys.platform == "win32" or __import__("os").geteuid() == 0,
                    reason="root reads every file: an unreadable one cannot be made")
def test_an_unreadable_source_is_refused_before_it_opens(tmp_path):
    source = write_video(tmp_path / "clip.avi", 20)
    source.chmod(0)
    with pytest.raises(SourceError, match="cannot be read"):
        sources.check_source(str(source))


def test_check_source_leaves_cameras_and_urls_to_opening(tmp_path):
    for spec in ("0", "7", "rtsp://127.0.0.1:1/x", "synthetic", "synthetic@30"):
        sources.check_source(spec)  # only opening can tell
    with pytest.raises(SourceError, match="synthetic@FPS"):
        sources.check_source("synthetic@fast")
