"""`c3d-rt cache`: decode every video of a data set once into its frame cache (:mod:`.framecache`), resumably."""

from __future__ import annotations

import errno
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..core.config import ModelConfig, Preprocessing
from ..core.console import bar_disabled
from ..core.errors import describe
from ..core.fileio import read_json
from .framecache import CacheError, FrameCache, finished_relpaths, size_dir, source_size
from .splits import list_class_folder, probe_videos_with_sizes
from .video import VideoReadError, decode_all_frames


@dataclass
class CacheReport:
    folder: Path
    resize_wh: tuple[int, int]
    cached: int = 0
    already: int = 0
    unreadable: list[str] = field(default_factory=list)
    orphans: int = 0  # entries whose video is gone: kept (training still uses them)
    upscaled: int = 0  # videos whose frames are smaller than the cache's: stored upscaled (said before decoding)

    def summary(self) -> str:
        lines = [f"frame cache {self.folder}: decoded {self.cached} videos"
                 + (f" ({self.upscaled} of them upscaled to {self.resize_wh[0]}x{self.resize_wh[1]})"
                    if self.upscaled else "")
                 + f", {self.already} already cached, {len(self.unreadable)} unreadable skipped"
                 + (f" (e.g. {self.unreadable[0]})" if self.unreadable else "")]
        if self.orphans:
            lines.append(f"{self.orphans} cached videos have no video file any more: their entries are kept and "
                         "training reads them from the cache")
        return "\n".join(lines)


def cache_videos(data: str | Path, prep: Preprocessing, *, workers: int | None = None, rebuild: bool = False,
                 progress: bool = True, log: Callable[[str], None] = lambda _m: None) -> CacheReport:
    """Decode every video of ``data`` once, resized to ``prep.resize_wh``, into its frame cache.

    Resumable: fresh entries are skipped (``rebuild`` redoes them); every file is written to a
    temporary name and renamed, so a killed run or a full disk leaves no half-written entry.
    Videos smaller than the cache's frames are stored upscaled: ``log`` says so, with the sizes, before decoding.
    """
    root = Path(data)
    _, videos = list_class_folder(root)
    report = CacheReport(size_dir(root, prep.resize_wh), prep.resize_wh)
    try:
        cache = FrameCache.create(root, prep.resize_wh)
        _decode_into(cache, root, videos, prep, report, workers or os.cpu_count() or 1, rebuild, progress, log)
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
                 workers: int, rebuild: bool, progress: bool, log: Callable[[str], None]) -> None:
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
    probed = probe_videos_with_sizes(root, todo, workers)
    claimed = {rel: frames for rel, (frames, _) in probed.items()}
    warning = _upscale_warning(root, {rel: size for rel, (frames, size) in probed.items() if frames > 0}, claimed,
                               prep, report)
    if warning:
        log(f"warning: {warning}")

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


def _upscale_warning(root: Path, sizes: dict[str, tuple[int, int] | None], claimed: dict[str, int],
                     prep: Preprocessing, report: CacheReport) -> str:
    """What caching videos smaller than the cache's frames costs, said before it is spent ("" where none is).

    ``sizes``: the readable videos to cache, with their frame sizes as the probe recorded them. The cache stores the
    frames the model reads, at ``prep.resize_wh``, so that a clip is a slice of one file and bit-exact with decoding:
    a smaller video is stored upscaled, raw, which can be many times its own size.
    """
    w, h = prep.resize_wh
    todo = list(sizes)
    small = [rel for rel, size in sizes.items() if size is not None and size[0] * size[1] < w * h]
    report.upscaled = len(small)
    if not small:
        return ""
    common = Counter(sizes[rel] for rel in small).most_common()
    shown = ", ".join(f"{sw}x{sh}" for (sw, sh), _ in common[:3]) + (", ..." if len(common) > 3 else "")
    cache_bytes = sum(claimed[rel] for rel in small) * w * h * 3
    video_bytes = sum(source_size(root / rel) for rel in small)
    fits = _largest_crop_within(min(sizes[rel][0] for rel in small), min(sizes[rel][1] for rel in small),
                                prep.crop_size)
    hint = (f" A model at --crop-size {fits.crop_size} reads {fits.resize_wh[0]}x{fits.resize_wh[1]} frames, which "
            "these videos fill." if fits else "")
    return (f"{len(small)} of {len(todo)} videos are smaller than the cache's {w}x{h} frames ({shown}): they are "
            f"stored upscaled, about {_bytes(cache_bytes)} of cache for {_bytes(video_bytes)} of videos. A model at "
            f"--crop-size {prep.crop_size} reads {w}x{h} frames, so training upscales them either way; without the "
            f"cache it does so as it reads, using no disk.{hint}")


def _largest_crop_within(width: int, height: int, below: int) -> Preprocessing | None:
    """The preprocessing of the largest crop size under ``below`` whose frames fit in ``width`` x ``height``."""
    for crop in range(below - 16, 31, -16):
        prep = Preprocessing.for_model(ModelConfig(crop_size=crop))
        if prep.resize_wh[0] <= width and prep.resize_wh[1] <= height:
            return prep
    return None


def _bytes(n: float) -> str:
    """1234567 -> "1.2 MB" (decimal units, as disks are sold)."""
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} TB"
