"""A training run folder, guarded: an earlier run is never replaced unless the user says so.

Torch-free, so the CLI checks ``--out`` before it imports anything heavy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import C3DError

LAST, BEST, LOG, TEST = "last.pt", "best.pt", "log.jsonl", "test.json"  # test.json: best.pt on the test split
RUN_FILES = (LAST, BEST, LOG, TEST)


class RunFolderError(C3DError):
    """A run folder that training must not use as asked; the message says why and what to do."""


def epochs_done(run_dir: Path) -> int:
    """Epochs that the run in ``run_dir`` finished, from its log (0 if none): cheap, no checkpoint is loaded."""
    try:
        lines = [ln for ln in (Path(run_dir) / LOG).read_text().splitlines() if ln.strip()]
        return int(json.loads(lines[-1])["epoch"]) if lines else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to train over an earlier run unless the user chose --resume or --overwrite."""
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite contradict each other: --resume continues the run in --out, "
                             "--overwrite replaces it. Pass one of them.")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"--out {run_dir}: is a file; expected a run folder. Pass a folder path.")
    found = [name for name in RUN_FILES if (run_dir / name).exists()]
    if found and not resume and not overwrite:
        done = epochs_done(run_dir)
        raise RunFolderError(
            f"--out {run_dir}: holds an earlier run ({', '.join(found)}{f'; {done} epochs done' if done else ''}), "
            "which training would replace. Continue it with --resume, train into another --out folder, "
            "or pass --overwrite to replace it.")


def clear_run_dir(run_dir: Path, say: Callable[[str], None]) -> None:
    """--overwrite: remove the earlier run's files (only those; other files in the folder stay)."""
    found = [Path(run_dir) / name for name in RUN_FILES if (Path(run_dir) / name).exists()]
    for path in found:
        path.unlink()
    if found:
        say(f"--overwrite: removed the earlier run's {', '.join(p.name for p in found)} from {run_dir}")


def append_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def truncate_log(path: Path, after_epoch: int) -> None:
    """On resume, drop log lines of epochs past the checkpoint (written before a crash)."""
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["epoch"] <= after_epoch]
        path.write_text("".join(ln + "\n" for ln in lines))
