"""The clip data set: a split's videos, sampled into 16-frame clips (from the frame cache where it is filled).

The folder layout and its splits are :mod:`.splits`; reading frames is :mod:`.video`.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from ..core.config import Preprocessing
from ..core.transforms import augment_clip, crop_clip, random_crop_origin, subtract_mean
from .framecache import CACHE_DIR, FrameCache, load_frames
from .splits import DataError, probe_videos
from .video import VideoReadError, frame_images, read_video_frames


def clip_indices(num_frames: int, clip_len: int, interval: int, start: int) -> list[int]:
    """``clip_len`` frame indices from ``start`` every ``interval``, looping a short video."""
    return [(start + i * interval) % num_frames for i in range(clip_len)]


def clip_start(num_frames: int, clip_len: int, interval: int, rng: np.random.Generator | None) -> int:
    """A random start in training (``rng`` given), the centred one in evaluation."""
    span = (clip_len - 1) * interval + 1
    slack = max(0, num_frames - span)
    return int(rng.integers(0, slack + 1)) if rng is not None else slack // 2


def read_clip_frames(path: Path, num_frames: int, clip_len: int, interval: int,
                     rng: np.random.Generator | None = None,
                     stored: np.ndarray | None = None) -> list[np.ndarray] | np.ndarray:
    """The BGR frames of one clip. A video shorter than its header claims is re-sampled.

    ``stored``: the video's frames from the frame cache (``(N, H, W, 3)``, N <= ``num_frames`` when the
    video is truncated); the same indices, and the same re-sampling, as decoding the video would give.
    """
    if num_frames <= 0:
        raise VideoReadError(f"{path}: no frames")
    indices = clip_indices(num_frames, clip_len, interval, clip_start(num_frames, clip_len, interval, rng))
    if stored is not None:
        if max(indices) < len(stored):
            return np.asarray(stored[indices])  # (T, H, W, 3): one gather from the memory map
        frames, decoded = {}, len(stored)
    elif path.is_dir():
        images = frame_images(path)
        return [cv2.imread(str(images[i])) for i in indices]
    else:
        frames, decoded = read_video_frames(path, indices)
    if len(frames) == len(set(indices)):
        return [frames[i] for i in indices]
    if decoded == 0:
        raise VideoReadError(f"{path}: no decodable frame")
    # Truncated file: its header promised more frames than it holds. Sample again within what decodes.
    return read_clip_frames(path, decoded, clip_len, interval, rng, stored)


class VideoClipDataset:
    """Clips of ``prep.clip_len`` frames, every ``prep.frame_interval`` frames.

    A map-style data set that torch's ``DataLoader`` takes as it is (its collate turns the numpy
    clips into tensors); it imports no torch, so the runtime and the bench read real clips without it.

    Training: random start, random crop, optional horizontal flip. Evaluation: the
    centred clip and crop. Unreadable or empty videos are skipped with one warning
    each and counted in ``skipped``; a video that fails later is replaced by the next.
    """

    def __init__(self, root: str | Path, relpaths: list[str], classes: list[str], prep: Preprocessing,
                 *, train: bool, hflip: bool | None = None, seed: int = 0, clips_per_video: int = 1,
                 probe_workers: int = 4, use_cache: bool = True, uint8: bool = False, scale_jitter: float = 0.0,
                 color_jitter: float = 0.0) -> None:
        self.root, self.prep, self.train, self.seed = Path(root), prep, train, seed
        self.scale_jitter, self.color_jitter = scale_jitter, color_jitter  # training only (augment_clip)
        self.uint8 = uint8  # clips before the mean (see transforms.crop_clip): the trainer subtracts it on the device
        self.hflip = prep.allow_hflip if hflip is None else hflip
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self.cached, self.cache_note = self._cache_entries(relpaths) if use_cache else ({}, "")
        raw = [rel for rel in relpaths if rel not in self.cached]
        present = [rel for rel in raw if (self.root / rel).exists()]
        counts = {rel: 0 for rel in raw}
        counts.update(probe_videos(self.root, present, probe_workers))
        counts.update({rel: e.claimed if e.stored > 0 else 0 for rel, e in self.cached.items()})
        self.skipped = [rel for rel in relpaths if counts[rel] <= 0]
        for rel in self.skipped:
            known = rel in self.cached or (self.root / rel).exists()
            what = "unreadable or empty video" if known else "no such video, and no cache entry"
            warnings.warn(f"skipping {self.root / rel}: {what}", stacklevel=2)
        self.items = [(rel, counts[rel], self.class_to_idx[rel.split("/", 1)[0]])
                      for rel in relpaths if counts[rel] > 0]
        if not self.items:
            raise DataError(f"{self.root}: none of the {len(relpaths)} videos of this split could be read.")
        self.clips_per_video = clips_per_video if train else 1
        self.epoch = 0

    def _cache_entries(self, relpaths: list[str]) -> tuple[dict, str]:
        """The frame-cache entries that serve ``relpaths`` at this frame size, and a note on what is (not) used."""
        w, h = self.prep.resize_wh
        cache = FrameCache.open(self.root, self.prep.resize_wh)
        if cache is None:
            others = sorted(p.name for p in (self.root / CACHE_DIR).glob("*x*")) if (self.root / CACHE_DIR).is_dir() else []
            return {}, (f"{self.root} has a frame cache at {', '.join(others)} (width x height), but this model reads "
                        f"frames of {w}x{h}: decoding the videos instead. Make one with: c3d-rt cache {self.root} "
                        f"--crop-size {self.prep.crop_size}" if others else "")
        entries, states = {}, Counter()
        for rel in relpaths:
            entry, state = cache.entry(self.root, rel)
            states[state] += 1
            if entry is not None:
                entries[rel] = entry
        note = f"reading {len(entries)} of {len(relpaths)} videos from the frame cache {cache.folder}"
        if states["orphan"]:
            note += f"; {states['orphan']} of them have no video any more (the cache holds their frames)"
        if states["stale"] or states["absent"]:
            note += (f"; decoding {states['stale'] + states['absent']} videos ({states['stale']} changed since they "
                     f"were cached, {states['absent']} not cached): refresh with c3d-rt cache {self.root} "
                     f"--crop-size {self.prep.crop_size}")
        return entries, note

    def set_epoch(self, epoch: int) -> None:
        """Augmentation randomness is a function of (seed, epoch, index): resumable and worker-independent."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items) * self.clips_per_video

    def _rng(self, index: int) -> np.random.Generator | None:
        return np.random.default_rng([self.seed, self.epoch, index]) if self.train else None

    def load_clip(self, index: int) -> tuple[np.ndarray, int]:
        rel, n_frames, label = self.items[index % len(self.items)]
        rng = self._rng(index)
        entry = self.cached.get(rel)
        frames = read_clip_frames(self.root / rel, n_frames, self.prep.clip_len, self.prep.frame_interval, rng,
                                  load_frames(entry) if entry is not None else None)
        origin = random_crop_origin(self.prep, rng) if rng is not None else None
        flip = bool(rng is not None and self.hflip and rng.random() < 0.5)
        clip = crop_clip(frames, self.prep, crop_origin=origin, hflip=flip)
        if rng is not None and (self.scale_jitter or self.color_jitter):
            clip = augment_clip(clip, rng, self.scale_jitter, self.color_jitter)
        return (clip if self.uint8 else subtract_mean(clip, self.prep)), label

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """(clip (3, T, H, W) float32, label)."""
        for attempt in range(len(self.items)):
            try:
                return self.load_clip(index + attempt)
            except VideoReadError as exc:
                print(f"warning: {exc}; using the next video instead", file=sys.stderr)
        raise DataError(f"{self.root}: no video of this split could be decoded")
