"""`c3d-rt bench` when a row cannot run or a report is read: out of memory, the auto row's precisions, the
Markdown table, and the --e2e run measured as `c3d-rt webcam` measures it."""

import json
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import psutil
import pytest

from c3d_rt.artifacts.formats import FORMATS
from c3d_rt.bench.measure import run_bench
from c3d_rt.bench.report import COLUMNS, exit_messages, format_markdown, format_table
from c3d_rt.bench.rows import BenchReport, BenchSettings, Row
from c3d_rt.engines.resolve import read_info

QUIET = dict(log=lambda _m: None)


def _clip_bytes(folder) -> int:
    """Bytes of one float32 clip of the model in ``folder``, from its own metadata."""
    info = read_info(folder / FORMATS["onnx"].file)
    return int(np.prod(info.model_config.input_shape(1))) * 4


def _bench(folder, *args: str, tmp_path, limit_gib: float | None = None, timeout: int = 300):
    """`python -m c3d_rt.cli bench` on ``folder``; with ``limit_gib``, the process may map only that much more
    memory than it holds once its libraries are loaded (a real MemoryError, without filling the machine)."""
    json_path = tmp_path / "b.json"
    argv = ["bench", "--model", str(folder), "--devices", "cpu", "--iters", "2", "--warmup", "0", "--clips", "4",
            "--json", str(json_path), *args]
    if limit_gib is None:
        command = [sys.executable, "-m", "c3d_rt.cli", *argv]
    else:
        command = [sys.executable, "-c", LIMITED, str(limit_gib), *argv]
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return run, json.loads(json_path.read_text()) if json_path.exists() else None


LIMITED = """
import resource, sys
import numpy, onnxruntime, openvino, psutil  # their code is mapped before the limit
from c3d_rt.cli.main import main
limit = psutil.Process().memory_info().vms + int(float(sys.argv[1]) * 2**30)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv = ["c3d-rt", *sys.argv[2:]]
main()
"""


# --- 1. a batch that does not fit is refused up front, or a row that says it could not run ---------------------


def test_a_batch_larger_than_memory_is_refused_before_anything_runs(tiny_export, tmp_path):
    memory = psutil.virtual_memory().total + psutil.swap_memory().total
    batch = 4 * memory // _clip_bytes(tiny_export[0])  # four times the machine: the kernel refuses it outright too
    run, saved = _bench(tiny_export[0], "--engines", "ort", "--precision", "fp32", "--batch", f"1,{batch}",
                        tmp_path=tmp_path, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"--batch {batch}" in run.stderr and "GiB" in run.stderr and "at most" in run.stderr, run.stderr
    assert "did not compute" not in run.stderr and saved is None  # refused: nothing measured, nothing written
    assert "reference:" not in run.stderr  # before the reference ran


def test_a_batch_that_runs_out_of_memory_is_a_row_that_could_not_run(tiny_export, tmp_path):
    batch = int(3 * 2**30 / _clip_bytes(tiny_export[0]))  # 3 GiB of clips: more than the 2 GiB the process may map
    if psutil.virtual_memory().available < 8 * 2**30:
        pytest.skip("needs 8 GiB available, so that the up-front check lets a 3 GiB batch through")
    run, saved = _bench(tiny_export[0], "--engines", "ort", "--precision", "fp32", "--batch", f"1,{batch}",
                        tmp_path=tmp_path, limit_gib=2.0)
    assert run.returncode == 1, run.stdout + run.stderr
    rows = {(r["engine"], r["batch"]): r for r in saved["rows"]}
    assert rows[("ort", 1)]["status"] == "ok" and rows[("ort", 1)]["p50_ms"] > 0  # the batch that fit is kept
    big = rows[("ort", batch)]
    assert big["status"] == "ERROR" and f"out of memory at batch {batch}" in big["reason"], big
    assert re.search(r"about \d+\.\d GiB", big["reason"]), big["reason"]
    assert not any(r["status"] == "FAILED" for r in saved["rows"])  # nothing computed something else
    assert "could not run" in run.stderr and "did not compute" not in run.stderr, run.stderr


# --- 4. the auto row chooses among the precisions asked for ----------------------------------------------------


def test_the_auto_row_chooses_among_the_precisions_asked_for(tiny_export, tiny_ckpt):
    asked = ("fp16", "int8")  # not fp32, which every export proves: auto must not fall back to it
    report = run_bench(tiny_export[0], BenchSettings(engines=("ort",), precisions=asked, devices=("cpu",),
                                                     batches=(1,), warmup=0, iters=1, clips=4, peer=False),
                       checkpoint=tiny_ckpt, **QUIET)
    auto = next(r for r in report.rows if r.engine == "auto")
    if auto.status == "unavailable":  # none of them proven here (a tiny model's int8 may flip too many windows)
        assert "auto found no proven engine" in auto.reason and "fp32" in auto.reason, auto.reason
        assert "not fp16 or int8" in auto.reason, auto.reason
    else:
        assert auto.status == "ok" and auto.precision in asked, (auto, report.auto_choice)
        timed = [t for t in report.auto_choice["trials"] if t["status"] != "skipped"]
        assert timed and all(t["key"].split("/")[1] in asked for t in timed), report.auto_choice


# --- 3. the Markdown table renders: as many cells in every row as in the header -----------------------------------


def _cells(line: str) -> int:
    """Cells of a Markdown table row as a renderer counts them: split at pipes that are not escaped."""
    return len(re.split(r"(?<!\\)\|", line.strip().removeprefix("|").removesuffix("|")))


def test_every_markdown_table_row_has_as_many_cells_as_its_header():
    rows = [Row("ort", "fp32", "cpu", 1, p50_ms=1.0, p95_ms=1.1, p99_ms=1.2, mean_ms=1.0, clips_per_s=1000.0,
                max_prob_err=1e-7, top1_agreement=1.0, detail="CPU | spinning"),
            Row("ort", "int8", "cpu", 1, status="unavailable", reason="c3d.int8.onnx | not found"),
            Row("weird|name", "fp32", "cpu", 8, status="ERROR", reason="out of memory at batch 8: |x| GiB")]
    how = {"command": "c3d-rt webcam | x", "note": "a | b"}
    e2e = {"engine": "a|b/fp32/cpu", "status": "ok", "fps": 30.0, "frames": 32, "frames_dropped": 0,
           "predictions_per_s": 1.5, "windows_dropped": 0, "g2l_p50_ms": 1.0, "g2l_p95_ms": 2.0, "g2l_p99_ms": 3.0,
           "inference_p50_ms": 0.5, "overhead_p50_ms": 0.5, "overhead_p99_ms": 0.6, "predictions": 17, **how}
    broken = {"engine": "ort/int8/cpu", "status": "ERROR", "reason": "no | file", **how}
    report = BenchReport("export", "eager fp32 (CPU)", "held-out split",
                         {"clips": 4, "warmup": 0, "iters": 1, "threads": None}, {"cpu": "x"}, rows,
                         e2e=[e2e, broken])
    tables: list[list[str]] = []
    previous = ""
    for line in format_markdown(report).splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    assert len(tables) == 2
    assert _cells(tables[0][0]) == len(COLUMNS)
    for table in tables:
        header = _cells(table[0])
        assert [_cells(line) for line in table] == [header] * len(table), table
        assert len(table) >= 3


# --- 2. --e2e is the live run `c3d-rt webcam` makes, in a process of its own --------------------------------------


def test_e2e_is_the_webcam_run_it_names(tiny_export, tmp_path):
    settings = BenchSettings(engines=(), devices=("cpu",), threads=1, auto=False, peer=False, e2e=True,
                             e2e_engine="ort", e2e_precision="fp32", e2e_seconds=1.0)
    e2e = run_bench(tiny_export[0], settings, **QUIET).e2e[0]
    command = shlex.split(e2e["command"])
    assert command[:2] == ["c3d-rt", "webcam"] and "--device" in command and "cpu" in command
    assert e2e["engine"] == "ort/fp32/cpu" and e2e["frames"] == 32 and "every core" in e2e["note"]
    summary = tmp_path / "live.json"
    run = subprocess.run([sys.executable, "-m", "c3d_rt.cli", *command[1:], "--summary-json", str(summary)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    live = json.loads(summary.read_text())
    assert (live["engine"], live["frames_read"]) == (e2e["engine"], e2e["frames"])


def test_an_e2e_run_that_cannot_run_says_why_and_keeps_the_rows(tiny_export, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(tiny_export[0], folder)
    (folder / "c3d.int8.onnx").unlink(missing_ok=True)
    settings = BenchSettings(engines=("ort",), precisions=("fp32",), devices=("cpu",), batches=(1,), warmup=0,
                             iters=1, clips=4, auto=False, peer=False, e2e=True, e2e_engine="ort",
                             e2e_precision="int8", e2e_seconds=1.0)
    report = run_bench(folder, settings, **QUIET)
    assert [(r.key, r.status) for r in report.rows] == [("ort/fp32/cpu", "ok")]  # measured, and kept
    e2e = report.e2e[0]
    assert e2e["status"] == "ERROR" and "nothing for engine ort at precision int8" in e2e["reason"], e2e
    assert not report.e2e_runs
    assert any(line.startswith("error: the --e2e run could not run") for line in exit_messages(report))
    assert "e2e ort/int8/cpu: ERROR" in format_table(report) and "ERROR" in format_markdown(report)
