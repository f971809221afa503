"""Every bad input of issue #13, and more: a clear message, the right exit status, no traceback, nothing destroyed.

Each row runs the real console entry point (``python -m c3d_rt.cli``) in a subprocess. Files that
existed before a row must be byte-identical after it; a row that fails must create nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from c3d_rt.data.splits import INDEX_FILE
from tests.conftest import write_video

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    name: str
    args: str  # formatted with the world's paths, then split on spaces
    code: int
    says: tuple[str, ...] = ()  # fragments the output must hold
    never: tuple[str, ...] = ()  # fragments it must not hold
    cwd: str = "{world}"


CASES = [
    # train: the run folder, the data, the options
    Case("train into an earlier run", "train {data} --out {run} --epochs 1", 1,
         ("holds an earlier run", "--resume", "--overwrite")),
    Case("train --out an existing file", "train {data} --out {afile}", 1, ("is a file",)),
    Case("train --out a read-only place", "train {data} --out /proc/c3d-rt-test/run", 1, ("cannot write",)),
    Case("train --crop-size 50", "train {data} --out {new} --crop-size 50", 1, ("multiple of 16", "--crop-size")),
    Case("train a missing data folder", "train {world}/nope --out {new}", 1, ("no such folder", "c3d-rt synth")),
    Case("train --resume --overwrite", "train {data} --out {run} --resume --overwrite", 1, ("contradict",)),
    Case("train --resume a complete run", "train {data} --out {run} --resume", 1, ("is complete", "--pretrained")),
    Case("train --resume with another width", "train {data} --out {run_partial} --resume --width 0.5", 1,
         ("--width 0.5 (the run has 0.0625)",)),
    Case("train --resume on other data", "train {other_classes} --out {run_partial} --resume", 1,
         ("does not hold that data",)),
    Case("train an interrupted synth set", "train {unfinished} --out {new}", 1, ("unfinished `c3d-rt synth`",)),
    Case("train with no validation split and a long --frame-interval",
         "train {no_val} --out {new} --epochs 1 --width 0.0625 --crop-size 32 --workers 0 --batch-size 8 "
         "--frame-interval 4", 0, ("on the TRAINING clips", "no validation split", "fewer than 61 frames")),
    # eval
    Case("cache a missing data folder", "cache {world}/nope", 1, ("no such folder",)),
    Case("cache --crop-size 50", "cache {data} --crop-size 50", 1, ("multiple of 16", "--crop-size")),
    Case("eval --json a folder", "eval {ckpt} {data} --json {adir}", 1, ("is a folder",)),
    Case("eval --json a read-only place", "eval {ckpt} {data} --json /proc/c3d-rt-test/m.json", 1, ("cannot write",)),
    Case("eval --confusion not a png", "eval {ckpt} {data} --confusion cm.jpg", 1, ("ending in .png",)),
    # export and verify
    Case("export --out an existing file", "export {ckpt} --out {afile}", 1, ("is a file",)),
    Case("export --json not .json", "export {ckpt} --out {new} --json report.txt", 1, ("ending in .json",)),
    Case("export 5 labels for 9 outputs", "export {bad_labels} --out {new} --formats onnx", 1,
         ("lists 5 labels, but its model has 9 outputs",)),
    Case("export --calib of unreadable videos", "export {ckpt} --out {new} --formats onnx-int8 --calib {unreadable}",
         1, ("--calib", "could be read"), ("no --calib was passed",)),
    Case("export --calib a missing folder", "export {ckpt} --out {new} --calib {world}/nope", 1, ("no such folder",)),
    Case("verify --calib with other classes", "verify {export}/c3d.onnx --calib {other_classes}", 1,
         ("has 3 classes", "9 outputs")),
    Case("verify against 5 labels for 9 outputs", "verify {export}/c3d.onnx --against {bad_labels}", 1,
         ("lists 5 labels",)),
    # webcam
    Case("webcam --output of an unknown type", "webcam --model {export} --output out.mkv", 1,
         ("ending in .mp4 or .avi", "'.mkv'")),
    Case("webcam --output a folder", "webcam --model {export} --output {adir}", 1, ("is a folder",)),
    Case("webcam --output a read-only place", "webcam --model {export} --output /proc/c3d-rt-test/a.mp4", 1,
         ("cannot write",)),
    Case("webcam --summary-json a folder", "webcam --model {export} --summary-json {adir}", 1, ("is a folder",)),
    Case("webcam --log a folder", "webcam --model {export} --log {adir}", 1, ("is a folder",)),
    Case("webcam on a source shorter than a clip", "webcam --model {export} --engine ort --source {short} --no-show",
         0, ("no prediction: the source gave 10 frames and one clip needs 16",)),
    Case("webcam with no export/ beside a demo run", "webcam", 1, ("runs/demo/export",), cwd="{demo_cwd}"),
    Case("webcam --engine unknown", "webcam --model {export} --engine tflite", 2, ("tflite",)),
    # bench
    Case("bench with no export/ at all", "bench", 1, ("no such folder", "c3d-rt export"), cwd="{new_cwd}"),
    Case("bench --json a folder", "bench --model {export} --json {adir}", 1, ("is a folder",)),
    Case("bench --plot not a png", "bench --model {export} --plot plot.svg", 1, ("ending in .png",)),
    Case("bench --markdown a read-only place", "bench --model {export} --markdown /proc/c3d-rt-test/b.md", 1,
         ("cannot write",)),
    # the other commands' outputs
    Case("demo --out an existing file", "demo --out {afile}", 1, ("is a file",)),
    Case("synth into an existing file", "synth {afile}", 1, ("is a file",)),
    Case("synth real footage, clips too long", "synth {new} --footage real --frames 40", 1,
         ("at most 26 frames", "--frames 26")),
    Case("prepare into an existing file", "prepare {data} {afile}", 1, ("is a file",)),
    # the help
    Case("help shows no <bool> after flags", "train --help", 0, ("--resume", "--overwrite"), ("<bool>",)),
]


def _digest(root: Path) -> dict[str, str]:
    """Content hashes of every file under ``root`` (index caches aside: they are caches)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != INDEX_FILE}


@pytest.fixture(scope="module")
def world(tiny_data, tiny_ckpt, tiny_export, tmp_path_factory) -> dict[str, Path]:
    """Every file the rows point at, in one folder whose contents are hashed around each row."""
    root = tmp_path_factory.mktemp("cli-errors")
    paths = {"world": root, "data": tiny_data, "ckpt": tiny_ckpt, "export": tiny_export[0]}
    paths["run"] = Path(shutil.copytree(tiny_ckpt.parent, root / "run"))  # a complete run: 2 of 2 epochs
    partial = root / "run_partial"
    partial.mkdir()
    state = torch.load(tiny_ckpt, weights_only=True)
    state["epoch"], state["train_config"]["epochs"] = 0, 5  # stopped after epoch 1 of 5
    torch.save(state, partial / "last.pt")
    paths["run_partial"] = partial
    bad = dict(torch.load(tiny_ckpt, weights_only=True), labels=state["labels"][:5])
    torch.save(bad, root / "bad_labels.pt")
    paths["bad_labels"] = root / "bad_labels.pt"
    (root / "afile.txt").write_text("a file, not a folder\n")
    paths["afile"], paths["adir"] = root / "afile.txt", root / "adir"
    paths["adir"].mkdir()
    paths["short"] = write_video(root / "short.avi", 10)
    classes = state["labels"]
    for cls in classes:  # the model's classes, every video unreadable
        (root / "unreadable" / cls).mkdir(parents=True)
        (root / "unreadable" / cls / "clip1.avi").write_bytes(b"not a video")
    (root / "unreadable" / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    paths["unreadable"] = root / "unreadable"
    for i, cls in enumerate(classes[:3]):  # a user's own set: three classes that are not the model's
        shutil.copytree(tiny_data / cls, root / "other_classes" / f"action_{i}")
    paths["other_classes"] = root / "other_classes"
    for cls in classes:  # what an interrupted synth left: class folders of clips, nothing else
        shutil.copytree(tiny_data / cls, root / "unfinished" / cls)
    paths["unfinished"] = root / "unfinished"
    for cls in classes[:2]:  # two classes (a short epoch), and a split that holds nothing out
        shutil.copytree(tiny_data / cls, root / "no_val" / cls)
    (root / "no_val" / "splits").mkdir()
    (root / "no_val" / "splits" / "train.txt").write_text("".join(
        f"{cls}/{v.name}\n" for cls in classes[:2] for v in sorted((tiny_data / cls).iterdir())))
    (root / "no_val" / "splits" / "test.txt").write_text("")
    (root / "no_val" / "dataset.json").write_text('{"allow_hflip": false}')
    paths["no_val"] = root / "no_val"
    (root / "demo_cwd" / "runs" / "demo" / "export").mkdir(parents=True)
    paths["demo_cwd"] = root / "demo_cwd"
    return paths


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DISPLAY": "", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "c3d_rt.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Every row's run, two at a time (most of a row is Python starting up); the world hashed around them all."""
    def one(case: Case) -> tuple[subprocess.CompletedProcess, Path]:
        own = tmp_path_factory.mktemp("row")
        (own / "cwd").mkdir()
        paths = {**{k: str(v) for k, v in world.items()}, "new": str(own / "new"), "new_cwd": str(own / "cwd")}
        return _run([a.format(**paths) for a in case.args.split()], Path(case.cwd.format(**paths))), own

    before = _digest(world["world"])
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip([c.name for c in CASES], pool.map(one, CASES)))
    results["_digests"] = (before, _digest(world["world"]))
    return results


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_clear_message(case: Case, runs):
    run, own = runs[case.name]
    out = run.stdout + run.stderr
    assert run.returncode == case.code, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    flat = " ".join(out.split())  # messages may wrap
    for fragment in case.says:
        assert fragment in flat, out[-3000:]
    for fragment in case.never:
        assert fragment not in flat, out[-3000:]
    if case.code != 0:
        assert not (own / "new").exists(), "a failed command created its output"


def test_no_row_changed_or_created_a_file(runs):
    """Rows run side by side, so this is checked over all of them: the world is byte-identical afterwards."""
    before, after = runs["_digests"]
    assert {k: after.get(k) for k in before} == before, "a file that existed before was changed or removed"
    assert after.keys() == before.keys(), f"a command created {sorted(after.keys() - before.keys())}"


# --- in-process: what no bad argument can trigger (a crash, Ctrl-C), and the helpers ---------------

import re  # noqa: E402

import c3d_rt.cli as cli
from c3d_rt.core.errors import describe


def _main(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["c3d-rt", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_an_unexpected_error_is_one_line_and_a_log(tmp_path, monkeypatch, capsys):
    import c3d_rt.data.synth

    def boom(*_a, **_k):
        raise RuntimeError("boom: something nobody checks")

    monkeypatch.setattr(c3d_rt.data.synth, "synthesize", boom)
    code, out = _main(["synth", str(tmp_path / "d")], monkeypatch, capsys)
    assert code == 1 and "unexpected RuntimeError: boom: something nobody checks" in out and "--debug" in out
    assert "Traceback" not in out
    log = Path(re.search(r"traceback is in (\S+);", out).group(1))
    assert "Traceback" in log.read_text() and "boom" in log.read_text()
    monkeypatch.setattr(sys, "argv", ["c3d-rt", "synth", str(tmp_path / "d"), "--debug"])
    with pytest.raises(RuntimeError, match="boom"):
        cli.main()


def test_ctrl_c_in_train_says_what_was_saved_and_how_to_go_on(tiny_data, tiny_ckpt, tmp_path, monkeypatch, capsys):
    import c3d_rt.training.fit

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(c3d_rt.training.fit, "fit", interrupted)
    code, out = _main(["train", str(tiny_data), "--out", str(tmp_path / "fresh")], monkeypatch, capsys)
    assert code == 130 and "no epoch had finished" in out and f"train {tiny_data} --out {tmp_path / 'fresh'}" in out
    run = shutil.copytree(tiny_ckpt.parent, tmp_path / "run")
    code, out = _main(["train", str(tiny_data), "--out", str(run), "--resume"], monkeypatch, capsys)
    assert code == 130 and "holds 2 finished epoch(s)" in out and f"train {tiny_data} --out {run} --resume" in out


def test_ctrl_c_in_export_names_what_is_left(tiny_ckpt, tmp_path, monkeypatch, capsys):
    import c3d_rt.export.job

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(c3d_rt.export.job, "export_checkpoint", interrupted)
    code, out = _main(["export", str(tiny_ckpt), "--out", str(tmp_path / "e"), "--formats", "onnx,torchscript"],
                      monkeypatch, capsys)
    assert code == 130 and "nothing" in out and "--formats onnx,torchscript" in out


def test_synth_interrupted_then_rerun_then_respecified(tmp_path, monkeypatch, capsys):
    """Ctrl-C leaves a set that train refuses; the same command finishes it; another spec replaces its files."""
    import c3d_rt.data.synth
    from c3d_rt.data.splits import DataError, load_data_split

    dst, made = tmp_path / "synth", []
    real = c3d_rt.data.synth.make_clip

    def flaky(*args):
        if len(made) >= 5:
            raise KeyboardInterrupt
        made.append(args)
        return real(*args)

    small = ["synth", str(dst), "--clips-per-class", "3", "--frames", "16", "--width", "49", "--height", "37"]
    monkeypatch.setattr(c3d_rt.data.synth, "make_clip", flaky)
    code, out = _main(small, monkeypatch, capsys)
    assert code == 130 and "of 27 videos are written" in out and "unfinished" in out
    assert not (dst / "dataset.json").exists()
    with pytest.raises(DataError, match="unfinished `c3d-rt synth`"):
        load_data_split(dst)
    monkeypatch.setattr(c3d_rt.data.synth, "make_clip", real)
    assert _main(small, monkeypatch, capsys)[0] == 0
    assert len(load_data_split(dst).train + load_data_split(dst).val) == 27
    assert not (dst / ".synth-partial.json").exists()
    assert _main([*small[:3], "2", *small[4:], "--seed", "1"], monkeypatch, capsys)[0] == 0
    assert sorted(p.name for p in (dst / "pan_left").iterdir()) == ["pan_left_g000_c01.avi", "pan_left_g001_c01.avi"]
    assert '"seed": 1' in (dst / "dataset.json").read_text()


def test_a_user_folder_without_dataset_json_still_loads(tmp_path):
    from c3d_rt.data.splits import load_data_split

    for cls in ("wave", "clap"):
        for i in range(3):
            write_video(tmp_path / cls / f"{cls}{i}.avi", 4, seed=i)
    assert load_data_split(tmp_path).classes == ["clap", "wave"]


def test_export_with_force_removes_files_of_another_model(tiny_ckpt, tmp_path):
    import json

    from c3d_rt.export.job import export_checkpoint

    out = tmp_path / "e"
    out.mkdir()
    (out / "c3d.ts").write_bytes(b"an older model")
    (out / "report.json").write_text(json.dumps({"source": "old.pt", "source_sha256": "0" * 64, "artifacts": []}))
    export_checkpoint(tiny_ckpt, out, formats=["onnx"], check_clips=4, force=True, log=lambda _m: None)
    assert (out / "c3d.onnx").is_file() and not (out / "c3d.ts").exists()  # without force: refused (test_export_errors)


def test_describe_never_cuts_a_word():
    text = describe(RuntimeError("PytorchStreamReader failed reading zip archive: " + "corrupted archive " * 30))
    assert text.startswith("RuntimeError: PytorchStreamReader") and text.endswith(" ...")
    assert text[:-4].split()[-1] in ("corrupted", "archive")
