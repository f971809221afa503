import json
import os
import re
import subprocess
import sys

from typer.testing import CliRunner

import c3d_rt.cli as cli

runner = CliRunner()


def _run(args, **kw):
    """Invoke the CLI the way the console script does (C3DError -> message + exit 1)."""
    import sys

    argv = sys.argv
    sys.argv = ["c3d-rt", *args]
    try:
        cli.main()
        return 0
    except SystemExit as exc:
        return exc.code
    finally:
        sys.argv = argv


def test_missing_data_folder_is_a_clear_error(tmp_path, capsys):
    code = _run(["train", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "nope: no such folder" in err and "c3d-rt prepare" in err
    assert "Traceback" not in err


def test_non_checkpoint_file_is_a_clear_error(tmp_path, capsys):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"\x00not a checkpoint")
    code = _run(["export", str(bogus), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "model.pt: cannot be read as a PyTorch checkpoint" in err
    assert not (tmp_path / "out" / "c3d.onnx").exists()


def test_unknown_export_format_suggests_valid_ones(tiny_ckpt, tmp_path, capsys):
    code = _run(["export", str(tiny_ckpt), "--formats", "onnx,tensorflow", "--out", str(tmp_path)])
    assert code == 1 and "choose from torchscript, onnx, onnx-features, onnx-fp16, onnx-int8" in capsys.readouterr().err


def test_eval_writes_metrics_and_confusion_png(tiny_ckpt, tiny_data, tmp_path):
    result = runner.invoke(cli.app, ["eval", str(tiny_ckpt), str(tiny_data), "--json", str(tmp_path / "m.json"),
                                     "--confusion", str(tmp_path / "cm.png"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 0 <= metrics["val_top1"] <= metrics["val_top5"] <= 1 and metrics["val_clips"] > 0
    assert len(metrics["confusion"]) == 9 and sum(map(sum, metrics["confusion"])) == metrics["val_clips"]
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


def test_verify_command_fails_on_a_mismatched_checkpoint(tiny_ckpt, tmp_path, capsys):
    assert _run(["export", str(tiny_ckpt), "--formats", "onnx", "--out", str(tmp_path / "e")]) in (0, None)
    import torch

    other = tmp_path / "other.pt"
    state = torch.load(tiny_ckpt, weights_only=True)
    state["state_dict"] = {k: v * 1.1 if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    torch.save(state, other)
    code = _run(["verify", str(tmp_path / "e" / "c3d.onnx"), "--against", str(other)])
    assert code == 1 and "does not compute what the checkpoint computes" in capsys.readouterr().err


def test_synth_prepare_train_through_the_cli(tmp_path):
    data = tmp_path / "data"
    result = runner.invoke(cli.app, ["synth", str(data), "--clips-per-class", "2", "--frames", "16",
                                     "--width", "49", "--height", "37"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli.app, ["train", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                                     "--width", "0.0625", "--crop-size", "32", "--workers", "0", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "last.pt").is_file()


def test_quick_demo_runs_every_stage(tmp_path):
    """Synth, train, export, live and bench with the output going to files (as in a CI log): every stage is
    there, and no third-party warning and no progress bar is (before: about 1,200 progress lines)."""
    with open(tmp_path / "out.txt", "w") as out_file, open(tmp_path / "err.txt", "w") as err_file:
        run = subprocess.run([sys.executable, "-m", "c3d_rt.cli", "demo", "--quick", "--out", str(tmp_path / "demo")],
                             stdout=out_file, stderr=err_file, text=True, timeout=600, env={**os.environ, "DISPLAY": ""})
    out, err = ((tmp_path / name).read_bytes().decode() for name in ("out.txt", "err.txt"))  # keeps any \r
    assert run.returncode == 0, out[-2000:] + err[-2000:]
    for text in (out, err):
        assert not re.search(r"(?i)warn|deprecat|traceback|%\|.*it/s|batch/s|clip/s|\r", text), text[-3000:]
    assert len(err.splitlines()) < 10, err[-3000:]
    for stage in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]", "demo finished"):
        assert stage in out
    assert "running headless" in out and "glass_to_label" in out  # the live run and its latency summary
    assert "auto chose" in out and "batch-1 ratios" in out  # the live run's engine choice; the engine comparison
    assert (tmp_path / "demo" / "export" / "c3d.onnx").is_file()
