"""Reading videos (and folders of frame images) with OpenCV: frame counts, chosen frames, every frame resized."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..core.config import Preprocessing
from ..core.console import quiet_decoder_logs
from ..core.errors import C3DError
from ..core.transforms import resize_frame

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class VideoReadError(C3DError, RuntimeError):
    """A video that cannot be opened or holds no decodable frame."""


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())


def frame_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


# FFmpeg reads every format c3d-rt meets (MJPG, XVID, mp4v, H.264 in .avi and .mp4) and logs through a level
# (quiet_decoder_logs); left to choose, OpenCV also tries its own AVI reader, which prints "Unexpected element.
# Expected: LIST. Got: <bytes>" for a broken .avi with fprintf, past any level. Without FFmpeg, OpenCV chooses.
VIDEO_BACKEND = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY


def open_video(path: Path) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` of a video file, without the decoders' own messages about a broken one (``--verbose``
    shows them; callers say which file, and what they do about it)."""
    quiet_decoder_logs()
    return cv2.VideoCapture(str(path), VIDEO_BACKEND)


def probe_video(path: Path) -> tuple[int, tuple[int, int] | None]:
    """Frames in a video (as its container claims) or a frame folder, and (width, height) of its frames, from one
    opening; ``(0, None)`` if unreadable."""
    if path.is_dir():
        images = frame_images(path)
        image = cv2.imread(str(images[0])) if images else None
        return len(images), (image.shape[1], image.shape[0]) if image is not None else None
    cap = open_video(path)
    try:
        if not cap.isOpened():
            return 0, None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = cap.read()
        if not ok:
            return 0, None
        return (n if n > 0 else 1), (frame.shape[1], frame.shape[0])
    finally:
        cap.release()


def count_frames(path: Path) -> int:
    """Frames in a video (as its container claims) or a frame folder; 0 if unreadable."""
    if path.is_dir():
        return len(frame_images(path))
    return probe_video(path)[0]


def read_video_frames(path: Path, wanted: list[int],
                       resize: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[dict[int, np.ndarray], int]:
    """Decode sequentially up to the last wanted index; return the frames (``resize``d if given) and how many
    decoded."""
    wanted_set, last = set(wanted), max(wanted)
    frames: dict[int, np.ndarray] = {}
    cap = open_video(path)
    if not cap.isOpened():
        raise VideoReadError(f"{path}: OpenCV cannot open this video (truncated, or not a video; --verbose shows "
                             "the decoder's own message)")
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
