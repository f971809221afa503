"""Triton: the model repository `export --formats triton` writes, and the triton engine against a real server.

The repository tests need tritonclient (Triton's model-config schema; in the test extra). The server
tests run a real Triton server from PyTriton (tools/pytriton_server.py) in its own virtual environment
(tools/pytriton-venv.sh; PyTriton pins numpy<2); without it they are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from c3d_rt.artifacts.formats import folder_files
from c3d_rt.artifacts.info import ArtifactInfo, read_onnx_info
from c3d_rt.artifacts.triton import TritonOptions, config_text, parse_config
from c3d_rt.core.config import ModelConfig
from c3d_rt.engines import EngineError, EngineUnavailable, load_engine
from c3d_rt.engines.equivalence import judge
from c3d_rt.export.inputs import ExportError
from c3d_rt.export.job import export_checkpoint
from c3d_rt.model.c3d import C3D

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient (pip install 'c3d-rt[triton]')")

ROOT = Path(__file__).resolve().parents[1]
SERVER_PYTHON = Path(os.environ.get("C3D_RT_PYTRITON_PYTHON", ROOT / ".venv-triton" / "bin" / "python"))
QUIET = dict(log=lambda _m: None)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "c3d_rt.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def triton_export(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("triton-export")
    report = export_checkpoint(tiny_ckpt, out, formats=["onnx", "triton"], check_clips=8, **QUIET)
    return out, report


# --- the repository ----------------------------------------------------------------------------------


def test_repository_is_the_proven_onnx_with_a_config_triton_accepts(triton_export):
    out, report = triton_export
    model = out / "triton" / "c3d"
    assert {a.format: a.status for a in report.artifacts} == {"onnx": "ok", "triton": "ok"}
    assert (model / "1" / "model.onnx").read_bytes() == (out / "c3d.onnx").read_bytes()
    info = read_onnx_info(out / "c3d.onnx")
    assert (model / "labels.txt").read_text().splitlines() == info.labels
    config = parse_config((model / "config.pbtxt").read_text())  # Triton's own ModelConfig schema
    assert (config.name, config.backend, config.max_batch_size) == ("c3d", "onnxruntime", 8)
    assert [(i.name, list(i.dims)) for i in config.input] == [("clip", [3, 16, 32, 32])]
    assert [(o.name, list(o.dims), o.label_filename) for o in config.output] == [("logits", [9], "labels.txt")]
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(g.kind, g.count) for g in config.instance_group] == [(config.instance_group[0].KIND_CPU, 1)]
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    served = ArtifactInfo.from_metadata({k: v.string_value for k, v in config.parameters.items()}, "config")
    assert served == info  # the artifact's self-description travels in the config
    report_json = json.loads((out / "report.json").read_text())
    assert {a["format"] for a in report_json["artifacts"] if a["status"] == "ok"} == {"onnx", "triton"}
    assert "triton" in folder_files(out)


@pytest.mark.parametrize("kind,accelerated", [("gpu", False), ("tensorrt", True)])
def test_gpu_instances_and_the_tensorrt_accelerator(triton_export, kind, accelerated):
    info = read_onnx_info(triton_export[0] / "c3d.onnx")
    config = parse_config(config_text(info, TritonOptions(kind=kind, max_batch_size=16, queue_delay_us=500)))
    assert [g.kind for g in config.instance_group] == [config.instance_group[0].KIND_GPU]
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8, 16]
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == (["tensorrt"] if accelerated else [])
    if accelerated:
        assert accelerators[0].parameters["precision_mode"] == "FP32"


def test_a_config_triton_would_reject_fails_the_writer(triton_export):
    from c3d_rt.artifacts.triton import TritonConfigError

    text = (triton_export[0] / "triton" / "c3d" / "config.pbtxt").read_text()
    with pytest.raises(TritonConfigError, match="Triton's model-config schema rejects it"):
        parse_config(text.replace("max_batch_size", "max_batch"))
    with pytest.raises(TritonConfigError, match="max_batch_size 0"):
        TritonOptions(max_batch_size=0).check()


def test_an_existing_repository_is_replaced_only_with_force(triton_export, tiny_ckpt, tmp_path):
    out = tmp_path / "export"
    shutil.copytree(triton_export[0], out)
    config = out / "triton" / "c3d" / "config.pbtxt"
    before = config.read_bytes(), config.stat().st_mtime_ns
    run = _cli("export", str(tiny_ckpt), "--out", str(out), "--formats", "triton", "--triton-kind", "gpu")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "a Triton model folder is already there" in run.stderr and "--force" in run.stderr
    assert (config.read_bytes(), config.stat().st_mtime_ns) == before
    with pytest.raises(ExportError, match="--force"):
        export_checkpoint(tiny_ckpt, out, formats=["triton"], **QUIET)
    stale = out / "triton" / "c3d" / "2" / "model.onnx"  # a version a user left there: replaced with the rest
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    report = export_checkpoint(tiny_ckpt, out, formats=["triton"], force=True, check_clips=4,
                               triton=TritonOptions(max_batch_size=4), **QUIET)
    assert report.ok and not stale.parent.exists()
    assert "max_batch_size: 4" in config.read_text()
    assert (out / "c3d.onnx").is_file()  # the folder's other formats are left alone


def test_the_triton_engine_says_what_it_needs(triton_export):
    with pytest.raises(EngineUnavailable, match="needs a server: pass --triton-url"):
        load_engine(triton_export[0], "triton")
    with pytest.raises(EngineError, match="expected http://HOST:PORT"):
        load_engine(triton_export[0], "triton", url="ftp://host:21")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_down_is_refused_at_start(triton_export):
    for url in (f"http://127.0.0.1:{_free_port()}", f"grpc://127.0.0.1:{_free_port()}"):
        with pytest.raises(EngineUnavailable, match=f"no Triton server answers at {url}"):
            load_engine(triton_export[0], "triton", url=url)
    run = _cli("webcam", "--model", str(triton_export[0]), "--engine", "triton", "--source", "synthetic",
               "--no-show", "--max-frames", "20", env={"C3D_RT_TRITON_URL": f"grpc://127.0.0.1:{_free_port()}"})
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "error: no Triton server answers at grpc://127.0.0.1:" in run.stderr


# --- a real Triton server (PyTriton) -------------------------------------------------------------------


def _other_shape_export(tmp: Path) -> Path:
    """Another model: 4 classes, 64x64 crops (untrained; exported like any checkpoint)."""
    ckpt = tmp / "other.pt"
    torch.save(C3D(ModelConfig(num_classes=4, width=0.0625, crop_size=64)).state_dict(), ckpt)
    export_checkpoint(ckpt, tmp / "other", formats=["triton"], check_clips=0, **QUIET)
    return tmp / "other" / "triton" / "c3d"


def _renamed_labels_export(tiny_ckpt: Path, tmp: Path) -> Path:
    """The same model and weights under other class names."""
    names = tmp / "names.txt"
    names.write_text("".join(f"action_{i}\n" for i in range(9)))
    export_checkpoint(tiny_ckpt, tmp / "renamed", formats=["triton"], labels_file=names, check_clips=2, **QUIET)
    return tmp / "renamed" / "triton" / "c3d"


@pytest.fixture(scope="module")
def triton_server(triton_export, tiny_ckpt, tmp_path_factory):
    """A real Triton server on free ports serving: c3d (this export), shape (another model), labels (other
    class names), scaled (this model's logits x 1.5: the same shapes and labels, another computation)."""
    if not SERVER_PYTHON.is_file():
        pytest.skip(f"no PyTriton environment at {SERVER_PYTHON} (make it with tools/pytriton-venv.sh, or set "
                    "C3D_RT_PYTRITON_PYTHON): the real-server tests need its tritonserver")
    tmp = tmp_path_factory.mktemp("triton-server")
    model = triton_export[0] / "triton" / "c3d"
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    log = open(tmp / "server.log", "w")
    server = subprocess.Popen(
        [str(SERVER_PYTHON), str(ROOT / "tools" / "pytriton_server.py"), f"c3d={model}",
         f"shape={_other_shape_export(tmp)}", f"labels={_renamed_labels_export(tiny_ckpt, tmp)}", f"scaled={model}",
         "--scale", "scaled=1.5", "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while "serving" not in (tmp / "server.log").read_text():
        if server.poll() is not None or time.time() > deadline:
            server.kill()
            pytest.fail(f"the PyTriton server did not start:\n{(tmp / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield {"http": f"http://127.0.0.1:{http}", "grpc": f"grpc://127.0.0.1:{grpc}"}
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(params=["http", "grpc"])
def url(request, triton_server):
    return triton_server[request.param]


def test_the_engine_runs_on_the_server_and_agrees_with_the_local_model(triton_export, url):
    folder = triton_export[0]
    local = load_engine(folder, "ort", "fp32", "cpu")
    with load_engine(folder, "triton", url=url) as served:
        assert served.key == "triton/fp32/cpu" and served.labels == local.labels
        assert served.max_batch == 8 and "KIND_CPU" in served.detail
        clips = np.random.default_rng(0).uniform(-100, 155, (11, *served.input_shape)).astype(np.float32)
        logits = served(clips)  # 11 clips: two requests (max_batch_size 8)
        assert logits.shape == (11, 9) and logits.dtype == np.float32
        verdict = judge(local(clips), logits, "fp32")
        assert verdict.ok, verdict.reason
    local.close()


@pytest.mark.parametrize("model_name,match", [
    ("shape", r"with input clip FP32 \(B, 3, 16, 64, 64\) and output logits FP32 \(B, 4\); c3d.onnx expects "
              r"input clip FP32 \(B, 3, 16, 32, 32\) and output logits FP32 \(B, 9\)"),
    ("labels", r"with labels 9 \[action_0, action_1, action_2, action_3, \.\.\.\]; c3d.onnx has 9 \[static, "),
    ("scaled", r"does not compute what .*c3d.onnx computes: logits differ beyond"),
    ("absent", r"has no ready model 'absent'"),
])
def test_a_server_of_another_model_is_refused_at_start(triton_export, url, model_name, match):
    with pytest.raises(EngineError, match=match):
        load_engine(triton_export[0], "triton", url=url, model_name=model_name)


def test_webcam_and_bench_run_against_the_server(triton_export, triton_server, tmp_path):
    folder = triton_export[0]
    run = _cli("webcam", "--model", str(folder), "--engine", "triton", "--triton-url", triton_server["grpc"],
               "--source", "synthetic", "--no-show", "--max-frames", "40", "--summary-json", str(tmp_path / "s.json"))
    assert run.returncode == 0, run.stderr
    assert "triton fp32 on cpu (GRPC" in run.stderr and json.loads((tmp_path / "s.json").read_text())["predictions"] > 0
    run = _cli("bench", "--model", str(folder), "--engines", "triton,ort", "--precision", "fp32", "--devices", "cpu",
               "--batch", "1,8", "--warmup", "1", "--iters", "3", "--clips", "4", "--json", str(tmp_path / "b.json"),
               env={"C3D_RT_TRITON_URL": triton_server["http"]})
    assert run.returncode == 0, run.stderr
    rows = {(r["engine"], r["batch"]): r for r in json.loads((tmp_path / "b.json").read_text())["rows"]}
    for batch in (1, 8):
        assert rows[("triton", batch)]["status"] == "ok" and rows[("triton", batch)]["top1_agreement"] == 1.0
