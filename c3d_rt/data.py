"""Video data sets: reading frames, sampling clips, class folders and their splits.

A data folder looks like::

    DATA/<class>/<video file, or folder of frame images>
    DATA/splits/train.txt, DATA/splits/test.txt   (optional; "Class/video.avi" a line)
    DATA/splits/val.txt                           (optional; validation apart from the test split)
    DATA/classInd.txt                             (optional; "1 ClassName" a line)
    DATA/dataset.json                             (optional; e.g. {"allow_hflip": false})

Without split files a deterministic, group-aware split is made (UCF101's
``_gNN_`` groups never straddle train and test). With ``val.txt`` training validates
(and chooses ``best.pt``, and stops early) on it, and the test split is kept for the
final, unbiased figure; without it training validates on the test split.
"""

from __future__ import annotations

import json
import random
import re
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .config import Preprocessing
from .errors import C3DError
from .framecache import CACHE_DIR, FrameCache, finished_relpaths, load_frames
from .transforms import augment_clip, crop_clip, random_crop_origin, resize_frame, subtract_mean

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
UCF_GROUP = re.compile(r"_g(\d+)_c(\d+)", re.IGNORECASE)
SPLIT_DIR = "splits"
INDEX_FILE = ".c3d_rt_index.json"
META_FILE = "dataset.json"  # `c3d-rt synth` writes it last: its presence marks a finished set
SYNTH_PARTIAL = ".synth-partial.json"  # `c3d-rt synth` writes it first and removes it after META_FILE
SYNTH_VIDEO = re.compile(r"^[a-z_]+_g\d{3}_c01\.avi$")


class VideoReadError(C3DError, RuntimeError):
    """A video that cannot be opened or holds no decodable frame."""


class DataError(C3DError, ValueError):
    """A data folder that does not have the expected layout; the message says what to do."""


# --- reading frames ----------------------------------------------------------------


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())


def frame_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def count_frames(path: Path) -> int:
    """Frames in a video (as its container claims) or a frame folder; 0 if unreadable."""
    if path.is_dir():
        return len(frame_images(path))
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, _ = cap.read()
        return n if ok and n > 0 else (1 if ok else 0)
    finally:
        cap.release()


def clip_indices(num_frames: int, clip_len: int, interval: int, start: int) -> list[int]:
    """``clip_len`` frame indices from ``start`` every ``interval``, looping a short video."""
    return [(start + i * interval) % num_frames for i in range(clip_len)]


def clip_start(num_frames: int, clip_len: int, interval: int, rng: np.random.Generator | None) -> int:
    """A random start in training (``rng`` given), the centred one in evaluation."""
    span = (clip_len - 1) * interval + 1
    slack = max(0, num_frames - span)
    return int(rng.integers(0, slack + 1)) if rng is not None else slack // 2


def read_video_frames(path: Path, wanted: list[int],
                       resize: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[dict[int, np.ndarray], int]:
    """Decode sequentially up to the last wanted index; return the frames (``resize``d if given) and how many
    decoded."""
    wanted_set, last = set(wanted), max(wanted)
    frames: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoReadError(f"{path}: OpenCV cannot open this video")
    decoded = 0
    try:
        while decoded <= last:
            if not cap.grab():
                break
            if decoded in wanted_set:
                ok, frame = cap.retrieve()
                if not ok:
                    break
                frames[decoded] = resize(frame) if resize is not None else frame
            decoded += 1
    finally:
        cap.release()
    return frames, decoded


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


def decode_all_frames(path: Path, num_frames: int, prep: Preprocessing) -> np.ndarray:
    """Frames ``0 .. num_frames-1`` of a video or frame folder, resized as ``prep`` says: ``(N, H, W, 3)`` uint8.

    What the frame cache stores. Sampling never asks for an index past what the video claims, so
    frames past ``num_frames`` are not decoded; a truncated video gives fewer.
    """
    if num_frames <= 0:
        raise VideoReadError(f"{path}: no frames")
    if path.is_dir():
        frames = {i: resize_frame(cv2.imread(str(p)), prep) for i, p in enumerate(frame_images(path)[:num_frames])}
    else:
        frames, _ = read_video_frames(path, list(range(num_frames)), lambda f: resize_frame(f, prep))
    if not frames:
        raise VideoReadError(f"{path}: no decodable frame")
    return np.stack([frames[i] for i in range(len(frames))])


# --- class folders, labels and splits ----------------------------------------------


def video_group(relpath: str) -> str:
    """The unit that must stay on one side of a split: UCF101's class+group, else the file."""
    cls, _, name = relpath.partition("/")
    match = UCF_GROUP.search(name)
    return f"{cls}/g{int(match.group(1)):02d}" if match else relpath


def group_split(relpaths: list[str], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic split by group, about ``val_fraction`` of each class's groups held out."""
    by_class: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for rel in sorted(relpaths):
        by_class[rel.split("/", 1)[0]][video_group(rel)].append(rel)
    train, val = [], []
    for cls in sorted(by_class):
        groups = sorted(by_class[cls])
        random.Random(f"{seed}/{cls}").shuffle(groups)
        n_val = round(len(groups) * val_fraction) if len(groups) > 1 else 0
        n_val = min(max(n_val, 1 if len(groups) > 1 and val_fraction > 0 else 0), len(groups) - 1)
        for i, group in enumerate(groups):
            (val if i < n_val else train).extend(by_class[cls][group])
    return sorted(train), sorted(val)


def read_class_index(path: Path) -> list[str]:
    """UCF101's ``classInd.txt``: "1 ApplyEyeMakeup" a line, 1-based."""
    entries = []
    for line in path.read_text().splitlines():
        if line.strip():
            idx, name = line.split()
            entries.append((int(idx), name))
    return [name for _, name in sorted(entries)]


def write_split_lists(root: Path, train: list[str], test: list[str], val: list[str] | None = None) -> None:
    """``splits/train.txt`` and ``test.txt``, and ``val.txt`` where a separate validation split is given."""
    (root / SPLIT_DIR).mkdir(parents=True, exist_ok=True)
    (root / SPLIT_DIR / "train.txt").write_text("".join(f"{p}\n" for p in train))
    (root / SPLIT_DIR / "test.txt").write_text("".join(f"{p}\n" for p in test))
    if val is None:
        (root / SPLIT_DIR / "val.txt").unlink(missing_ok=True)
    else:
        (root / SPLIT_DIR / "val.txt").write_text("".join(f"{p}\n" for p in val))


def read_split_list(path: Path) -> list[str]:
    # Official UCF lists carry a label after the path ("Class/v.avi 1"): keep the path.
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def list_class_folder(root: Path) -> tuple[list[str], list[str]]:
    """Class names and "Class/video" relative paths of a class-folder tree."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder. Expected a folder with one sub-folder of videos per class "
                        "(make one with `c3d-rt prepare` or `c3d-rt synth`).")
    index = root / "classInd.txt"
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != SPLIT_DIR and not p.name.startswith("."))
    cached = cached_relpaths(root)  # a cache holds its videos' frames even where the videos are gone
    folders = sorted(set(folders) | {rel.split("/", 1)[0] for rel in cached})
    classes = read_class_index(index) if index.is_file() else folders
    videos = []
    for cls in classes:
        folder = root / cls
        if folder.is_dir():
            videos += [f"{cls}/{p.name}" for p in sorted(folder.iterdir()) if is_video(p) or is_frame_folder(p)]
    listed = set(videos)
    videos += sorted(rel for rel in cached if rel not in listed and rel.split("/", 1)[0] in classes)
    if not videos:
        raise DataError(f"{root}: found {len(folders)} class folders but no videos in them "
                        f"(looked for {', '.join(VIDEO_EXTENSIONS[:4])} ... or folders of frame images).")
    return classes, videos


def cached_relpaths(root: Path) -> set[str]:
    """Videos that some frame cache in ``root`` holds (the cache serves them even where the video is gone)."""
    caches = root / CACHE_DIR
    if not caches.is_dir():
        return set()
    return {rel for folder in caches.iterdir() if folder.is_dir()
            for rel in finished_relpaths(folder)}


@dataclass
class DataSplit:
    root: Path
    classes: list[str]
    train: list[str]
    val: list[str]  # what training validates on: val.txt where there is one, else test.txt
    allow_hflip: bool = True
    test: list[str] = field(default_factory=list)  # test.txt, only where val.txt is separate from it
    notes: list[str] = field(default_factory=list)  # what a user should know about this data before trusting it

    @property
    def evaluation(self) -> list[str]:
        """The split `eval` reports on: the test split."""
        return self.test or self.val

    def to_dict(self) -> dict:
        return {"root": str(self.root), "classes": self.classes, "train": self.train, "val": self.val,
                "test": self.test, "allow_hflip": self.allow_hflip}


def unfinished_synth(root: Path, videos: list[str]) -> bool:
    """True for a folder that `c3d-rt synth` began and did not finish (interrupted before dataset.json).

    A user's own class folders without dataset.json are fine: only synth's marker, or synth's
    class names with synth's file names throughout (a set from before the marker existed), count.
    """
    if (root / META_FILE).is_file():
        return False
    if (root / SYNTH_PARTIAL).is_file():
        return True
    from .synth import MOTIONS  # here, not at the top: synth imports this module

    return bool(videos) and all(v.split("/", 1)[0] in MOTIONS and SYNTH_VIDEO.match(v.split("/", 1)[1]) for v in videos)


def load_data_split(root: str | Path, val_fraction: float = 0.2, seed: int = 0) -> DataSplit:
    """Classes and train/val lists of a data folder: its split files, else a group-aware split."""
    root = Path(root)
    classes, videos = list_class_folder(root)
    if unfinished_synth(root, videos):
        raise DataError(f"{root}: an unfinished `c3d-rt synth` data set ({len(videos)} videos, no {META_FILE}: the "
                        "run was interrupted). Finish it by running the same `c3d-rt synth` command again (it keeps "
                        "the videos already written), or synthesise into a new folder.")
    split_dir = root / SPLIT_DIR
    test: list[str] = []
    if (split_dir / "train.txt").is_file() and (split_dir / "test.txt").is_file():
        present = set(videos)
        train = [p for p in read_split_list(split_dir / "train.txt") if p in present]
        val = [p for p in read_split_list(split_dir / "test.txt") if p in present]
        if (split_dir / "val.txt").is_file():
            val, test = [p for p in read_split_list(split_dir / "val.txt") if p in present], val
            check_separate(split_dir, train, val, test)
    else:
        train, val = group_split(videos, val_fraction, seed)
    meta_file = root / META_FILE
    try:
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    except (OSError, ValueError) as exc:
        raise DataError(f"{meta_file}: not readable JSON ({exc}). Fix or delete it.") from None
    notes = [MIRRORED_SYNTH.format(root=root)] if meta.get("generator") == "c3d-rt synth" and \
        meta.get("motion_names") != "camera" else []
    return DataSplit(root, classes, train, val, bool(meta.get("allow_hflip", True)), test, notes)


MIRRORED_SYNTH = ("{root} is a synthetic motion set written before 2026-11-25, whose class names are mirrored (its "
                  "pan_right shows a left pan, zoom_in a zoom out): a model trained on it names real camera motion "
                  "backwards. Write it again with the same `c3d-rt synth` command and retrain.")


def check_separate(split_dir: Path, train: list[str], val: list[str], test: list[str]) -> None:
    """A separate validation split must hold videos, and no video may sit in two of the three splits."""
    if not val:
        raise DataError(f"{split_dir / 'val.txt'}: lists no video of this folder. List the validation videos there "
                        "(\"Class/video.avi\" a line), or delete it to validate on test.txt.")
    lists = {"train": train, "val": val, "test": test}
    for a, b in (("train", "val"), ("val", "test"), ("train", "test")):
        both = sorted(set(lists[a]) & set(lists[b]))
        if both:
            raise DataError(f"{split_dir}: {len(both)} videos are in both {a}.txt and {b}.txt (e.g. {both[0]}); "
                            "a video in two splits makes the held-out figures optimistic. Keep each in one.")


# --- probing: which videos decode, and how many frames they have -------------------


def probe_videos(root: Path, relpaths: list[str], workers: int = 4) -> dict[str, int]:
    """Frame counts of ``relpaths``, cached in ``root/.c3d_rt_index.json`` by size and mtime."""
    cache_file = root / INDEX_FILE
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    except (OSError, json.JSONDecodeError):
        cache = {}

    def stamp(rel: str) -> str:
        st = (root / rel).stat()
        return f"{st.st_size}:{int(st.st_mtime)}"

    def probe(rel: str) -> tuple[str, str, int]:
        key = stamp(rel)
        hit = cache.get(rel)
        if hit and hit[0] == key:
            return rel, key, hit[1]
        return rel, key, count_frames(root / rel)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(probe, relpaths))
    fresh = {rel: [key, n] for rel, key, n in results}
    if fresh != {k: cache.get(k) for k in fresh}:
        try:
            cache.update(fresh)
            cache_file.write_text(json.dumps(cache))
        except OSError:
            pass  # a read-only data folder just means no cache
    return {rel: n for rel, _, n in results}


# --- the clip data set ----------------------------------------------------------------


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
