"""The evidence a reduced precision is proven on: many held-out windows, a 95% Wilson lower bound, near-ties apart."""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from c3d_rt.core.config import Preprocessing
from c3d_rt.data.datasets import VideoClipDataset
from c3d_rt.data.splits import load_data_split
from c3d_rt.engines.auto import candidates
from c3d_rt.engines.equivalence import (
    MAX_NEAR_TIE_SHARE,
    MIN_TOP1_AGREEMENT,
    NEAR_TIE_MARGIN,
    judge,
    near_ties,
    wilson_lower_bound,
    windows_needed,
)
from c3d_rt.engines.resolve import plans, unproven
from c3d_rt.export.inputs import CHECK_WINDOWS, WINDOW_STRIDE, check_windows
from c3d_rt.export.job import export_checkpoint
from c3d_rt.export.verify import verify_artifact
from tests.conftest import TINY_PREP, write_video

QUIET = dict(log=lambda _m: None)


def decided_logits(n: int, classes: int = 9, seed: int = 0) -> np.ndarray:
    """Logits whose top class leads by far (fp32 top-2 probability margin near 1)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 0.1, (n, classes)).astype(np.float32)
    logits[np.arange(n), rng.integers(0, classes, n)] += 10.0
    return logits


def test_wilson_lower_bound_matches_known_values():
    assert wilson_lower_bound(100, 100) == pytest.approx(0.9630, abs=1e-4)  # 1 / (1 + 1.96^2 / 100)
    assert wilson_lower_bound(380, 380) == pytest.approx(0.9900, abs=1e-4)  # and still just below 99%
    assert wilson_lower_bound(380, 380) < MIN_TOP1_AGREEMENT <= wilson_lower_bound(381, 381)
    assert wilson_lower_bound(54, 57) == pytest.approx(0.8563, abs=1e-3)  # the live run that found the flips
    assert wilson_lower_bound(36, 36) == pytest.approx(0.9036, abs=1e-3)  # what "100% on 36 clips" proved
    assert wilson_lower_bound(0, 0) == 0.0 and wilson_lower_bound(0, 10) == 0.0
    assert windows_needed(0) == 381 and windows_needed(1) == 563
    assert wilson_lower_bound(562, 563) >= MIN_TOP1_AGREEMENT > wilson_lower_bound(561, 562)


def test_near_ties_are_split_from_decided_windows():
    reference = decided_logits(450)
    reference[:50] = 0.0
    reference[:50, 0], reference[:50, 1] = 1.0, 0.9  # top-2 probabilities about 0.0 .. 0.05 apart: near-ties
    assert near_ties(reference).sum() == 50 and not near_ties(reference)[50:].any()
    candidate = reference.copy()
    candidate[:10, 1] += 0.5  # ten near-ties flip: reported, not judged
    verdict = judge(reference, candidate, "int8", proof=True)
    assert verdict.ok, verdict.reason
    assert (verdict.windows, verdict.near_ties) == (450, 50)
    assert verdict.near_tie_agreement == pytest.approx(0.8) and verdict.decided_agreement == 1.0
    assert verdict.top1_lower_bound == pytest.approx(wilson_lower_bound(400, 400))
    candidate[60, :] = reference[60, ::-1]  # one decided window flips: 399 of 400 cannot clear 99%
    verdict = judge(reference, candidate, "int8", proof=True)
    assert not verdict.ok and not verdict.insufficient
    assert "399 of 400 decided" in verdict.reason and f"{windows_needed(1)} decided" in verdict.reason


def test_too_many_near_ties_are_refused():
    reference = decided_logits(500)
    reference[: int(500 * MAX_NEAR_TIE_SHARE) + 1] = 0.0  # equal logits: margin 0
    verdict = judge(reference, reference.copy(), "fp16", proof=True)
    assert verdict.insufficient and f"more than {MAX_NEAR_TIE_SHARE:.0%}" in verdict.reason
    assert f"within {NEAR_TIE_MARGIN:g}" in verdict.reason


def test_too_few_windows_are_refused_with_the_count_needed():
    reference = decided_logits(100)
    verdict = judge(reference, reference.copy(), "int8", proof=True, hint=": pass --calib DATA")
    assert not verdict.ok and verdict.insufficient and verdict.windows_needed == 381
    assert "needs at least 381 decided" in verdict.reason and verdict.reason.endswith("pass --calib DATA")
    assert judge(decided_logits(381), decided_logits(381), "int8", proof=True).ok
    assert judge(reference, reference.copy(), "int8").ok  # the point estimate (bench, contract) is unchanged


def test_windows_are_every_window_at_the_stride(tmp_path):
    one, two = Preprocessing(), Preprocessing(frame_interval=2)
    assert one.window_starts(20, 8) == [0] and one.window_starts(15, 8) == []
    assert one.window_starts(40, 8) == [0, 8, 16, 24] and two.window_starts(80, 8) == [0, 16, 32, 48]
    root = tmp_path / "data"
    for i, n in enumerate((40, 20, 10)):
        write_video(root / "a" / f"v{i}.avi", n, size=TINY_PREP.resize_wh, seed=i)
    ds = VideoClipDataset(root, ["a/v0.avi", "a/v1.avi", "a/v2.avi"], ["a"], TINY_PREP, train=False, use_cache=False)
    clips, labels, available, videos = check_windows(ds, 100)
    assert (len(clips), available, videos) == (5, 5, 2) and clips.shape[1:] == (3, 16, 32, 32)
    first, _ = ds[0]  # the centred clip of v0 (frames 12..27) is no window start at stride 8; v0's 24..39 is the last
    assert not np.array_equal(first, clips[0])
    capped, _, available, _ = check_windows(ds, 2)
    assert len(capped) == 2 and available == 5


def test_the_tiny_export_refuses_reduced_precisions_for_too_little_evidence(tiny_export, tiny_data):
    """The tiny model is undecided (two quick epochs: every window a near-tie) and its 20-frame held-out videos give
    one window each: its int8 and fp16 files are refused, not written, with the reason and the count needed."""
    out, report = tiny_export
    split = load_data_split(tiny_data)
    assert report.real_clips == report.windows_available == len(split.val) < windows_needed(0)
    for a in report.artifacts:
        if a.precision == "fp32":
            assert a.status == "ok" and a.top1_lower_bound is None
            continue
        assert a.status == "FAILED" and a.insufficient_evidence and not (out / Path(a.file).name).exists()
        assert a.windows == report.real_clips and a.top1_lower_bound is not None
        assert "near-ties" in a.reason and "at least 381 decided held-out windows" in a.reason
        assert "pass --calib DATA with more or longer held-out videos" in a.reason
    assert report.failures(explicit=False)[0] == []  # refused, the export itself succeeds
    saved = json.loads((out / "report.json").read_text())
    for p in saved["proofs"]:
        assert p["status"] == "FAILED" and "top1_lower_bound" in p and p["windows_needed"] == 381


@pytest.fixture(scope="module")
def decided(tiny_decided):
    return tiny_decided


def test_a_decided_model_on_enough_windows_proves_fp16(decided, tmp_path):
    ckpt, data = decided
    report = export_checkpoint(ckpt, tmp_path / "out", formats=["onnx-fp16"], calib=data, **QUIET)
    fp16 = report.artifacts[0]
    assert report.real_clips == min(CHECK_WINDOWS, report.windows_available) >= 381
    assert fp16.status == "ok", fp16.reason
    assert fp16.windows - fp16.near_ties >= 381 and fp16.top1_lower_bound >= MIN_TOP1_AGREEMENT
    saved = {a["format"]: a for a in json.loads((tmp_path / "out" / "report.json").read_text())["artifacts"]}
    assert saved["onnx-fp16"]["top1_lower_bound"] == fp16.top1_lower_bound
    plan = next(p for p in plans(tmp_path / "out") if p.engine == "ort" and p.precision == "fp16" and p.device == "cpu")
    assert unproven(plan, tmp_path / "out") == ""
    verified = verify_artifact(tmp_path / "out" / "c3d.fp16.onnx", calib=data)
    assert verified.status == "ok" and verified.top1_lower_bound == fp16.top1_lower_bound
    run = subprocess.run([sys.executable, "-m", "c3d_rt.cli", "verify", str(tmp_path / "out" / "c3d.fp16.onnx"),
                          "--calib", str(data), "--check-clips", "500"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "decided windows (95% lower bound" in run.stdout, run.stdout + run.stderr
    capped = export_checkpoint(ckpt, tmp_path / "few", formats=["onnx-fp16"], calib=data, check_clips=100, **QUIET)
    assert capped.artifacts[0].status == "FAILED" and capped.artifacts[0].windows_needed == 381
    assert f"raise --check-clips (now 100; they give {capped.windows_available})" in capped.artifacts[0].reason


def test_a_record_of_the_old_rule_does_not_prove_a_reduced_precision(decided, tmp_path):
    ckpt, data = decided
    export_checkpoint(ckpt, tmp_path / "out", formats=["onnx", "onnx-fp16"], calib=data, **QUIET)
    folder = tmp_path / "copy"
    shutil.copytree(tmp_path / "out", folder)
    report = json.loads((folder / "report.json").read_text())
    for a in report["artifacts"]:  # as the exporter wrote it before the evidence rule
        a.pop("top1_lower_bound")
    (folder / "report.json").write_text(json.dumps(report))
    by_key = {p.key: p for p in plans(folder)}
    assert unproven(by_key["ort/fp32/cpu"], folder) == ""  # fp32 is judged on every logit, as before
    why = unproven(by_key["ort/fp16/cpu"], folder)
    assert "under the old rule" in why and f"c3d-rt verify {folder / 'c3d.fp16.onnx'}" in why
    _, skipped = candidates(folder, ("cpu",), None)  # what `auto` says of it
    assert "under the old rule" in {t.key: t.reason for t in skipped}["ort/fp16/cpu"]


def test_the_cli_default_is_the_exporters():
    from c3d_rt.cli.export import export, verify

    for command in (export, verify):
        assert inspect.signature(command).parameters["check_clips"].default.default == CHECK_WINDOWS
    assert WINDOW_STRIDE == 8
