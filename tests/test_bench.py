"""`c3d-rt bench` on the tiny exported model: every CPU engine, well-formed outputs, loud failures."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest

from c3d_rt.bench.measure import run_bench
from c3d_rt.bench.report import format_table, save_outputs
from c3d_rt.bench.rows import BenchError, BenchSettings
from c3d_rt.cli.options import parse_batches, parse_names
from c3d_rt.core.machine import cpu_has_bf16
from c3d_rt.engines import ENGINES

from .conftest import TINY

QUICK = BenchSettings(batches=(1, 2), warmup=1, iters=3, clips=8)
QUIET = dict(log=lambda _m: None)
PEER_PRECISION = "bf16" if cpu_has_bf16() else "fp32"  # OpenVINO's defaults lower fp32 to bf16 where the CPU has it
ROW_KEYS = {"engine", "device", "precision", "batch", "status", "p50_ms", "p95_ms", "p99_ms", "clips_per_s", "top1_agreement"}


@pytest.fixture(scope="module")
def quick_report(tiny_export, tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    report = run_bench(tiny_export[0], QUICK, checkpoint=tiny_ckpt, **QUIET)  # named: the eager rows
    save_outputs(report, out / "bench.json", out / "bench.md", out / "bench.png")
    return report, out


def test_every_cpu_engine_runs_and_agrees(quick_report, tiny_export):
    report, _ = quick_report
    ok = {r.key for r in report.rows if r.status == "ok"}
    expected = {"torch/fp32/cpu", "torchscript/fp32/cpu", "ort/fp32/cpu", "ort/fp16/cpu", "ort/int8/cpu",
                "openvino/fp32/cpu", "openvino/int8/cpu", f"openvino-defaults/{PEER_PRECISION}/cpu"}
    for key, name in (("ort/int8/cpu", "c3d.int8.onnx"), ("ort/fp16/cpu", "c3d.fp16.onnx"),
                      ("openvino/int8/cpu", "c3d.int8.openvino.xml")):
        if not (tiny_export[0] / name).exists():  # refused by the exporter's own check (too little evidence)
            expected -= {key}
    assert expected <= ok
    assert not report.failed and report.reference == "eager fp32 (CPU)" and report.clips_source == "held-out split"
    for r in report.rows:
        if r.status == "ok":
            assert r.p50_ms > 0 and r.p50_ms <= r.p95_ms <= r.p99_ms and r.top1_agreement >= 0.99
            assert r.clips_per_s == pytest.approx(r.batch * 1e3 / r.mean_ms, rel=1e-3, abs=0.006)  # rounded to 0.01
    eager = next(r for r in report.rows if r.key == "torch/fp32/cpu")
    assert eager.max_abs_err == 0.0  # the reference compared with itself
    auto = [r for r in report.rows if r.engine == "auto"]
    assert [r.status for r in auto] == ["ok", "ok"] and report.auto_choice["chosen"] in ok  # auto picks a real row
    assert auto[0].detail.startswith(report.auto_choice["chosen"])


def test_outputs_are_well_formed(quick_report):
    report, out = quick_report
    saved = json.loads((out / "bench.json").read_text())
    assert {"cpu", "cores", "torch", "onnxruntime", "openvino", "date", "gpu_driver"} <= set(saved["machine"])
    assert len(saved["rows"]) == len(report.rows) and all(ROW_KEYS <= set(r) for r in saved["rows"])
    assert {r["batch"] for r in saved["rows"] if r["status"] == "ok"} == {1, 2}
    assert saved["ratios"]["ort_fp32_over_torch_fp32"] is not None
    assert saved["ratios"]["auto_over_openvino_defaults"] is not None
    assert saved["machine"]["cpu_flags"] and "avx2" in saved["machine"]["cpu_flags"]
    markdown = (out / "bench.md").read_text()
    assert "| engine | precision |" in markdown and "| ort |" in markdown and "| openvino |" in markdown
    image = cv2.imread(str(out / "bench.png"))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 300


def test_unavailable_engines_are_rows_with_a_reason(quick_report, tiny_export, tmp_path):
    report, _ = quick_report
    cuda = [r for r in report.rows if r.device == "cuda"]
    assert cuda, "the CUDA rows must be there, measured or saying why not"
    if all(r.status == "unavailable" for r in cuda):  # a file the exporter refused is said to be missing first
        assert all("NVIDIA GPU" in r.reason or "not found in" in r.reason for r in cuda)
        assert any("NVIDIA GPU" in r.reason for r in cuda)
    partial = tmp_path / "export"
    shutil.copytree(tiny_export[0], partial)
    (partial / "c3d.int8.onnx").unlink(missing_ok=True)  # the exporter may have refused it already
    rows = run_bench(partial, BenchSettings(engines=("ort",), precisions=("int8",), devices=("cpu",), warmup=0,
                                            iters=1, clips=4, auto=False, peer=False), **QUIET).rows
    assert [(r.key, r.status, "c3d.int8.onnx not found" in r.reason) for r in rows] == [
        ("ort/int8/cpu", "unavailable", True)]


def test_a_model_that_computes_something_else_fails_loudly(tiny_export, tiny_ckpt, tmp_path):
    wrong_dir = tmp_path / "export"
    shutil.copytree(tiny_export[0], wrong_dir)
    model = onnx.load(str(wrong_dir / "c3d.onnx"))
    fc8 = next(t for t in model.graph.initializer if "fc8" in t.name and "weight" in t.name)
    weights = onnx.numpy_helper.to_array(fc8)
    fc8.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(weights[::-1]), fc8.name))  # classes shuffled
    onnx.save(model, str(wrong_dir / "c3d.onnx"))
    run = subprocess.run([sys.executable, "-m", "c3d_rt.cli", "bench", "--model", str(wrong_dir), "--engines",
                          "ort,openvino", "--devices", "cpu", "--precision", "fp32", "--batch", "1", "--iters", "2", "--warmup", "0",
                          "--clips", "8", "--checkpoint", str(tiny_ckpt), "--json", str(tmp_path / "b.json")],
                         capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "did not compute what the eager fp32 model computes" in run.stderr
    rows = [r for r in json.loads((tmp_path / "b.json").read_text())["rows"] if r["artifact"].endswith("c3d.onnx")]
    assert {(r["engine"], r["precision"]) for r in rows} >= {("ort", "fp32"), ("openvino-defaults", PEER_PRECISION)}
    assert {r["status"] for r in rows} == {"FAILED"}  # every engine that ran the changed file failed, by its rule:
    for r in rows:  # fp32 logits within tolerance, or (bf16) top-1 agreement
        assert ("logits differ" if r["precision"] == "fp32" else "top-1 agrees with fp32 on") in r["reason"], r


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(BenchError, match="unknown engine tflite"):
        parse_names("ort,tflite", tuple(ENGINES), "engine")
    with pytest.raises(BenchError, match="expected positive batch sizes"):
        parse_batches("1,x")
    with pytest.raises(BenchError, match="holds none of c3d.ts"):
        run_bench(tmp_path, QUICK, **QUIET)


def test_every_cpu_row_says_how_far_it_is_from_the_machines_floor(quick_report):
    report, _ = quick_report
    rates = report.machine["matrix_tflops"]
    assert rates["fp32"] > 0 and (rates["bf16"] is not None) == cpu_has_bf16()
    row = next(r for r in report.rows if r.key == "ort/fp32/cpu" and r.status == "ok")
    assert report.model_gflops == pytest.approx(TINY.gflops, abs=1e-3)  # the exported model's own arithmetic
    # the clips' arithmetic at the measured fp32 rate, over the row's p50 (GFLOP / TFLOP/s = ms)
    assert row.floor_share == pytest.approx(report.model_gflops * row.batch / rates["fp32"] / row.p50_ms, abs=1e-3)
    assert all(r.floor_share is None for r in report.rows if r.device != "cpu" or r.status != "ok")
    assert "of floor" in format_table(report) and "TFLOP/s" in format_table(report)
