"""Reading and writing checkpoints: ours, the reference trainer's, and Sports-1M state dicts.

Everything is loaded with ``torch.load(..., weights_only=True)``. Every write goes
to a temporary file in the destination folder and is then renamed over the
target, so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.config import CONV_LAYERS, FC_LAYERS, ModelConfig, Preprocessing
from ..core.errors import C3DError, describe
from ..core.fileio import atomic_path
from .c3d import C3D

FORMAT = "c3d-rt/1"

# torchvision-style Sequential layouts of C3D (e.g. converted Sports-1M weights).
SEQUENTIAL_KEYS = {
    "features.0": "conv1",
    "features.3": "conv2",
    "features.6": "conv3a",
    "features.8": "conv3b",
    "features.11": "conv4a",
    "features.13": "conv4b",
    "features.16": "conv5a",
    "features.18": "conv5b",
    "classifier.0": "fc6",
    "classifier.3": "fc7",
    "classifier.6": "fc8",
}
EXPECTED_KEYS = [f"{n}.{p}" for n in [c for c, _ in CONV_LAYERS] + list(FC_LAYERS) for p in ("weight", "bias")]


class CheckpointError(C3DError, ValueError):
    """A file that is not a usable C3D checkpoint; the message names the file and the fix."""


@dataclass
class Checkpoint:
    """A loaded checkpoint, whatever format it came in."""

    path: Path
    kind: str  # "c3d-rt", "reference", or "state_dict"
    state_dict: dict[str, torch.Tensor]
    model_config: ModelConfig
    preprocessing: Preprocessing | None = None
    labels: list[str] | None = None
    sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # the rest of our own format

    def build_model(self) -> C3D:
        model = C3D(self.model_config)
        model.load_state_dict(self.state_dict)
        return model.eval()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_save(obj: Any, target: str | os.PathLike) -> None:
    with atomic_path(target) as tmp:
        torch.save(obj, tmp)


def _strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """Remove DataParallel/DDP ``module.`` and ``torch.compile`` ``_orig_mod.`` prefixes."""
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in state.items()}


def _rename_sequential(state: dict[str, Any]) -> dict[str, Any]:
    renamed = {}
    for key, value in state.items():
        prefix, _, param = key.rpartition(".")
        renamed[f"{SEQUENTIAL_KEYS.get(prefix, prefix)}.{param}"] = value
    return renamed


def normalize_state_dict(state: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """Map any known C3D key layout onto ours and check that every layer is there."""
    state = _strip_prefixes({k: v for k, v in state.items() if isinstance(v, torch.Tensor)})
    if any(k.startswith(("features.", "classifier.")) for k in state):
        state = _rename_sequential(state)
    missing = [k for k in EXPECTED_KEYS if k not in state]
    if missing:
        found = ", ".join(sorted(state)[:6]) or "no tensors"
        raise CheckpointError(
            f"{path}: not a C3D checkpoint. Expected the keys conv1.weight ... fc8.bias "
            f"(or features.N / classifier.N); missing {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''}; found {found}{' ...' if len(state) > 6 else ''}."
        )
    return state


def model_keys(config: ModelConfig) -> dict[str, torch.Size]:
    """Names and shapes of a model's state dict, computed without allocating it."""
    with torch.device("meta"):
        return {k: v.shape for k, v in C3D(config).state_dict().items()}


def select_model_state(state: dict[str, torch.Tensor], config: ModelConfig, path: Path) -> dict[str, torch.Tensor]:
    """The entries of ``state`` that a model of ``config`` needs, with their shapes checked."""
    expected = model_keys(config)
    missing = [k for k in expected if k not in state]
    bad = [k for k in expected if k in state and state[k].shape != expected[k]]
    if missing or bad:
        raise CheckpointError(f"{path}: does not fit a C3D of {config}: "
                              f"{'missing ' + ', '.join(missing[:3]) if missing else ''}"
                              f"{' wrong shapes at ' + ', '.join(bad[:3]) if bad else ''}.")
    return {k: state[k] for k in expected}


def infer_model_config(state: dict[str, torch.Tensor], path: Path) -> ModelConfig:
    """Recover the architecture of a bare state dict from its tensor shapes."""
    conv1 = state["conv1.weight"]
    if conv1.dim() != 5 or conv1.shape[1:] != (3, 3, 3, 3):
        raise CheckpointError(
            f"{path}: conv1.weight has shape {tuple(conv1.shape)}; a C3D conv1 is (C, 3, 3, 3, 3). "
            "This looks like another architecture."
        )
    width = state["conv5b.weight"].shape[0] / 512  # conv1's count is clamped to >= 8; conv5b's is exact
    batch_norm = "bn1.weight" in state
    config = ModelConfig(num_classes=state["fc8.weight"].shape[0], width=width, batch_norm=batch_norm)
    fc6_in = state["fc6.weight"].shape[1]
    if fc6_in != config.fc6_in:
        # Try the other clip/crop combinations that the contract allows.
        for clip_len in (16, 32):
            for crop in range(32, 257, 16):
                candidate = ModelConfig(config.num_classes, width, clip_len, crop, batch_norm=batch_norm)
                if candidate.fc6_in == fc6_in and candidate.fc_width == state["fc6.weight"].shape[0]:
                    return candidate
        raise CheckpointError(
            f"{path}: fc6 takes {fc6_in} inputs; a C3D of width {width:g} on 16x112x112 clips "
            f"needs {config.fc6_in}. The file is of another architecture."
        )
    return config


def _hash_if_needed(path: Path, want: bool) -> str:
    return sha256_file(path) if want else ""


def load_checkpoint(path: str | os.PathLike, *, with_hash: bool = True) -> Checkpoint:
    """Load any supported checkpoint; raise CheckpointError with a useful message otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file. Pass a checkpoint (.pt) written by `c3d-rt train`, "
                              "a reference-trainer checkpoint, or a Sports-1M state dict.")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only errors all mean the same to a user
        if path.suffix.lower() in (".onnx", ".xml", ".ts"):
            raise CheckpointError(f"{path}: an exported model, not a training checkpoint. Pass the .pt checkpoint it "
                                  "was exported from (its path is in the export's report.json).") from None
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint ({describe(exc).split(' Re-running')[0]}). "
            "Expected a file saved with torch.save: a c3d-rt checkpoint, a reference-trainer "
            "{'state_dict': ...} or a C3D state dict."
        ) from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: holds a {type(raw).__name__}, expected a dict of tensors or a checkpoint dict.")
    digest = _hash_if_needed(path, with_hash)
    if raw.get("format") == FORMAT:
        return _load_ours(path, raw, digest)
    if isinstance(raw.get("state_dict"), dict):
        state = normalize_state_dict(raw["state_dict"], path)
        config = infer_model_config(state, path)
        extra = {k: raw[k] for k in ("epoch",) if k in raw}
        return Checkpoint(path, "reference", select_model_state(state, config, path), config, sha256=digest, extra=extra)
    state = normalize_state_dict(raw, path)
    config = infer_model_config(state, path)
    return Checkpoint(path, "state_dict", select_model_state(state, config, path), config, sha256=digest)


def _load_ours(path: Path, raw: dict[str, Any], digest: str) -> Checkpoint:
    config = ModelConfig.from_dict(raw["model_config"])
    state = select_model_state(normalize_state_dict(raw["state_dict"], path), config, path)
    prep = Preprocessing.from_dict(raw["preprocessing"]) if raw.get("preprocessing") else None
    labels = list(raw.get("labels") or []) or None
    if labels is not None and len(labels) != config.num_classes:
        raise CheckpointError(f"{path}: lists {len(labels)} labels, but its model has {config.num_classes} outputs "
                              "(fc8); every output needs one name. The file is inconsistent: use the checkpoint "
                              "that `c3d-rt train` wrote, or fix its 'labels' list.")
    extra = {k: v for k, v in raw.items() if k not in ("state_dict", "model_config", "preprocessing", "labels")}
    return Checkpoint(path, "c3d-rt", state, config, prep, labels, digest, extra)


def adapt_num_classes(
    ckpt: Checkpoint, num_classes: int, log: Callable[[str], None] = print
) -> dict[str, torch.Tensor]:
    """Return the checkpoint's weights for a model with ``num_classes`` outputs.

    A head of another size (Sports-1M's 487 classes, say) is dropped and left to
    the new model's fresh initialisation, with a message.
    """
    state = dict(ckpt.state_dict)
    have = state["fc8.weight"].shape[0]
    if have != num_classes:
        log(f"{ckpt.path.name}: fc8 has {have} classes, the data has {num_classes}: fc8 is re-initialised.")
        del state["fc8.weight"], state["fc8.bias"]
    return state


def init_from_pretrained(model: C3D, ckpt: Checkpoint, log: Callable[[str], None] = print) -> None:
    """Load pretrained weights into ``model``, replacing fc8 where the class count differs."""
    mine, theirs = model.config, ckpt.model_config
    if mine.batch_norm != theirs.batch_norm:
        kind = lambda c: "C3D-BN (BatchNorm after each conv)" if c.batch_norm else "plain C3D (no BatchNorm)"  # noqa: E731
        recipe = "scratch" if theirs.batch_norm else "finetune"
        raise CheckpointError(f"{ckpt.path}: weights are for {kind(theirs)}; the model being trained is {kind(mine)}. "
                              f"Pass --recipe {recipe} to train the kind the weights are for.")
    if (mine.width, mine.fc6_in) != (theirs.width, theirs.fc6_in):
        raise CheckpointError(
            f"{ckpt.path}: weights are for a C3D of width {theirs.width:g} (fc6 input {theirs.fc6_in}); "
            f"the model being trained has width {mine.width:g} (fc6 input {mine.fc6_in}). "
            f"Pass --width {theirs.width:g} or train from scratch."
        )
    state = adapt_num_classes(ckpt, mine.num_classes, log)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or not set(missing) <= {"fc8.weight", "fc8.bias"}:
        raise CheckpointError(f"{ckpt.path}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]}).")
