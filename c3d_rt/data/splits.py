"""Data folders: class folders of videos and their train/val/test splits.

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
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import C3DError
from ..core.motion import MOTIONS
from .framecache import CACHE_DIR, finished_relpaths
from .video import VIDEO_EXTENSIONS, is_frame_folder, is_video, probe_video

UCF_GROUP = re.compile(r"_g(\d+)_c(\d+)", re.IGNORECASE)
SPLIT_DIR = "splits"
INDEX_FILE = ".c3d_rt_index.json"
META_FILE = "dataset.json"  # `c3d-rt synth` writes it last: its presence marks a finished set
SYNTH_PARTIAL = ".synth-partial.json"  # `c3d-rt synth` writes it first and removes it after META_FILE
SYNTH_VIDEO = re.compile(r"^[a-z_]+_g\d{3}_c01\.avi$")


class DataError(C3DError, ValueError):
    """A data folder that does not have the expected layout; the message says what to do."""


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
    generated: bool = False  # no splits/train.txt and test.txt: ``val`` is a group-aware split made here

    @property
    def evaluation(self) -> list[str]:
        """The split `eval` reports on: the test split (the generated held-out one where there are no split files)."""
        return self.test or self.val

    @property
    def validates_on_test(self) -> bool:
        """splits/train.txt and test.txt but no ``val.txt``: what training validates on, and chooses ``best.pt`` by,
        is the test split itself, the one `eval` reports on."""
        return bool(self.val) and not self.test and not self.generated

    @property
    def validates_on_generated(self) -> bool:
        """No split files: training validates on the group-aware split it made, which `eval` reports on too."""
        return bool(self.val) and self.generated

    @property
    def val_name(self) -> str:
        """What the per-epoch held-out figure is called: "val"; "test" where it is test.txt's; "held-out" where it
        is the split made without split files."""
        return "test" if self.validates_on_test else "held-out" if self.validates_on_generated else "val"

    def to_dict(self) -> dict:
        return {"root": str(self.root), "classes": self.classes, "train": self.train, "val": self.val,
                "test": self.test, "allow_hflip": self.allow_hflip, "generated": self.generated}


def unfinished_synth(root: Path, videos: list[str]) -> bool:
    """True for a folder that `c3d-rt synth` began and did not finish (interrupted before dataset.json).

    A user's own class folders without dataset.json are fine: only synth's marker, or synth's
    class names with synth's file names throughout (a set from before the marker existed), count.
    """
    if (root / META_FILE).is_file():
        return False
    if (root / SYNTH_PARTIAL).is_file():
        return True

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
    generated = not ((split_dir / "train.txt").is_file() and (split_dir / "test.txt").is_file())
    if not generated:
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
    return DataSplit(root, classes, train, val, bool(meta.get("allow_hflip", True)), test, notes, generated)


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


def probe_videos(root: Path, relpaths: list[str], workers: int = 4) -> dict[str, int]:
    """Frame counts of ``relpaths``, cached in ``root/.c3d_rt_index.json`` by size and mtime."""
    return {rel: frames for rel, (frames, _) in _probe_index(root, relpaths, workers, sizes=False).items()}


def probe_videos_with_sizes(root: Path, relpaths: list[str],
                            workers: int = 4) -> dict[str, tuple[int, tuple[int, int] | None]]:
    """Frame counts and (width, height) of ``relpaths`` (None where unreadable), from the same index: each video is
    opened once for both, and not again where the index already knows them."""
    return _probe_index(root, relpaths, workers, sizes=True)


def _probe_index(root: Path, relpaths: list[str], workers: int,
                 sizes: bool) -> dict[str, tuple[int, tuple[int, int] | None]]:
    """``root/.c3d_rt_index.json`` holds ``rel: [size:mtime, frames, [width, height] or null]``; an entry written
    before frame sizes were recorded (``[size:mtime, frames]``) still serves its frame count, and is probed again
    only where ``sizes`` are wanted."""
    cache_file = root / INDEX_FILE
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    except (OSError, json.JSONDecodeError):
        cache = {}

    def stamp(rel: str) -> str:
        st = (root / rel).stat()
        return f"{st.st_size}:{int(st.st_mtime)}"

    def probe(rel: str) -> tuple[str, list]:
        key = stamp(rel)
        hit = cache.get(rel)
        if isinstance(hit, list) and hit[:1] == [key] and len(hit) >= (3 if sizes else 2):
            return rel, hit
        frames, size = probe_video(root / rel)
        return rel, [key, frames, list(size) if size else None]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        fresh = dict(pool.map(probe, relpaths))
    if fresh != {k: cache.get(k) for k in fresh}:
        try:
            cache.update(fresh)
            cache_file.write_text(json.dumps(cache))
        except OSError:
            pass  # a read-only data folder just means no cache
    return {rel: (entry[1], tuple(entry[2]) if len(entry) > 2 and entry[2] else None) for rel, entry in fresh.items()}
