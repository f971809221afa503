"""`c3d-rt cache`: decode every video of a data set once into its frame cache (:mod:`.framecache`), resumably."""

from __future__ import annotations

import errno
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..core.config import Preprocessing
from ..core.console import bar_disabled
from ..core.errors import describe
from ..core.fileio import read_json
from .framecache import CacheError, FrameCache, finished_relpaths, size_dir
from .splits import list_class_folder, probe_videos
from .video import VideoReadError, decode_all_frames


@dataclass
class CacheReport:
    folder: Path
    resize_wh: tuple[int, int]
    cached: int = 0
    already: int = 0
    unreadable: list[str] = field(default_factory=list)
    orphans: int = 0  # entries whose video is gone: kept (training still uses them)

    def summary(self) -> str:
        lines = [f"frame cache {self.folder}: decoded {self.cached} videos, "
                 f"{self.already} already cached, {len(self.unreadable)} unreadable skipped"
                 + (f" (e.g. {self.unreadable[0]})" if self.unreadable else "")]
        if self.orphans:
            lines.append(f"{self.orphans} cached videos have no video file any more: their entries are kept and "
                         "training reads them from the cache")
        return "\n".join(lines)


def cache_videos(data: str | Path, prep: Preprocessing, *, workers: int | None = None, rebuild: bool = False,
                 progress: bool = True) -> CacheReport:
    """Decode every video of ``data`` once, resized to ``prep.resize_wh``, into its frame cache.

    Resumable: fresh entries are skipped (``rebuild`` redoes them); every file is written to a
    temporary name and renamed, so a killed run or a full disk leaves no half-written entry.
    """
    root = Path(data)
    _, videos = list_class_folder(root)
    report = CacheReport(size_dir(root, prep.resize_wh), prep.resize_wh)
    try:
        cache = FrameCache.create(root, prep.resize_wh)
        _decode_into(cache, root, videos, prep, report, workers or os.cpu_count() or 1, rebuild, progress)
    except OSError as exc:  # a full disk (numpy says "N requested and M written", without an errno), no permission
        full = exc.errno == errno.ENOSPC or "requested and" in str(exc)
        reason = "the disk is full" if full else f"cannot write there ({describe(exc)})"
        hint = (f"Free some space (the cache needs about {prep.resize_wh[0] * prep.resize_wh[1] * 3 / 1e3:.0f} kB a "
                "frame)" if full else "Make the data folder writable")
        done = len(finished_relpaths(report.folder)) if report.folder.is_dir() else 0
        raise CacheError(f"{report.folder}: {reason}. {done} of {len(videos)} videos are cached (kept, and read by "
                         f"train), no half-written entry was kept. {hint} and run the same command again: it goes on "
                         "where it stopped.") from None
    return report


def _decode_into(cache: FrameCache, root: Path, videos: list[str], prep: Preprocessing, report: CacheReport,
                 workers: int, rebuild: bool, progress: bool) -> None:
    todo = []
    for rel in videos:
        _, state = cache.entry(root, rel)
        if state == "orphan":
            report.orphans += 1
        elif state == "fresh" and not rebuild:
            report.already += 1
            if read_json(cache.paths(rel)[1], {}).get("source", {}).get("mtime_ns") != (root / rel).stat().st_mtime_ns:
                cache.restamp(root, rel)  # copied data: same content, new mtime
        else:
            todo.append(rel)
    claimed = probe_videos(root, todo, workers)

    def one(rel: str) -> tuple[str, bool]:
        try:
            frames = decode_all_frames(root / rel, claimed[rel], prep)
        except VideoReadError:
            frames = None
        cache.write(root, rel, frames, claimed[rel])
        return rel, frames is not None

    pool = ThreadPoolExecutor(max_workers=workers)  # OpenCV decodes and resizes without the GIL
    try:
        bar = tqdm(pool.map(one, todo), total=len(todo), desc="cache", unit="video",
                   disable=bar_disabled(progress))
        for rel, ok in bar:
            report.cached += ok
            if not ok:
                report.unreadable.append(rel)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
