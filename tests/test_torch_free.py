"""The runtime install has no torch: the runtime and engine layers import none, and webcam and bench run without it.

Each run is a real subprocess in which torch cannot be imported (``sys.modules['torch'] = None`` from a
``sitecustomize``: ``import torch`` fails and ``importlib.util.find_spec('torch')`` says it is not installed,
as on a machine where only ``pip install c3d-rt`` ran).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import c3d_rt

# Stages that are torch by nature (the network, the trainer, the writers); everything else is the runtime
# install's, and must import without torch.
TORCH_STAGES = ("c3d_rt.model", "c3d_rt.training", "c3d_rt.export")
TORCH_MODULES = ("c3d_rt.engines.pytorch",)  # the torch engines (the demo imports torch only when it trains)
PACKAGE = Path(c3d_rt.__file__).parent
RUNTIME_MODULES = tuple(sorted(
    name for name in (".".join(("c3d_rt",) + p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
                      for p in PACKAGE.rglob("*.py"))
    if not name.startswith(TORCH_STAGES) and name not in TORCH_MODULES and not name.endswith("__main__")))


def test_the_runtime_list_covers_the_live_box():
    # guards the guard: the modules a live box runs are in the list
    assert {"c3d_rt.runtime.runner", "c3d_rt.engines.ort", "c3d_rt.engines.auto", "c3d_rt.serve.main",
            "c3d_rt.bench.measure", "c3d_rt.cli.main", "c3d_rt.core.motion", "c3d_rt.artifacts.proofs"} <= set(RUNTIME_MODULES)


@pytest.fixture
def no_torch(tmp_path):
    """An environment for subprocesses in which torch is not importable."""
    site = tmp_path / "no-torch-site"
    site.mkdir()
    block = "import sys\nsys.modules['torch'] = None  # as if torch were not installed\n"
    (site / "sitecustomize.py").write_text(block)
    return {**os.environ, "PYTHONPATH": str(site), "DISPLAY": ""}


def _run(env, *args, timeout=300):
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_runtime_and_engine_layers_import_no_torch(no_torch):
    code = ("import importlib, importlib.util, sys\n"
            f"for name in {RUNTIME_MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            "assert importlib.util.find_spec('torch') is None\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' and sys.modules[m] is not None))\n")
    run = _run(no_torch, "-c", code)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "[]"


def test_webcam_and_bench_run_without_torch(tiny_export, tiny_ckpt, no_torch, tmp_path):
    """The live recognizer on the synthetic camera, headless, with what `--engine auto` finds usable, and the
    bench with ONNX Runtime; a torch command says which extra to install."""
    out, _ = tiny_export
    log = tmp_path / "predictions.jsonl"
    run = _run(no_torch, "-m", "c3d_rt.cli", "webcam", "--model", str(out), "--source", "synthetic",
               "--no-show", "--max-frames", "40", "--log", str(log))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    predictions = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(predictions) >= 3 and "Traceback" not in run.stderr
    assert "torch is not installed" not in run.stdout  # auto left the torch engines out quietly

    run = _run(no_torch, "-m", "c3d_rt.cli", "bench", "--model", str(out), "--engines", "torch,ort",
               "--precision", "fp32", "--devices", "cpu", "--batch", "1", "--warmup", "1", "--iters", "2",
               "--clips", "4", "--checkpoint", str(tiny_ckpt), "--json", str(tmp_path / "bench.json"))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["engine"]: r for r in report["rows"] if r["precision"] == "fp32" and r["device"] == "cpu"}
    assert rows["ort"]["status"] == "ok" and rows["ort"]["top1_agreement"] == 1.0
    assert rows["torch"]["status"] == "unavailable" and "c3d-rt[train]" in rows["torch"]["reason"]
    assert "torch is not installed" in report["reference"]

    run = _run(no_torch, "-m", "c3d_rt.cli", "verify", str(out / "c3d.onnx"))  # the file is the one proven
    assert run.returncode == 0 and "as recorded: this is the file the exporter proved" in run.stdout, run.stderr
    changed = tmp_path / "changed" / "c3d.onnx"
    changed.parent.mkdir()
    shutil.copyfile(out / "c3d.onnx", changed)
    shutil.copyfile(out / "report.json", changed.parent / "report.json")
    with open(changed, "ab") as f:
        f.write(b"\0")  # no longer the proven file
    run = _run(no_torch, "-m", "c3d_rt.cli", "verify", str(changed))
    assert run.returncode == 1 and "records no passing check" in run.stderr and "c3d-rt[train]" in run.stderr

    run = _run(no_torch, "-m", "c3d_rt.cli", "export", str(tiny_ckpt), "--out", str(tmp_path / "e"))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "pip install 'c3d-rt[train]'" in run.stderr and not (tmp_path / "e").exists()


def test_version_flag(no_torch):
    from c3d_rt import __version__

    for args in (("--version",), ("--version", "--verbose")):  # --verbose is taken anywhere on the line
        run = _run(no_torch, "-m", "c3d_rt.cli", *args)
        assert run.returncode == 0 and run.stdout.strip() == f"c3d-rt {__version__}", run.stderr
