"""`c3d-rt serve` as a user runs it: a real server process, real sources (synthetic camera, a looped video
file, a loopback MJPEG camera, unpaced files), real HTTP, Prometheus's parser and a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest

pytest.importorskip("aiohttp", reason="the serve extra is not installed: pip install 'c3d-rt[serve]'")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from c3d_rt.runtime import RunSettings, run_live  # noqa: E402

from .conftest import write_video  # noqa: E402
from .mjpeg_server import MjpegServer  # noqa: E402

TOKEN = "s3cret-token"
FILE_FRAMES = 40  # unpaced file streams: windows at stride 4 from frame 15 on


def _chromium() -> str | None:
    return next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             os.environ.get("C3D_RT_CHROMIUM")) if p), None)


class Served:
    """A `c3d-rt serve` process and how to talk to it."""

    def __init__(self, proc: subprocess.Popen, url: str, stderr: list[str], log_dir: Path) -> None:
        self.proc, self.url, self.stderr, self.log_dir = proc, url.rstrip("/"), stderr, log_dir

    def request(self, path: str, method: str = "GET", body: dict | bytes | None = None, headers: dict | None = None,
                timeout: float = 10.0) -> tuple[int, bytes, dict]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(headers or {}))
        if isinstance(body, dict):
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def json(self, path: str) -> dict:
        status, body, _ = self.request(path)
        assert status == 200, body
        return json.loads(body)

    def streams(self) -> dict[str, dict]:
        return {s["name"]: s for s in self.json("/api/streams")["streams"]}

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            assert self.proc.poll() is None, f"server exited: {''.join(self.stderr)}"
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; server said:\n{''.join(self.stderr)}")


def start_server(args: list[str], env: dict | None = None, timeout: float = 60.0) -> Served:
    cmd = [sys.executable, "-m", "c3d_rt.cli", "serve", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def pump():
        for line in proc.stderr:
            lines.append(line)
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                url.append(m.group(1))
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout):
        proc.kill()
        raise AssertionError(f"no 'listening on' line: {''.join(lines)}")
    log_dir = Path(args[args.index("--log-dir") + 1]) if "--log-dir" in args else Path()
    return Served(proc, url[0], lines, log_dir)


@pytest.fixture(scope="module")
def onnx_path(tiny_export):
    return tiny_export[0] / "c3d.onnx"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    write_video(root / "loop.avi", 30, size=(64, 48), seed=1)
    write_video(root / "f1.avi", FILE_FRAMES, size=(64, 48), seed=2)
    write_video(root / "f2.avi", FILE_FRAMES + 7, size=(80, 60), seed=3)
    return root


@pytest.fixture(scope="module")
def camera():
    frames = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(60)]
    frames = frames * 50  # 3,000 frames at 30 fps: it runs until the test kills it
    with MjpegServer(frames, fps=30, max_connections=1) as server:
        yield server


class WebhookReceiver:
    """A real HTTP endpoint that answers 500 to its first request (to prove the retry) and records the rest."""

    def __init__(self) -> None:
        import http.server

        self.events: list[dict] = []
        self.requests = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                if receiver.requests == 1:
                    self.send_error(500, "not yet")
                    return
                receiver.events.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def receiver():
    hook = WebhookReceiver()
    yield hook
    hook.httpd.shutdown()


@pytest.fixture(scope="module")
def served(onnx_path, media, camera, receiver, tmp_path_factory):
    """Five streams in one server: synthetic camera, paced looped file, loopback MJPEG camera and
    two unpaced files (their windows are deterministic, for the comparison with `webcam`)."""
    folder = tmp_path_factory.mktemp("serve")
    config = folder / "streams.toml"
    config.write_text(f"""
[[stream]]
name = "loop"
source = "{media / 'loop.avi'}"
realtime = true
loop = true

[[stream]]
name = "f1"
source = "{media / 'f1.avi'}"
stride = 4

[[stream]]
name = "f2"
source = "{media / 'f2.avi'}"
stride = 3
smooth = 2
""")
    server = start_server(["--model", str(onnx_path), "--engine", "ort", "--source", "syn=synthetic@30",
                           "--source", f"cam={camera.url}", "--config", str(config), "--stride", "2",
                           "--max-batch", "4", "--max-wait-ms", "20", "--log-dir", str(folder / "logs"),
                           "--media-root", str(media), "--mjpeg-fps", "15",
                           "--webhook", receiver.url])
    yield server
    if server.proc.poll() is None:
        server.proc.kill()


def test_every_stream_predicts(served):
    streams = served.wait_for(lambda: (s := served.streams()) and all(v["predictions"] > 0 for v in s.values())
                              and s, what="a prediction from every stream")
    assert set(streams) == {"syn", "cam", "loop", "f1", "f2"}
    for name in ("syn", "cam", "loop"):
        assert streams[name]["state"] == "running", streams[name]
        assert streams[name]["last_prediction"]["label"] in served.json("/api/streams")["engine"]["labels"]
    status, body, _ = served.request("/readyz")
    assert status == 200 and json.loads(body)["ready"] is True


def test_file_streams_equal_single_stream_webcam_runs(served, media, onnx_path, tmp_path):
    served.wait_for(lambda: all(served.streams()[n]["state"] == "ended" for n in ("f1", "f2")), what="files to end")
    for name, stride, smooth in (("f1", 4, 1), ("f2", 3, 2)):
        served_log = [json.loads(line) for line in (served.log_dir / f"{name}.jsonl").read_text().splitlines()]
        single = tmp_path / f"{name}.jsonl"
        run_live(onnx_path, str(media / f"{name}.avi"), RunSettings(stride=stride, smooth=smooth, show=False,
                                                                    log_path=single), engine="ort", log=lambda _m: 0)
        expected = [json.loads(line) for line in single.read_text().splitlines()]
        assert len(served_log) == len(expected) > 3
        for got, want in zip(served_log, expected):
            assert got["frame_indices"] == want["frame_indices"]
            assert got["label"] == want["label"]
            np.testing.assert_allclose([t["prob"] for t in got["smoothed"]], [t["prob"] for t in want["smoothed"]],
                                       atol=1e-5)
    snapshot = served.streams()["f1"]
    assert snapshot["windows_dropped"] == 0 and snapshot["error"] == "end of file"


def test_batches_hold_windows_of_several_streams(served):
    served.wait_for(lambda: served.streams()["f1"]["state"] == "ended", what="f1 to end")
    families = {f.name: f for f in text_string_to_metric_families(served.request("/metrics")[1].decode())}
    buckets = {s.labels["le"]: s.value for s in families["c3d_rt_batch_size"].samples if s.name.endswith("_bucket")}
    assert buckets["+Inf"] > buckets["1.0"], f"every batch held one window: {buckets}"


def test_metrics_parse_and_their_counters_move(served):
    def scrape() -> dict:
        status, body, headers = served.request("/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(body.decode()) for s in f.samples}

    first = scrape()
    time.sleep(1.5)
    second = scrape()
    key = ("c3d_rt_stream_frames_total", (("stream", "syn"),))
    assert second[key] > first[key] > 0
    assert second[("c3d_rt_stream_predictions_total", (("stream", "syn"),))] > 0
    assert second[("c3d_rt_stage_latency_seconds_count", (("stage", "glass_to_label"),))] > 0
    assert second[("c3d_rt_stream_state", (("state", "running"), ("stream", "syn")))] == 1.0
    assert any(name == "c3d_rt_engine_info" and dict(labels)["engine"] == "ort" for name, labels in second)


def test_server_sent_events_arrive_for_every_stream(served):
    seen: dict[str, dict] = {}
    req = urllib.request.Request(served.url + "/api/events", headers={})
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not {"syn", "cam", "loop"} <= set(seen):
            line = response.readline().decode()
            if line.startswith("data: "):
                event = json.loads(line[6:])
                seen[event["stream"]] = event
    assert {"syn", "cam", "loop"} <= set(seen), f"events only from {sorted(seen)}"
    event = seen["syn"]
    assert {"stream", "frame", "label", "prob", "topk", "latency_ms"} <= set(event)
    assert event["latency_ms"]["glass_to_label"] >= event["latency_ms"]["inference"] > 0


def test_label_changes_reach_the_webhook_after_a_retry(served, receiver):
    served.wait_for(lambda: len(receiver.events) >= 3, what="webhook deliveries")
    event = receiver.events[0]
    assert event["event"] == "label_change" and event["stream"] in served.streams() and "label" in event
    assert receiver.requests > len(receiver.events)  # the first (refused) delivery was tried again
    by_stream: dict[str, list] = {}
    for e in receiver.events:
        by_stream.setdefault(e["stream"], []).append(e["label"])
    for labels in by_stream.values():  # only changes: never the same label twice in a row
        assert all(a != b for a, b in zip(labels, labels[1:]))
    families = {f.name: f for f in text_string_to_metric_families(served.request("/metrics")[1].decode())}
    sent = [s.value for s in families["c3d_rt_webhook_events"].samples if s.labels.get("outcome") == "sent"]
    assert sent and sent[0] >= 1


def test_token_is_required_everywhere_but_healthz(onnx_path):
    server = start_server(["--model", str(onnx_path), "--engine", "ort", "--source", "a=synthetic@10"],
                          env={"C3D_RT_TOKEN": TOKEN})
    try:
        assert server.request("/healthz", headers={})[0] == 200
        for path in ("/", "/api/streams", "/metrics", "/readyz", "/api/events", "/streams/a/frame.jpg", "/nope"):
            status, body, _ = server.request(path, headers={})
            assert status == 401 and b"token" in body, path
        assert server.request("/api/streams", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert server.request("/api/streams?token=" + TOKEN, headers={})[0] == 401  # only the dashboard takes it
        assert server.request("/api/streams", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args):
                return None

        try:
            urllib.request.build_opener(NoRedirect).open(server.url + "/?token=" + TOKEN, timeout=10)
            raise AssertionError("no redirect")
        except urllib.error.HTTPError as redirect:
            assert redirect.code == 302 and redirect.headers["Location"] == "/"
            cookie = redirect.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        status, body, _ = server.request("/api/streams", headers={"Cookie": cookie.split(";")[0]})
        assert status == 200
    finally:
        server.proc.kill()


def test_a_web_page_cannot_drive_a_server_without_token(served):
    ok = {"name": "csrf", "source": "0"}
    status, body, _ = served.request("/api/streams", "POST", json.dumps(ok).encode(),
                                     headers={"Content-Type": "text/plain"})
    assert status == 415 and b"application/json" in body  # a simple cross-site POST cannot be JSON
    status, body, _ = served.request("/api/streams", "POST", ok, headers={"Origin": "http://evil.example"})
    assert status == 403 and b"cross-origin" in body
    status, body, _ = served.request("/api/streams", headers={"Host": "evil.example:8080"})  # DNS rebinding
    assert status == 403 and b"loopback" in body
    assert "csrf" not in served.streams()


def test_annotated_video_is_mjpeg(served):
    req = urllib.request.Request(served.url + "/streams/syn/video.mjpg", headers={})
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        data = b""
        while data.count(b"\xff\xd8") < 2:
            data += response.read1(65536)
    status, jpeg, headers = served.request("/streams/syn/frame.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    assert served.request("/streams/nope/video.mjpg")[0] == 404


def test_streams_are_added_and_removed_over_http(served, media, tmp_path):
    status, body, headers = served.request("/api/streams", "POST", {"name": "extra", "source": "synthetic@20"})
    assert status == 201 and json.loads(body)["stride"] == 2  # the command line's --stride 2 is the default
    assert served.request(headers["Location"])[0] == 200
    served.wait_for(lambda: served.streams()["extra"]["predictions"] > 0, what="the added stream to predict")
    assert served.request("/api/streams", "POST", {"name": "extra", "source": "synthetic"})[0] == 409
    # files only under --media-root; nothing else is opened
    assert served.request("/api/streams", "POST", {"name": "m", "source": "loop.avi", "realtime": True,
                                                   "loop": True})[0] == 201
    outside = write_video(tmp_path / "outside.avi", 20)
    for source in (str(outside), "../" + outside.name, "file:///etc/passwd"):
        status, body, _ = served.request("/api/streams", "POST", {"name": "bad", "source": source})
        assert status == 403, (source, body)
    assert served.request("/api/streams", "POST", {"name": "bad", "source": "nope.avi"})[0] == 404
    assert served.request("/api/streams", "POST", b"{not json", headers={"Content-Type": "application/json"})[0] == 400
    status, body, _ = served.request("/api/streams", "POST", {"name": "../x", "source": "synthetic"})
    assert status == 400 and b"stream name" in body
    assert served.request("/api/streams", "POST", {"name": "y", "source": "synthetic", "stride": 0})[0] == 400
    status, body, _ = served.request("/api/streams", "POST", b"x" * 100_000, headers={"Content-Type":
                                                                                    "application/json"})
    assert status == 413 and json.loads(body)["status"] == 413
    status, body, _ = served.request("/api/streams", "POST", {"name": "s", "source": "synthetic@5000"})
    assert status == 403 and b"at most" in body
    for name in ("extra", "m"):
        assert served.request(f"/api/streams/{name}", "DELETE")[0] == 204
    assert "extra" not in served.streams() and "m" not in served.streams()
    assert served.request("/api/streams/extra", "DELETE")[0] == 404
    assert not (media.parent / "x").exists()


def test_dashboard_in_headless_chromium(served, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium binary (apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(served.url + "/")
        names = set(served.streams())
        page.wait_for_function(f"document.querySelectorAll('.tile').length === {len(names)}", timeout=15000)
        assert {t.get_attribute("data-stream") for t in page.query_selector_all(".tile")} == names
        label = page.locator('.tile[data-stream="syn"] [data-role="label"]')
        page.wait_for_function("document.querySelector('.tile[data-stream=\"syn\"] [data-role=label]')"
                               ".dataset.frame !== undefined", timeout=15000)
        first = label.get_attribute("data-frame")
        page.wait_for_function(f"document.querySelector('.tile[data-stream=\"syn\"] [data-role=label]')"
                               f".dataset.frame !== '{first}'", timeout=15000)
        labels = served.json("/api/streams")["engine"]["labels"]
        assert label.inner_text() in labels
        assert page.locator('.tile[data-stream="syn"]').get_attribute("data-state") == "running"
        page.wait_for_function("document.querySelector('.tile[data-stream=\"syn\"] img').naturalWidth > 0",
                               timeout=15000)
        page.screenshot(path=str(tmp_path / "dashboard.png"))
        browser.close()


def test_a_dead_source_leaves_the_others_running(served, camera):
    served.wait_for(lambda: served.streams()["cam"]["state"] == "running", what="the camera stream")
    camera.kill()
    served.wait_for(lambda: served.streams()["cam"]["state"] == "reconnecting", timeout=30,
                    what="the camera stream to show it is reconnecting")
    before = served.streams()["syn"]["predictions"]
    served.wait_for(lambda: served.streams()["syn"]["predictions"] > before + 3, what="syn to go on predicting")
    snapshot = served.streams()["cam"]
    assert snapshot["reconnects"] >= 1 and snapshot["error"]


def test_sigterm_stops_within_5_seconds_with_logs_flushed(served):
    served.proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    served.proc.wait(timeout=10)
    assert time.monotonic() - start < 5.0
    assert served.proc.returncode == 0, "".join(served.stderr)
    for log in served.log_dir.glob("*.jsonl"):
        lines = log.read_text().splitlines()
        assert all(json.loads(line)["frame_index"] >= 0 for line in lines)  # no half-written line


def test_binding_beyond_loopback_needs_a_token(onnx_path):
    env = {k: v for k, v in os.environ.items() if k != "C3D_RT_TOKEN"}
    run = subprocess.run([sys.executable, "-m", "c3d_rt.cli", "serve", "--model", str(onnx_path), "--host", "0.0.0.0",
                          "--source", "a=synthetic"], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 1
    assert "--token" in run.stderr and "0.0.0.0" in run.stderr and "Traceback" not in run.stderr


def test_bad_stream_options_are_clear_errors(onnx_path, tmp_path):
    bad = tmp_path / "streams.toml"
    bad.write_text('[[stream]]\nname = "a"\nsource = "synthetic"\nstrde = 2\n')
    for args, message in ((["--source", "synthetic", "--source", "cam0=synthetic"], "more than once"),
                          (["--config", str(bad)], "unknown stream field(s) strde"),
                          (["--source", "a=synthetic", "--webhook", "ftp://x"], "http:// or https://")):
        run = subprocess.run([sys.executable, "-m", "c3d_rt.cli", "serve", "--model", str(onnx_path), *args],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 1 and message in run.stderr, run.stderr


def test_batcher_never_sleeps_on_a_due_window(onnx_path, media):
    """One unpaced file at --max-batch 8: each window is due right after the last one was run, and must be
    taken then (a lost wake-up once cost 200 ms per window)."""
    from c3d_rt.engines import load_engine
    from c3d_rt.serve.batcher import Batcher
    from c3d_rt.serve.streams import Stream, StreamSpec

    engine = load_engine(onnx_path, "ort", device="cpu", live=True)
    streams: list[Stream] = []
    batcher = Batcher(engine, lambda: streams, max_batch=8, max_wait_ms=5)
    streams.append(Stream(StreamSpec("a", str(media / "loop.avi"), loop=True), engine.info.preprocessing,
                          engine.labels, on_due=batcher.notify, on_prediction=lambda *_: None, log=lambda _m: None))
    batcher.start()
    streams[0].start()
    try:
        deadline = time.monotonic() + 60
        while streams[0].counters.predictions == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        start, t0 = streams[0].counters.predictions, time.monotonic()
        time.sleep(3)
        rate = (streams[0].counters.predictions - start) / (time.monotonic() - t0)
    finally:
        streams[0].close()
        batcher.stop()
    assert rate > 20, f"{rate:.1f} windows/s from an unpaced file: the batcher slept while a window was due"


def test_memory_stays_flat_over_10000_frames_per_stream(onnx_path, media):
    """Two looped files read unpaced through the batcher (no HTTP): 10,000 frames each."""
    from c3d_rt.engines import load_engine
    from c3d_rt.serve.batcher import Batcher
    from c3d_rt.serve.streams import Stream, StreamSpec

    engine = load_engine(onnx_path, "ort", device="cpu", live=True)
    streams: list[Stream] = []
    batcher = Batcher(engine, lambda: streams, max_batch=2, max_wait_ms=1)
    for name in ("a", "b"):
        spec = StreamSpec(name, str(media / "loop.avi"), stride=8, loop=True)
        streams.append(Stream(spec, engine.info.preprocessing, engine.labels, on_due=batcher.notify,
                              on_prediction=lambda *_: None, log=lambda _m: None))
    batcher.start()
    for s in streams:
        s.start()
    process, rss = psutil.Process(), []
    try:
        while min(s.counters.frames for s in streams) < 10_000:
            rss.append((min(s.counters.frames for s in streams), process.memory_info().rss))
            assert batcher.error is None
            time.sleep(0.05)
    finally:
        for s in streams:
            s.close()
        batcher.stop()
    assert min(s.counters.predictions for s in streams) > 1000
    warm = [m for n, m in rss if 2_000 <= n <= 3_000]
    late = [m for n, m in rss if n >= 8_000]
    assert warm and late and max(late) - np.median(warm) < 8 * 2**20, "memory grew by more than 8 MiB"
