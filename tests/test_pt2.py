"""The .pt2 formats: torch.export's ExportedProgram (in the default export) and an AOTInductor package (by name)."""

import json
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from c3d_rt.artifacts.formats import format_of, read_artifact_info
from c3d_rt.artifacts.info import ArtifactError
from c3d_rt.bench.measure import run_bench
from c3d_rt.bench.rows import BenchSettings
from c3d_rt.engines import FORMATS, load_engine
from c3d_rt.export.verify import verify_artifact
from c3d_rt.model.checkpoint import load_checkpoint


def _reference(ckpt_path, clips):
    model = load_checkpoint(ckpt_path).build_model()
    with torch.inference_mode():
        return model(torch.from_numpy(clips)).numpy()


def _clips(engine, batch):
    return np.random.default_rng(batch).uniform(-100, 155, (batch, *engine.input_shape)).astype(np.float32)


def test_torch_export_is_in_the_default_export_and_self_describing(tiny_export, tiny_ckpt):
    out, report = tiny_export
    result = next(a for a in report.artifacts if a.format == "torch-export")
    assert result.status == "ok", result.reason
    assert result.max_abs_err < 1e-4 and result.checked_clips > 0
    path = out / FORMATS["torch-export"].file
    info = read_artifact_info(path)  # from the zip archive itself: no torch load
    ckpt = load_checkpoint(tiny_ckpt)
    assert info.labels == ckpt.labels and info.model_config == ckpt.model_config
    assert info.source_sha256 == ckpt.sha256 and info.runtime_version == torch.__version__
    assert format_of(path) == "torch-export"
    with load_engine(path, "torch-export") as engine:
        for batch in (1, 3):  # a dynamic batch axis
            clips = _clips(engine, batch)
            np.testing.assert_allclose(engine(clips), _reference(tiny_ckpt, clips), rtol=1e-4, atol=1e-4)
    assert verify_artifact(path).status == "ok"


def _rewrite(path, changes: dict) -> None:
    """Replace entries of a zip archive (by the end of their name) with new contents."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            for ending, change in changes.items():
                if item.filename.endswith(ending):
                    data = change(data)
            dst.writestr(item, data)
    tmp.replace(path)


def test_a_pt2_from_another_torch_names_both_versions(tiny_export, tmp_path):
    out, _ = tiny_export
    old = tmp_path / "c3d.pt2"
    shutil.copyfile(out / "c3d.pt2", old)

    def older_schema(data):
        model = json.loads(data)
        model["schema_version"]["major"] += 90  # what a far newer torch writes
        return json.dumps(model).encode()

    def older_metadata(data):
        meta = json.loads(data)
        meta["runtime_version"] = json.dumps("2.99.0")
        return json.dumps(meta).encode()

    _rewrite(old, {"models/model.json": older_schema, "extra/c3d_rt.json": older_metadata})
    with pytest.raises(ArtifactError, match=rf"torch 2\.99\.0; torch {re.escape(torch.__version__)} here cannot load"):
        load_engine(old, "torch-export")


def test_aoti_package_is_proven_runs_and_is_a_bench_row(tiny_ckpt, tmp_path):
    """One AOTInductor compile of the tiny model (about a minute on 2 cores) through the CLI, its output going to
    a file (quiet: no compiler or torch warnings), then the engine and the bench row."""
    out = tmp_path / "export"
    with open(tmp_path / "err.txt", "w") as err:
        run = subprocess.run([sys.executable, "-m", "c3d_rt.cli", "export", str(tiny_ckpt), "--out", str(out),
                              "--formats", "aoti"], stdout=subprocess.DEVNULL, stderr=err, timeout=600)
    log = (tmp_path / "err.txt").read_text()
    assert run.returncode == 0, log[-3000:]
    assert not re.search(r"(?i)warn|deprecat|traceback", log) and len(log.splitlines()) <= 3, log[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert [a["status"] for a in report["artifacts"] if a["format"] == "aoti"] == ["ok"]
    path = out / FORMATS["aoti"].file
    assert format_of(path) == "aoti" and read_artifact_info(path).fmt == "aoti"
    with load_engine(path, "aoti") as engine:
        for batch in (1, 3):
            clips = _clips(engine, batch)
            np.testing.assert_allclose(engine(clips), _reference(tiny_ckpt, clips), rtol=1e-4, atol=1e-4)
    bench = run_bench(out, BenchSettings(engines=("aoti",), precisions=("fp32",), devices=("cpu",), batches=(1,),
                                         warmup=1, iters=2, clips=4, auto=False, peer=False), checkpoint=tiny_ckpt,
                     log=lambda _m: None)
    row = next(r for r in bench.rows if r.engine == "aoti")
    assert row.status == "ok" and row.p50_ms > 0, row.reason
