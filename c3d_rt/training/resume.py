"""``--resume``: load a run's last state, and refuse a resume whose options or data contradict the run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..core.config import TrainConfig
from ..data.splits import cached_relpaths
from ..model.checkpoint import FORMAT
from .errors import TrainingError
from .runfolder import BEST, LAST

SPEED_KEYS = ("amp", "precision", "channels_last", "compile")  # how to train, not what: a resume may change them
RESUME_KEYS = {  # CLI option -> where the saved run keeps it
    "width": ("model_config", "width"), "crop_size": ("model_config", "crop_size"),
    "frame_interval": ("preprocessing", "frame_interval"), "hflip": ("preprocessing", "allow_hflip"),
    "epochs": ("train_config", "epochs"), "batch_size": ("train_config", "batch_size"),
    "lr": ("train_config", "lr"), "seed": ("train_config", "seed"), "recipe": ("train_config", "optimizer"),
    "patience": ("train_config", "patience"), "ema": ("train_config", "ema"),
    "scale_jitter": ("train_config", "scale_jitter"), "color_jitter": ("train_config", "color_jitter"),
}
RECIPE_OF_OPTIMIZER = {"sgd": "finetune", "adamw": "scratch"}


def check_resume(run_dir: Path, state: dict[str, Any], data: Path, expect: dict[str, Any]) -> None:
    """Refuse a resume that is done already, or whose arguments or data contradict the saved run."""
    saved_epochs = state["train_config"]["epochs"]
    if state["metrics"].get("stopped_early"):
        raise TrainingError(
            f"--resume: {run_dir} stopped early at epoch {state['epoch'] + 1} of {saved_epochs} (the validation top-1 "
            f"had not improved for {state['train_config'].get('patience')} epochs; best {state['best_top1']:.3f}, in "
            f"{run_dir / BEST}); there is nothing to continue. To train further, start a new run from its weights: "
            f"c3d-rt train {data} --out NEW_RUN --pretrained {run_dir / BEST}.")
    if state["epoch"] + 1 >= saved_epochs:
        raise TrainingError(
            f"--resume: {run_dir} is complete ({saved_epochs} of {saved_epochs} epochs; best top-1 "
            f"{state['best_top1']:.3f}); there is nothing to continue. To train further, start a new run from its "
            f"weights: c3d-rt train {data} --out NEW_RUN --pretrained {run_dir / LAST} (with the same --width, "
            "--crop-size and --recipe).")
    conflicts = []
    for name, wanted in expect.items():
        if name == "pretrained":
            conflicts.append("--pretrained (a resumed run continues from its own last.pt)")
            continue
        section, key = RESUME_KEYS[name]
        saved = state[section].get(key, getattr(TrainConfig, key, None))  # runs from before a key existed
        saved = RECIPE_OF_OPTIMIZER.get(saved, saved) if name == "recipe" else saved
        if wanted != saved and not (name == "recipe" and wanted == "auto"):
            conflicts.append(f"--{name.replace('_', '-')} {wanted} (the run has {saved})")
    if conflicts:
        raise TrainingError(f"--resume: {run_dir} was started with other settings: {'; '.join(conflicts)}. "
                            "Leave these options out to continue the run as it was started, or train a new run "
                            "into another --out folder.")
    _check_resume_data(run_dir, state["split"], data)


def _check_resume_data(run_dir: Path, split: dict[str, Any], data: Path) -> None:
    cached = cached_relpaths(data) if data.is_dir() else set()  # a cache without its videos still trains
    classes = sorted({p.name for p in data.iterdir() if p.is_dir()} | {r.split("/", 1)[0] for r in cached}) \
        if data.is_dir() else []
    missing_classes = [c for c in split["classes"] if c not in classes]
    wanted = split["train"] + split["val"] + split.get("test", [])
    missing = [p for p in wanted if not (data / p).exists() and p not in cached]
    if not data.is_dir() or missing_classes or missing:
        what = ("it is not a folder" if not data.is_dir() else
                f"it lacks the classes {', '.join(missing_classes[:4])}" if missing_classes else
                f"{len(missing)} of the run's {len(wanted)} videos are missing "
                f"(e.g. {missing[0]})")
        raise TrainingError(f"--resume: {run_dir} was trained on {split['root']}, and {data} does not hold that data "
                            f"({what}). Pass the run's data folder.")


def load_resume_state(run_dir: Path, say: Callable[[str], None]) -> dict[str, Any] | None:
    path = run_dir / LAST
    if not path.is_file():
        raise TrainingError(f"--resume: {path} does not exist. Start without --resume, or point --out at the "
                            "run folder that holds last.pt.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT or "optimizer" not in state:
        raise TrainingError(f"--resume: {path} is not a c3d-rt training checkpoint.")
    return state
