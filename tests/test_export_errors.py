"""What an export folder may hold and what it runs: one model (another checkpoint's files are replaced only with
--force), only its own files (never the training run it came from), and an honest report.json after Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from c3d_rt.artifacts.proofs import recorded_proof, source_checkpoint
from c3d_rt.bench.measure import run_bench
from c3d_rt.bench.rows import BenchError, BenchSettings
from c3d_rt.engines import EngineUnavailable, choose, resolve
from c3d_rt.export.inputs import ExportError
from c3d_rt.export.job import export_checkpoint
from tests.test_cli_errors import _main

QUIET = dict(log=lambda _m: None)
FAST = dict(calib_clips=4, check_clips=4, **QUIET)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def other_ckpt(tiny_ckpt, tmp_path_factory) -> Path:
    """Another checkpoint of the same model (fc8's first two classes swapped): another SHA-256, another model."""
    state = torch.load(tiny_ckpt, weights_only=True)
    for key in (k for k in state["state_dict"] if k.endswith(("fc8.weight", "fc8.bias"))):
        state["state_dict"][key][[0, 1]] = state["state_dict"][key][[1, 0]].clone()
    path = tmp_path_factory.mktemp("other-run") / "best.pt"
    torch.save(state, path)
    return path


@pytest.fixture()
def folder(tiny_export, tmp_path) -> Path:
    """A copy of the tiny export (its report.json names the training run's last.pt, which is still there)."""
    return Path(shutil.copytree(tiny_export[0], tmp_path / "export"))


# --- 1. one model a folder: another checkpoint's files are replaced only with --force ---------------------


def test_export_of_another_checkpoint_is_refused_before_anything_is_written(folder, tiny_ckpt, other_ckpt,
                                                                             monkeypatch, capsys):
    before = _digests(folder)
    with pytest.raises(ExportError) as refused:
        export_checkpoint(other_ckpt, folder, formats=["onnx"], **FAST)
    message = " ".join(str(refused.value).split())
    for fragment in (str(tiny_ckpt.resolve()), "c3d.ts", "c3d.onnx", "report.json", "--force", str(other_ckpt)):
        assert fragment in message, message
    assert _digests(folder) == before  # nothing removed, replaced or added
    code, out = _main(["export", str(other_ckpt), "--out", str(folder), "--formats", "torchscript"], monkeypatch,
                      capsys)
    assert code == 1 and "error:" in out and "--force" in out and "Traceback" not in out
    assert _digests(folder) == before


def test_force_replaces_another_checkpoints_files(folder, other_ckpt, monkeypatch, capsys):
    code, out = _main(["export", str(other_ckpt), "--out", str(folder), "--formats", "torchscript", "--force"],
                      monkeypatch, capsys)
    assert code == 0, out
    assert sorted(p.name for p in folder.iterdir()) == ["c3d.ts", "report.json"]
    report = json.loads((folder / "report.json").read_text())
    assert report["source"] == str(other_ckpt.resolve()) and report["complete"] and report["ok"]
    assert [a["format"] for a in report["artifacts"]] == ["torchscript"]


def test_force_help_covers_both_replacements(monkeypatch, capsys):
    code, out = _main(["export", "--help"], monkeypatch, capsys)
    flat = " ".join(out.replace("│", " ").split())  # the help's box, wrapped
    assert code == 0 and "another checkpoint" in flat and "Triton model folder" in flat


def test_the_same_checkpoint_adds_to_its_folder_without_force(tiny_ckpt, tmp_path):
    out = tmp_path / "e"
    export_checkpoint(tiny_ckpt, out, formats=["torchscript"], **FAST)
    export_checkpoint(tiny_ckpt, out, formats=["onnx"], **FAST)
    report = json.loads((out / "report.json").read_text())
    assert [a["format"] for a in report["artifacts"]] == ["torchscript", "onnx"] and report["ok"]


# --- 2. a model folder runs only what is inside it --------------------------------------------------------


def test_auto_never_runs_the_training_checkpoint_behind_a_folder(folder, tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert tiny_ckpt.is_file() and json.loads((folder / "report.json").read_text())["source"] == str(tiny_ckpt)
    assert source_checkpoint(folder) is None
    engine, choice = choose(folder, "cpu", **QUIET)
    engine.close()
    assert not [t.key for t in choice.trials if t.key.startswith("torch/")], choice.format()
    with pytest.raises(EngineUnavailable, match=r"training checkpoint.*name it"):
        resolve(folder, "torch", "fp32", "cpu")
    named = resolve(folder, "torch", "fp32", "cpu", checkpoint=tiny_ckpt)  # named: used
    assert named.path == tiny_ckpt


def test_the_source_checkpoint_inside_the_folder_is_its_own(folder, tiny_ckpt, other_ckpt):
    shutil.copyfile(other_ckpt, folder / tiny_ckpt.name)  # the name, not the file exported from: not taken
    assert source_checkpoint(folder) is None
    shutil.copyfile(tiny_ckpt, folder / tiny_ckpt.name)
    assert source_checkpoint(folder) == folder / tiny_ckpt.name
    assert resolve(folder, "torch", "fp32", "cpu").path == folder / tiny_ckpt.name


def test_bench_without_a_named_checkpoint_judges_against_the_proven_onnx(folder, tiny_ckpt):
    settings = BenchSettings(engines=("torch", "ort"), precisions=("fp32",), devices=("cpu",), batches=(1,),
                             warmup=0, iters=1, clips=4, auto=False, peer=False)
    report = run_bench(folder, settings, **QUIET)
    rows = {r.engine: r for r in report.rows}
    assert report.reference.startswith("ONNX Runtime CPU fp32") and "--checkpoint" in report.reference
    assert rows["torch"].status == "unavailable" and "--checkpoint" in rows["torch"].reason
    assert rows["ort"].status == "ok"
    named = run_bench(folder, settings, checkpoint=tiny_ckpt, **QUIET)
    assert named.reference == "eager fp32 (CPU)" and {r.status for r in named.rows} == {"ok"}
    with open(folder / "c3d.onnx", "ab") as f:
        f.write(b"\0")  # no longer the proven file: no reference without the checkpoint
    with pytest.raises(BenchError, match=r"c3d.onnx.*--checkpoint"):
        run_bench(folder, settings, **QUIET)


# --- 3. Ctrl-C: report.json says the export is incomplete, and the message says what it holds -------------


def _interrupt(*_a, **_k):
    raise KeyboardInterrupt


def test_ctrl_c_after_one_format_leaves_an_incomplete_report(tiny_ckpt, tmp_path, monkeypatch, capsys):
    import c3d_rt.export.job

    out = tmp_path / "e"
    monkeypatch.setattr(c3d_rt.export.job, "write_onnx_fp32", _interrupt)  # torchscript is proven, then Ctrl-C
    code, text = _main(["export", str(tiny_ckpt), "--out", str(out), "--formats", "onnx,torchscript"], monkeypatch,
                       capsys)
    flat = " ".join(text.split())
    report = json.loads((out / "report.json").read_text())
    assert code == 130 and report["complete"] is False and report["ok"] is False
    assert [(a["format"], a["status"]) for a in report["artifacts"]] == [("torchscript", "ok")]
    assert report["unfinished"] == ["onnx"]
    assert "was not updated" not in flat and f"{out / 'report.json'}" in flat and '"complete": false' in flat
    assert "proven: torchscript" in flat and "--formats onnx" in flat, flat
    assert sorted(p.name for p in out.iterdir()) == ["c3d.ts", "report.json"]  # nothing half-written
    assert recorded_proof(out / "c3d.ts") is not None  # auto and verify trust what is recorded, and only that
    engine, choice = choose(out, "cpu", **QUIET)
    engine.close()
    assert choice.chosen == "torchscript/fp32/cpu"


def test_ctrl_c_in_the_first_format_of_a_fresh_folder_is_never_ok(tiny_ckpt, tmp_path, monkeypatch, capsys):
    import c3d_rt.export.job

    out = tmp_path / "e"
    monkeypatch.setattr(c3d_rt.export.job, "write_torchscript", _interrupt)
    code, text = _main(["export", str(tiny_ckpt), "--out", str(out), "--formats", "torchscript"], monkeypatch, capsys)
    flat = " ".join(text.split())
    report = json.loads((out / "report.json").read_text())
    assert code == 130 and report["artifacts"] == [] and report["ok"] is False and report["complete"] is False
    assert "proven: nothing" in flat and "--formats torchscript" in flat, flat
    with pytest.raises(EngineUnavailable, match="holds no model file for auto|auto found no proven engine"):
        choose(out, "cpu", **QUIET)


def test_ctrl_c_in_the_checks_of_lowered_precisions_records_every_file(tiny_ckpt, tmp_path, monkeypatch, capsys):
    import c3d_rt.export.job

    out = tmp_path / "e"
    monkeypatch.setattr(c3d_rt.export.job, "prove_lowered_plans", _interrupt)
    code, text = _main(["export", str(tiny_ckpt), "--out", str(out), "--formats", "onnx"], monkeypatch, capsys)
    flat = " ".join(text.split())
    report = json.loads((out / "report.json").read_text())
    assert code == 130 and report["complete"] is False and report["ok"] is False and report["unfinished"] == []
    assert [(a["format"], a["status"]) for a in report["artifacts"]] == [("onnx", "ok")]
    assert "proven: onnx" in flat and "lowers" in flat, flat


def test_a_file_that_cannot_be_read_is_judged_by_the_folders_report(tiny_ckpt, tmp_path):
    out = tmp_path / "e"
    out.mkdir()
    (out / "c3d.ts").write_bytes(b"an older model")
    (out / "report.json").write_text(json.dumps({"source": "old.pt", "source_sha256": "0" * 64, "artifacts": []}))
    with pytest.raises(ExportError, match=r"holds c3d.ts, report.json, exported from another checkpoint \(old.pt\)"):
        export_checkpoint(tiny_ckpt, out, formats=["onnx"], **FAST)
    assert sorted(p.name for p in out.iterdir()) == ["c3d.ts", "report.json"]
    export_checkpoint(tiny_ckpt, out, formats=["onnx"], force=True, **FAST)
    assert sorted(p.name for p in out.iterdir()) == ["c3d.onnx", "report.json"]


def test_ctrl_c_before_anything_is_proven_keeps_the_other_models_files(folder, other_ckpt, monkeypatch, capsys):
    import c3d_rt.export.job

    before = _digests(folder)
    monkeypatch.setattr(c3d_rt.export.job, "write_torchscript", _interrupt)
    code, _ = _main(["export", str(other_ckpt), "--out", str(folder), "--formats", "torchscript", "--force"],
                    monkeypatch, capsys)
    after = _digests(folder)
    assert code == 130
    assert {k: v for k, v in after.items() if k != "report.json"} == {k: v for k, v in before.items()
                                                                    if k != "report.json"}  # --force took nothing


def test_a_retrained_checkpoint_at_the_same_path_is_named_as_an_earlier_version(tiny_ckpt, other_ckpt, tmp_path):
    ckpt = tmp_path / "run" / "last.pt"
    ckpt.parent.mkdir()
    shutil.copyfile(tiny_ckpt, ckpt)
    export_checkpoint(ckpt, tmp_path / "e", formats=["torchscript"], **FAST)
    shutil.copyfile(other_ckpt, ckpt)  # train --overwrite wrote a new last.pt
    with pytest.raises(ExportError, match=r"an earlier version of .*last\.pt \(it has changed since"):
        export_checkpoint(ckpt, tmp_path / "e", formats=["torchscript"], **FAST)


def test_a_failed_base_onnx_write_is_tried_again_by_the_next_format(tiny_decided, tmp_path, monkeypatch):
    import c3d_rt.export.job

    real, calls = c3d_rt.export.job.write_onnx_fp32, []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the exporter broke once")
        return real(*args, **kwargs)

    monkeypatch.setattr(c3d_rt.export.job, "write_onnx_fp32", fails_once)
    ckpt, data = tiny_decided  # fp16 is proven only on a decided model with enough held-out windows
    report = export_checkpoint(ckpt, tmp_path / "e", formats=["onnx", "onnx-fp16"], calib=data, calib_clips=4, **QUIET)
    assert [(a.format, a.status) for a in report.artifacts] == [("onnx", "FAILED"), ("onnx-fp16", "ok")]

