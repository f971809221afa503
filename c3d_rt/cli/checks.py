"""Checks of the output paths a command takes, run before any work starts.

A command that trains for an hour and then cannot write its result has lost the
hour: every output path is checked here first (file or folder, extension,
a writable place). Nothing is created; torch-free, so the checks cost nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..core.errors import C3DError

VIDEO_SUFFIXES = (".mp4", ".avi")
IMAGE_SUFFIXES = (".png",)
JSON_SUFFIXES = (".json",)
MARKDOWN_SUFFIXES = (".md",)


class ValidationError(C3DError, ValueError):
    """A command-line value that cannot work; the message says what was expected, what arrived and what to do."""


def _existing_ancestor(path: Path, option: str) -> Path:
    """The nearest part of ``path`` (itself or a parent) that exists; refuse a file in the middle of it."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValidationError(f"{option} {path}: {parent} is a file, so nothing can be written under it. "
                                      "Pass a path in a folder.")
            return parent
    return Path(path.anchor or "/")


def _writable(folder: Path, path: Path, option: str) -> None:
    """Write and remove a probe file: permission bits alone say nothing for root or a read-only mount."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".c3d-rt-write-test", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValidationError(f"{option} {path}: cannot write in {folder} ({exc.strerror or exc}). "
                              "Pass a path in a folder you can write to.") from None


def output_file(path: Path | None, option: str, suffixes: tuple[str, ...] = (), example: str = "") -> Path | None:
    """Check that ``path`` can be written as a file with one of ``suffixes`` (any if empty); None passes."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise ValidationError(f"{option} {path}: is a folder; expected a file name. "
                              f"Pass e.g. {option} {path / (example or 'out' + (suffixes[0] if suffixes else ''))}.")
    if suffixes and path.suffix.lower() not in suffixes:
        wanted = " or ".join(suffixes)
        raise ValidationError(f"{option} {path}: expected a file name ending in {wanted}, got "
                              f"{repr(path.suffix) if path.suffix else 'no extension'}. "
                              f"Pass e.g. {option} {example or path.with_suffix(suffixes[0]).name}.")
    if path.exists():
        _writable(path.parent, path, option)  # written under a temporary name beside it, then renamed
        return path
    _writable(_existing_ancestor(path, option), path, option)
    return path


def default_output_file(path: Path, option: str, suffixes: tuple[str, ...] = ()) -> tuple[Path | None, str]:
    """An output the user did not ask for (a default beside an input): ``(path, "")`` where it can be written, else
    ``(None, why)``, so the command does its work and says what it left out instead of refusing to start."""
    try:
        return output_file(path, option, suffixes), ""
    except ValidationError as exc:
        return None, str(exc)


def output_dir(path: Path, option: str) -> Path:
    """Check that ``path`` is, or can be made, a writable folder."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ValidationError(f"{option} {path}: is a file; expected a folder. Pass a folder path "
                                  "(it is created if missing), or move the file away.")
        _writable(path, path, option)
        return path
    _writable(_existing_ancestor(path, option), path, option)
    return path


def input_dir(path: Path, option: str, what: str) -> Path:
    """Check that ``path`` is an existing folder."""
    path = Path(path)
    if not path.is_dir():
        state = "is a file" if path.exists() else "no such folder"
        raise ValidationError(f"{option} {path}: {state}. Expected {what}.")
    return path


def model_shape(width: float, crop_size: int, frame_interval: int) -> None:
    """The config's own checks (crop a multiple of 16, ...), as a message about the options, before training."""
    from ..core.config import ModelConfig, Preprocessing

    try:
        Preprocessing.for_model(ModelConfig(width=width, crop_size=crop_size), frame_interval=frame_interval)
    except ValueError as exc:
        raise ValidationError(f"--width {width:g} --crop-size {crop_size} --frame-interval {frame_interval}: {exc}. "
                              "Pass values that C3D's shape allows (e.g. --crop-size 112, 64 or 48).") from None
