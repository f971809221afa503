"""The decoded-frame cache: each video decoded once, resized, stored as one memory-mappable uint8 ``.npy``.

Layout inside a data folder (hidden, so class listing never takes it for a class)::

    DATA/.c3d_rt_cache/<W>x<H>/cache.json                 format, version, frame size
    DATA/.c3d_rt_cache/<W>x<H>/<Class>/<video>.npy         (N, H, W, 3) uint8 BGR, frames 0..N-1 resized
    DATA/.c3d_rt_cache/<W>x<H>/<Class>/<video>.json        the source's size, mtime and sha256; claimed frames

The ``.json`` entry is written (atomically) after its ``.npy``: an entry without it is unfinished and
is never read. An entry is fresh while its source has the same size and (same mtime or same
sha256); an entry whose video is gone is still used (the cache is self-sufficient).

Why ``.npy`` and not JPEG folders (as the seed does): see README "Decoded-frame cache" and
``benchmarks/input_pipeline.py`` (measured: reading a clip from ``.npy`` is many times faster than
decoding 16 JPEGs, and bit-exact; JPEG is about 8x smaller but lossy).

Torch-free.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.errors import C3DError
from ..core.fileio import atomic_path, atomic_write_text, read_json

CACHE_DIR = ".c3d_rt_cache"
CACHE_FORMAT = "c3d-rt frame cache: npy uint8 BGR (N, H, W, 3)"
CACHE_VERSION = 1
UNREADABLE = -1  # an entry's frame count for a video that cannot be decoded (so a re-run does not retry it)


class CacheError(C3DError, RuntimeError):
    """A cache folder that cannot be used as asked; the message says why and what to do."""


def size_dir(root: Path, resize_wh: tuple[int, int]) -> Path:
    return Path(root) / CACHE_DIR / f"{resize_wh[0]}x{resize_wh[1]}"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_stamp(path: Path, digest: bool = True) -> dict:
    st = path.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if digest and path.is_file():
        stamp["sha256"] = file_digest(path)
    return stamp


def source_size(path: Path) -> int:
    """A video file's size; a frame folder's total size (its images)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size


def finished_relpaths(folder: Path) -> list[str]:
    """Every finished entry's "Class/video" (its ``.json`` written), whether or not the video is still there."""
    return sorted(f"{p.parent.name}/{p.name[:-5]}" for p in folder.glob("*/*.json") if not p.name.startswith("."))


@dataclass
class Entry:
    rel: str
    npy: Path
    claimed: int  # frames the source claims (what sampling uses, as for the raw video)
    stored: int  # frames actually stored (fewer for a truncated video); UNREADABLE for a video that never decoded


class FrameCache:
    """One cache folder for one frame size. ``open`` returns None where no cache of that size exists."""

    def __init__(self, folder: Path, resize_wh: tuple[int, int]) -> None:
        self.folder, self.resize_wh = folder, tuple(resize_wh)

    @classmethod
    def open(cls, root: Path, resize_wh: tuple[int, int]) -> "FrameCache | None":
        folder = size_dir(root, resize_wh)
        meta = read_json(folder / "cache.json", {})
        if not meta:
            return None
        cls._check_meta(folder, meta, resize_wh)
        return cls(folder, resize_wh)

    @classmethod
    def create(cls, root: Path, resize_wh: tuple[int, int]) -> "FrameCache":
        folder = size_dir(root, resize_wh)
        meta = read_json(folder / "cache.json", {})
        if meta:
            cls._check_meta(folder, meta, resize_wh)
        else:
            atomic_write_text(json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION,
                                          "resize_wh": list(resize_wh)}), folder / "cache.json")
        return cls(folder, resize_wh)

    @staticmethod
    def _check_meta(folder: Path, meta: dict, resize_wh: tuple[int, int]) -> None:
        if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
            raise CacheError(f"{folder}: a frame cache of another format or version ({meta.get('format')!r}, version "
                             f"{meta.get('version')!r}; this c3d-rt writes version {CACHE_VERSION}). Delete the folder "
                             "and run `c3d-rt cache DATA` again.")
        if tuple(meta.get("resize_wh", ())) != tuple(resize_wh):
            raise CacheError(f"{folder}: holds frames of {meta.get('resize_wh')} (width, height), but its name and "
                             f"this model say {list(resize_wh)}. The folder was moved or edited: delete it and run "
                             "`c3d-rt cache DATA` again.")

    # --- entries ---------------------------------------------------------------------

    def paths(self, rel: str) -> tuple[Path, Path]:
        base = self.folder / rel
        return base.with_name(base.name + ".npy"), base.with_name(base.name + ".json")

    def cached_relpaths(self) -> list[str]:
        return finished_relpaths(self.folder)

    def entry(self, root: Path, rel: str, check_digest: bool = True) -> tuple[Entry | None, str]:
        """``(entry, state)``: state is "fresh", "orphan" (no video, cache used), "stale", or "absent"."""
        npy, meta_path = self.paths(rel)
        meta = read_json(meta_path, {})
        if not meta or (meta.get("frames", 0) > 0 and not npy.is_file()):
            return None, "absent"
        entry = Entry(rel, npy, int(meta.get("claimed", 0)), int(meta.get("frames", UNREADABLE)))
        source = Path(root) / rel
        if not source.exists():
            return entry, "orphan"
        if self._fresh(source, meta.get("source", {}), check_digest):
            return entry, "fresh"
        return None, "stale"

    @staticmethod
    def _fresh(source: Path, stamp: dict, check_digest: bool) -> bool:
        if source_size(source) != stamp.get("size"):
            return False
        if source.stat().st_mtime_ns == stamp.get("mtime_ns"):
            return True
        # Copied data (new mtimes): the content decides. Frame folders have no digest: a new mtime means stale.
        return bool(check_digest and source.is_file() and stamp.get("sha256") == file_digest(source))

    def write(self, root: Path, rel: str, frames: np.ndarray | None, claimed: int) -> None:
        """Store one video's resized frames (None: unreadable), then its ``.json``; each file atomically."""
        npy, meta_path = self.paths(rel)
        source = Path(root) / rel
        stamp = source_stamp(source) if source.is_file() else {"size": source_size(source),
                                                                  "mtime_ns": source.stat().st_mtime_ns}
        if frames is not None:
            with atomic_path(npy) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, np.ascontiguousarray(frames, dtype=np.uint8))
        atomic_write_text(json.dumps({"source": stamp, "claimed": int(claimed),
                                      "frames": int(len(frames)) if frames is not None else UNREADABLE}), meta_path)

    def restamp(self, root: Path, rel: str) -> None:
        """A fresh entry whose source was copied (same content, new mtime): record the new mtime."""
        _, meta_path = self.paths(rel)
        meta = read_json(meta_path, {})
        meta["source"] = source_stamp(Path(root) / rel)
        atomic_write_text(json.dumps(meta), meta_path)


def load_frames(entry: Entry) -> np.ndarray:
    """The stored frames, memory-mapped: a clip reads (and copies) only its own 16 frames."""
    return _open_npy(str(entry.npy))


@lru_cache(maxsize=512)  # opening costs more than reading a clip; each DataLoader process keeps its own maps
def _open_npy(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r")
