"""A built-in synthetic data set whose classes only motion over time tells apart.

Each clip is a virtual camera moving over a random procedural texture (a new
texture per clip), written as a real MJPG video. A single frame says nothing
about the class; the motion between frames says everything. Directions matter,
so the data set declares ``allow_hflip: false`` (a flip turns a left pan right).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..core.console import bar_disabled
from ..core.fileio import atomic_write_text
from ..core.motion import MOTIONS, CameraPath, render_view, view_texture
from .footage import FootageError, check_clip_length, footage_frames
from .splits import META_FILE, SYNTH_PARTIAL, group_split, write_split_lists

FOURCC = "MJPG"
FPS = 25.0


@dataclass(frozen=True)
class SynthSpec:
    clips_per_class: int = 40  # videos per class
    frames: int = 32  # frames per video
    width: int = 171  # frame width in pixels
    height: int = 128  # frame height in pixels
    val_fraction: float = 0.25  # held out for evaluation
    seed: int = 0
    classes: tuple[str, ...] = tuple(MOTIONS)
    footage: str = "texture"  # "texture": random procedural pictures; "real": real videos (footage.py)

    def __post_init__(self) -> None:
        if self.footage not in FOOTAGE_KINDS:
            raise ValueError(f"unknown footage {self.footage!r}; expected {' or '.join(FOOTAGE_KINDS)}")

    def role(self, index: int) -> str:
        """Which split clip ``index`` of a class belongs to on real footage: its first half trains, then a
        quarter validates (early stopping, model choice) and a quarter tests; each from its own stretch of time."""
        quarter = max(1, round(self.clips_per_class / 4))
        return "train" if index < self.clips_per_class - 2 * quarter else \
            "val" if index < self.clips_per_class - quarter else "test"


FOOTAGE_KINDS = ("texture", "real")
MIN_REAL_CLIPS = 8  # per class: a quarter (2) each for val and test, so each split sees both source videos


def camera_frames(texture: np.ndarray, motion: tuple[float, float, float, float], spec: SynthSpec,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """Frames seen by a camera moving over ``texture`` with a random speed per clip."""
    path = CameraPath.draw(rng, spec.width)
    frames = []
    for t in range(spec.frames):
        tc = t - spec.frames / 2  # centred time keeps the camera near the texture's middle
        frame = render_view(texture, motion, path, tc, spec.width, spec.height)
        noise = rng.normal(0, 2, frame.shape)
        frames.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = FPS, fourcc: str = FOURCC) -> None:
    h, w = frames[0].shape[:2]
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} video to {tmp}")
    for frame in frames:
        writer.write(frame)
    writer.release()
    tmp.replace(path)


def clip_name(cls: str, index: int) -> str:
    # UCF101-style names: each clip is its own group, so group-aware splits work unchanged.
    return f"{cls}/{cls}_g{index:03d}_c01.avi"


def clip_frames(spec: SynthSpec, cls: str, index: int) -> list[np.ndarray]:
    """The frames of clip ``index`` of class ``cls``: a function of the spec alone (the same seed, the same clip)."""
    rng = np.random.default_rng([spec.seed, spec.classes.index(cls), index])
    if spec.footage == "real":
        return footage_frames(MOTIONS[cls], spec.frames, spec.width, spec.height, spec.role(index), index, rng)
    return camera_frames(view_texture(rng, spec.width, spec.height), MOTIONS[cls], spec, rng)


def make_clip(root: Path, spec: SynthSpec, cls: str, index: int) -> str:
    rel = clip_name(cls, index)
    target = root / rel
    if not target.exists():
        write_video(target, clip_frames(spec, cls, index))
    return rel


OWN_FILE = re.compile(r"^\.?[a-z_]+_g\d{3}_c01(\.tmp)?\.avi$")  # a clip, or the temporary file of one


def spec_dict(spec: SynthSpec) -> dict:
    return json.loads(json.dumps({**spec.__dict__, "classes": list(spec.classes)}))


def previous_spec(root: Path) -> dict | None:
    """The spec of the set (finished or not) that an earlier run wrote into ``root``, if it says."""
    for name in (META_FILE, SYNTH_PARTIAL):
        try:
            return json.loads((root / name).read_text())["spec"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def remove_stale(root: Path, spec: SynthSpec, previous: dict | None) -> int:
    """Delete synth's own files that this spec would not write: clips of another spec, extra clips, temporaries.

    Clips of an identical earlier spec are kept (the same seed writes the same videos); files that
    synth does not name are never touched.
    """
    same = previous == spec_dict(spec)
    keep = {clip_name(c, i) for c in spec.classes for i in range(spec.clips_per_class)} if same else set()
    removed = 0
    for cls in MOTIONS:
        folder = root / cls
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if OWN_FILE.match(path.name) and f"{cls}/{path.name}" not in keep:
                path.unlink()
                removed += 1
        if cls not in spec.classes and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def clips_written(root: str | Path, spec: SynthSpec) -> int:
    """How many of the spec's clips exist in ``root`` (to report an interrupted run)."""
    root = Path(root)
    return sum((root / clip_name(c, i)).is_file() for c in spec.classes for i in range(spec.clips_per_class))


def split_clips(jobs: list[tuple[str, int]], relpaths: list[str],
                spec: SynthSpec) -> tuple[list[str], list[str], list[str] | None]:
    """train, test and (real footage only) validation lists: by the footage's time segments, else by group."""
    if spec.footage != "real":
        return (*group_split(relpaths, spec.val_fraction, spec.seed), None)
    roles: dict[str, list[str]] = {role: [] for role in ("train", "val", "test")}
    for (_, index), rel in zip(jobs, relpaths):
        roles[spec.role(index)].append(rel)
    return roles["train"], roles["test"], roles["val"]


def synthesize(root: str | Path, spec: SynthSpec = SynthSpec(), workers: int = 2, progress: bool = True,
               log=lambda _m: None) -> Path:
    """Write the synthetic data set to ``root``; a re-run with the same spec keeps the clips already written.

    ``dataset.json`` is written last: until then a marker says the set is unfinished, and training
    refuses it. Stale clips of an earlier, different spec are removed first.
    """
    root = Path(root)
    unknown = [c for c in spec.classes if c not in MOTIONS]
    if unknown:
        raise ValueError(f"unknown synthetic classes {unknown}; choose from {', '.join(MOTIONS)}")
    if spec.footage == "real" and spec.clips_per_class < MIN_REAL_CLIPS:
        raise FootageError(f"real footage needs at least {MIN_REAL_CLIPS} clips per class ({spec.clips_per_class} were "
                           "asked for), so that training, validation and test each get clips of both videos. Use "
                           f"--clips-per-class {MIN_REAL_CLIPS} or more.")
    if spec.footage == "real":
        check_clip_length(spec.frames)
    root.mkdir(parents=True, exist_ok=True)
    previous = previous_spec(root)
    (root / META_FILE).unlink(missing_ok=True)  # from here on the set is unfinished until the end
    removed = remove_stale(root, spec, previous)  # interrupted here, the next run applies the same rule
    if removed:
        log(f"removed {removed} stale files of an earlier synth run from {root}")
    atomic_write_text(json.dumps({"generator": "c3d-rt synth", "spec": spec_dict(spec)}, indent=2), root / SYNTH_PARTIAL)
    for cls in spec.classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
    jobs = [(cls, i) for cls in spec.classes for i in range(spec.clips_per_class)]
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        results = pool.map(lambda job: make_clip(root, spec, *job), jobs)
        relpaths = list(tqdm(results, total=len(jobs), desc="synth", unit="clip", disable=bar_disabled(progress)))
    finally:  # on Ctrl-C, stop at once: clips not yet started are cancelled, those running finish whole
        pool.shutdown(wait=True, cancel_futures=True)
    write_split_lists(root, *split_clips(jobs, relpaths, spec))
    (root / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(spec.classes)))
    meta = {"generator": "c3d-rt synth", "allow_hflip": False, "motion_names": "camera", "spec": spec_dict(spec)}
    atomic_write_text(json.dumps(meta, indent=2), root / META_FILE)  # last: the set is complete
    (root / SYNTH_PARTIAL).unlink(missing_ok=True)
    return root


def synthetic_clips(n: int, prep, seed: int = 99) -> np.ndarray:
    """``n`` preprocessed synthetic motion clips ``(n, 3, T, c, c)`` made in memory (no files)."""
    from ..core.transforms import preprocess_clip

    w, h = prep.resize_wh
    spec = SynthSpec(frames=prep.clip_len * prep.frame_interval, width=w, height=h, seed=seed)
    names = list(MOTIONS)
    clips = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        texture = view_texture(rng, w, h)
        frames = camera_frames(texture, MOTIONS[names[i % len(names)]], spec, rng)[:: prep.frame_interval]
        clips.append(preprocess_clip(frames, prep))
    return np.stack(clips)
