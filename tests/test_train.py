import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from c3d_rt.core.config import TrainConfig
from c3d_rt.core.machine import cpu_has_bf16
from c3d_rt.model.checkpoint import load_checkpoint
from c3d_rt.training.errors import TrainingError
from c3d_rt.training.fit import fit

from .conftest import TINY, TINY_PREP

QUIET = dict(progress=False, log=lambda _m: None)


def _cfg(**kw):
    return TrainConfig(**{**dict(epochs=2, batch_size=8, lr=1e-3, optimizer="adamw", schedule="cosine", workers=0,
                                 fc8_lr_mult=1.0), **kw})


def test_checkpoint_carries_everything_needed(tiny_ckpt):
    ckpt = load_checkpoint(tiny_ckpt)
    assert ckpt.kind == "c3d-rt" and ckpt.model_config == TINY
    assert ckpt.labels[:2] == ["static", "pan_left"] and len(ckpt.labels) == 9
    assert ckpt.preprocessing.allow_hflip is False  # the synthetic set forbids flips
    assert ckpt.extra["split"]["val"] and ckpt.extra["epoch"] == 1
    log = [json.loads(line) for line in (tiny_ckpt.parent / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert {"train_loss", "val_loss", "val_top1", "val_top5", "clips_per_s", "data_wait", "lr", "lr_groups"} <= set(log[0])
    assert 0 <= log[0]["data_wait"] < 1 and log[0]["clips_per_s"] > 0 and len(log[0]["lr_groups"]) == 2


def test_resume_continues_exactly(tiny_data, tmp_path):
    straight, partial = tmp_path / "straight", tmp_path / "partial"
    fit(tiny_data, straight, model_config=TINY, prep=TINY_PREP, cfg=_cfg(epochs=2), **QUIET)
    _train_first_epoch_only(tiny_data, partial)
    fit(tiny_data, partial, resume=True, **QUIET)
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(partial / "last.pt", weights_only=True)
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert a["metrics"]["train_loss"] == b["metrics"]["train_loss"]
    log = [json.loads(line)["epoch"] for line in (partial / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2]


def _train_first_epoch_only(data, run, **settings):
    """Run a 2-epoch training that is interrupted after epoch 1 (KeyboardInterrupt in epoch 2)."""
    import c3d_rt.training.fit as train_mod

    original = train_mod.train_one_epoch
    calls = {"n": 0}

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    train_mod.train_one_epoch = interrupting
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(data, run, model_config=TINY, prep=TINY_PREP, cfg=_cfg(epochs=2, **settings), **QUIET)
    finally:
        train_mod.train_one_epoch = original
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 0


def test_non_finite_loss_stops_without_saving(tiny_data, tmp_path):
    with pytest.raises(TrainingError, match="loss became"):
        fit(tiny_data, tmp_path / "run", model_config=TINY, prep=TINY_PREP,
            cfg=_cfg(optimizer="sgd", lr=1e30, schedule="step", grad_clip=0.0), **QUIET)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_resume_without_a_run_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(TrainingError, match="last.pt does not exist"):
        fit(tiny_data, tmp_path / "nothing", resume=True, **QUIET)


def test_two_process_ddp_on_cpu(tiny_data, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "c3d_rt.cli", "train", str(tiny_data), "--out", str(run), "--epochs", "1", "--batch-size", "4",
           "--width", "0.0625", "--crop-size", "32", "--workers", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt.model_config.width == 0.0625 and ckpt.extra["epoch"] == 0
    assert len((run / "log.jsonl").read_text().splitlines()) == 1


def test_tensorboard_logs_what_the_epoch_line_says(tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    lines = []
    fit(tiny_data, tmp_path / "run", model_config=TINY, prep=TINY_PREP, cfg=_cfg(epochs=1), tensorboard=True,
        device="cpu", progress=False, log=lines.append)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/val", "top1/train", "top1/val", "top5/val", "lr/conv1-fc7", "lr/fc8",
            "speed/clips_per_s", "speed/data_wait_share", "loss/train_step"} <= tags
    log = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert events.Scalars("top1/val")[0].value == pytest.approx(log["val_top1"])
    said = "precision: bf16 autocast" if cpu_has_bf16() else "precision: fp32 (bf16 autocast skipped"
    epoch_lines = [ln for ln in lines if ln.startswith("epoch ")]
    assert "waiting for data" in epoch_lines[-1] and any(said in ln for ln in lines)  # the run says its precision


def test_tensorboard_without_its_package_names_the_extra(tiny_data, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m.startswith(("tensorboard", "torch.utils.tensorboard"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    with pytest.raises(TrainingError, match=r"c3d-rt\[tensorboard\]"):
        fit(tiny_data, tmp_path / "run", model_config=TINY, prep=TINY_PREP, cfg=_cfg(epochs=1), tensorboard=True,
            **QUIET)
    assert not (tmp_path / "run").exists()


def test_precision_choices_on_a_cpu():
    from c3d_rt.training.loop import autocast_dtype

    cpu = torch.device("cpu")
    said = []
    assert autocast_dtype(_cfg(), cpu, said.append) == (torch.bfloat16 if cpu_has_bf16() else None)
    assert ("precision: bf16 autocast" if cpu_has_bf16() else "no native bf16") in said[0]
    assert autocast_dtype(_cfg(precision="bf16"), cpu) == torch.bfloat16
    assert autocast_dtype(_cfg(precision="auto", amp=False), cpu) is None
    with pytest.raises(TrainingError, match="GPU only"):
        autocast_dtype(_cfg(precision="fp16"), cpu)


def test_channels_last_trains_to_the_same_loss(tiny_data, tmp_path):
    fp32 = dict(epochs=1, precision="fp32")  # the layout alone (auto's bf16, where the CPU has it, rounds 5e-4 apart)
    a = fit(tiny_data, tmp_path / "a", model_config=TINY, prep=TINY_PREP, cfg=_cfg(**fp32), **QUIET)
    b = fit(tiny_data, tmp_path / "b", model_config=TINY, prep=TINY_PREP, cfg=_cfg(**fp32, channels_last=True),
            **QUIET)
    assert b.last_metrics["train_loss"] == pytest.approx(a.last_metrics["train_loss"], rel=1e-3)


@pytest.mark.cuda
def test_mixed_precision_trains_on_a_gpu(tiny_data, tmp_path):
    from c3d_rt.training.loop import autocast_dtype

    gpu = torch.device("cuda")
    assert autocast_dtype(_cfg(), gpu) == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    for precision in ("bf16", "fp16"):
        result = fit(tiny_data, tmp_path / precision, model_config=TINY, prep=TINY_PREP, device="cuda",
                     cfg=_cfg(epochs=1, precision=precision, channels_last=True), **QUIET)
        assert result.last_metrics["train_loss"] > 0 and 0 <= result.last_metrics["data_wait"] < 1


def test_early_stopping_and_a_test_split_no_choice_has_seen(tiny_real_data, tmp_path):
    """With splits/val.txt, best.pt is chosen on val, training stops when val stops improving, and best.pt is
    measured once on test.txt; a stopped run is complete for --resume."""
    data, run = Path(shutil.copytree(tiny_real_data, tmp_path / "data")), tmp_path / "run"
    val_list = (data / "splits" / "val.txt").read_text().splitlines()[::2]  # 1 a class: 9 val clips, 18 test clips
    (data / "splits" / "val.txt").write_text("".join(f"{v}\n" for v in val_list))
    # lr 0: the weights never change (only BatchNorm's statistics move), so the validation top-1 soon stops improving
    result = fit(data, run, model_config=TINY, prep=TINY_PREP, cfg=_cfg(epochs=8, lr=0.0, patience=1), **QUIET)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    stale = [r["stale_epochs"] for r in log]
    assert len(log) < 8 and stale[-1] == 1 and log[-1]["stopped_early"]
    assert all(r["val_clips"] == 9 for r in log)  # validated on val.txt, not test.txt
    assert torch.load(run / "best.pt", weights_only=True)["split"]["val"] == val_list
    test = json.loads((run / "test.json").read_text())
    assert test["test_clips"] == 18 and test == result.test_metrics
    assert test["best_epoch"] == 1 + max(i for i, r in enumerate(log) if r["stale_epochs"] == 0)
    with pytest.raises(TrainingError, match="stopped early"):
        fit(tiny_real_data, run, resume=True, **QUIET)
    from c3d_rt.training.evaluation import evaluate_checkpoint

    again = evaluate_checkpoint(run / "best.pt", data, workers=0, progress=False)  # `c3d-rt eval`
    assert again["val_clips"] == 18 and again["val_top1"] == test["test_top1"]  # it reports on test.txt


def test_each_recipe_has_its_own_epochs_unless_asked():
    from c3d_rt.training.recipes import recipe_setup

    assert recipe_setup("scratch", False)[2].epochs == 60
    assert recipe_setup("finetune", True)[2].epochs == 30
    assert recipe_setup("scratch", False, epochs=5)[2].epochs == 5


def test_weight_average_is_what_is_saved_and_resumes_exactly(tiny_data, tmp_path):
    straight, partial = tmp_path / "straight", tmp_path / "partial"
    said = []
    fit(tiny_data, straight, model_config=TINY, prep=TINY_PREP, cfg=_cfg(epochs=2, ema=0.9), progress=False,
        log=said.append)
    assert not any("weight average" in m for m in said), said  # warmed up (ema_decay), a short run needs no warning
    last = torch.load(straight / "last.pt", weights_only=True)
    raw, averaged = last["train_state_dict"], last["state_dict"]
    assert not torch.equal(raw["conv1.weight"], averaged["conv1.weight"]) and last["ema_averaged"] > 1
    assert torch.equal(load_checkpoint(straight / "last.pt").state_dict["conv1.weight"], averaged["conv1.weight"])
    _train_first_epoch_only(tiny_data, partial, ema=0.9)
    with pytest.raises(TrainingError, match=r"--ema 0.5 \(the run has 0.9\)"):
        fit(tiny_data, partial, resume=True, expect={"ema": 0.5}, **QUIET)
    fit(tiny_data, partial, resume=True, **QUIET)
    resumed = torch.load(partial / "last.pt", weights_only=True)
    for key in ("state_dict", "train_state_dict"):
        for name, value in last[key].items():
            assert torch.equal(value, resumed[key][name]), (key, name)


def test_without_a_validation_list_the_epoch_figure_says_it_is_the_test_splits(tiny_data, tmp_path):
    """splits/train.txt and test.txt, no val.txt: training validates on the test split, and says so once at the start
    and in each epoch line (the log keeps its val_ keys: they are what training validated on)."""
    assert not (tiny_data / "splits" / "val.txt").exists() and (tiny_data / "splits" / "test.txt").is_file()
    said = []
    result = fit(tiny_data, tmp_path / "run", model_config=TINY, prep=TINY_PREP, cfg=_cfg(epochs=2), progress=False,
                 log=said.append)
    about = [m for m in said if "no splits/val.txt" in m]
    assert len(about) == 1 and "validates on the test split" in about[0] and "optimistic" in about[0], said
    epochs = [m for m in said if m.startswith("epoch ")]
    assert len(epochs) == 2 and all("| test loss" in m and "val " not in m for m in epochs), epochs
    assert result.best_split == "test"


def test_without_split_files_the_epoch_figure_is_called_held_out_and_the_advice_is_the_whole_split(tiny_data,
                                                                                                   tmp_path):
    """No splits/train.txt and test.txt: training validates on a split it makes itself. That is not "the test
    split", and a splits/val.txt alone would be ignored: the advice names the three files that make one."""
    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    shutil.rmtree(data / "splits")
    said = []
    result = fit(data, tmp_path / "run", model_config=TINY, prep=TINY_PREP, cfg=_cfg(epochs=1), progress=False,
                 log=said.append)
    about = [m for m in said if "no splits/train.txt and splits/test.txt" in m]
    assert len(about) == 1 and "optimistic" in about[0] and "splits/val.txt is read only with both" in about[0], said
    assert not [m for m in said if "no splits/val.txt" in m or "test split" in m], said
    epochs = [m for m in said if m.startswith("epoch ")]
    assert epochs and all("| held-out loss" in m and "test " not in m for m in epochs), epochs
    assert result.best_split == "held-out"


def test_weight_average_warms_up_by_the_formula():
    """The decay after n steps is min(d, (1 + n) / (10 + n)), and it is what the update applies: a fixed 0.98
    kept most of the random start through a short run."""
    from c3d_rt.training.loop import ema_decay, weight_average

    assert ema_decay(0.98, 0) == pytest.approx(0.1) and ema_decay(0.98, 8) == pytest.approx(0.5)
    assert ema_decay(0.98, 440) == pytest.approx(0.98) and ema_decay(0.98, 10_000) == 0.98
    assert ema_decay(0.5, 100) == 0.5
    model = torch.nn.Linear(3, 1)
    ema = weight_average(model, TrainConfig(ema=0.98))
    averaged = [model.weight.detach().clone()]
    for n in range(30):  # the first update copies; then step n's decay
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update_parameters(model)
        d = ema_decay(0.98, n) if n else 0.0
        averaged.append(d * averaged[-1] + (1 - d) * model.weight.detach())
        assert torch.allclose(ema.module.weight, averaged[-1], atol=1e-5), n
    assert (model.weight - ema.module.weight).abs().max() < 5  # a fixed 0.98 would lag about 21 behind


def test_warmup_and_decay_fit_the_epochs_asked_for():
    from c3d_rt.training.loop import lr_factor

    for epochs in (20, 60):
        cfg = _cfg(epochs=epochs, warmup_fraction=0.05)
        warm = epochs * 0.05
        assert lr_factor(cfg, warm / 2) == pytest.approx(0.5, abs=0.01)
        assert lr_factor(cfg, warm) == pytest.approx(1.0)
        assert lr_factor(cfg, warm + (epochs - warm) / 2) == pytest.approx(0.5)
        assert lr_factor(cfg, epochs) == pytest.approx(0.0)
    assert lr_factor(_cfg(epochs=20, warmup_epochs=3, warmup_fraction=0.05), 1.5) == pytest.approx(0.5, abs=0.01)


def test_a_short_run_gets_a_share_of_the_jitter(tiny_data):
    from c3d_rt.data.splits import load_data_split
    from c3d_rt.training.fit import build_datasets

    split = load_data_split(tiny_data)
    cfg = _cfg(epochs=40, scale_jitter=0.3, color_jitter=0.6, augment_epochs=60)
    train, _ = build_datasets(split, TINY_PREP, cfg, False)
    assert (train.scale_jitter, train.color_jitter) == pytest.approx((0.15, 0.3))  # halfway from 20 to 60 epochs
    train, _ = build_datasets(split, TINY_PREP, _cfg(epochs=20, scale_jitter=0.3, augment_epochs=60), False)
    assert train.scale_jitter == 0
    train, _ = build_datasets(split, TINY_PREP, _cfg(epochs=90, scale_jitter=0.3, augment_epochs=60), False)
    assert train.scale_jitter == pytest.approx(0.3)


def test_an_underfitted_run_says_so_and_what_to_try(tiny_data, tmp_path):
    """One epoch of the tiny model on nine classes fits nothing: the end of the run names the cure."""
    said = []
    result = fit(tiny_data, tmp_path / "run", model_config=TINY, prep=TINY_PREP, cfg=_cfg(epochs=1, lr=1e-4),
                 progress=False, log=said.append)
    assert result.last_metrics["train_top1"] < 0.6
    note = [m for m in said if m.startswith("underfitting")]
    assert len(note) == 1 and "--epochs 2" in note[0] and "--lr 0.0002" in note[0], said
    assert said.index(note[0]) > max(i for i, m in enumerate(said) if m.startswith("epoch "))


def test_the_underfitting_threshold():
    from c3d_rt.training.fit import underfit_note

    cfg = _cfg(epochs=20)
    assert underfit_note({"train_top1": 0.59}, cfg, 101) and not underfit_note({"train_top1": 0.61}, cfg, 101)
    assert underfit_note({"train_top1": 0.7}, cfg, 2)  # two classes: below 0.75, halfway from chance to 1
    assert not underfit_note({}, cfg, 4)  # a resumed run with no epoch left
