"""Writing files so that a crash never leaves a half-written one: a temporary file beside the target, then a rename.

Torch-free, so the runtime can use it without PyTorch installed.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    On any exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes it 0600; a saved file gets the usual mode
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_text(text: str, target: str | os.PathLike) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_where_writable(text: str, name: str, folders) -> Path | None:
    """Write ``text`` as ``name`` in the first of ``folders`` (paths, or None for one that could not be made)
    where that works: for a record that must land somewhere (a crash log, a listing of moved files)."""
    for folder in folders:
        if folder is None:
            continue
        try:
            (Path(folder) / name).write_text(text)
            return Path(folder) / name
        except OSError:
            continue
    return None


def user_cache_dir(*parts: str) -> Path | None:
    """``$XDG_CACHE_HOME/c3d-rt/...`` (``~/.cache/c3d-rt/...``): caches that survive a run.

    None where it cannot be created (a read-only home, a bad XDG_CACHE_HOME): callers then run
    without their cache, which only costs time.
    """
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "c3d-rt"
    path = root.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path


def user_cache_file(name: str) -> Path | None:
    """``name`` in the user cache folder (:func:`user_cache_dir`), or None where that folder cannot be made."""
    folder = user_cache_dir()
    return folder / name if folder else None


def read_json(path: Path | None, default):
    """A JSON file's content, or ``default`` when it is missing, unreadable, corrupt or of another type."""
    import json

    if path is None:
        return default
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return default
    return value if isinstance(value, type(default)) else default


def write_json_quietly(path: Path | None, value) -> None:
    """Write a cache file atomically; a cache that cannot be written is skipped (it only saves time)."""
    import json

    if path is None:
        return
    try:
        atomic_write_text(json.dumps(value, indent=1), path)
    except OSError:
        pass
