"""The preprocessing contract, implemented once.

Training, evaluation, the export checks, the live runtime and the benchmark all
call these functions, so a frame becomes the same numbers everywhere:

    BGR uint8 (H0, W0, 3) --resize--> (h, w, 3) --crop--> (c, c, 3) --minus mean--> float32

Clips are laid out ``(3, T, c, c)``, i.e. ``(C, T, H, W)``, ready for a batch dim.
"""

from __future__ import annotations

import cv2
import numpy as np

from .config import Preprocessing


def resize_frame(frame_bgr: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Resize one frame to ``prep.resize_wh`` with bilinear interpolation (OpenCV's default)."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"expected a BGR frame of shape (H, W, 3), got {frame_bgr.shape}")
    if (frame_bgr.shape[1], frame_bgr.shape[0]) == tuple(prep.resize_wh):
        return frame_bgr
    return cv2.resize(frame_bgr, tuple(prep.resize_wh), interpolation=cv2.INTER_LINEAR)


def normalize_crop(
    resized: np.ndarray, prep: Preprocessing, top: int, left: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Crop a resized frame and subtract the mean, as float32 ``(3, c, c)``.

    ``out`` (shape ``(3, c, c)``, float32) is filled in place when given, so the
    runtime can write straight into a ring-buffer slot without allocating.
    """
    c = prep.crop_size
    patch = resized[top : top + c, left : left + c]  # (c, c, 3) uint8
    if out is None:
        out = np.empty((3, c, c), dtype=np.float32)
    mean = np.asarray(prep.mean_bgr, dtype=np.float32).reshape(3, 1, 1)
    np.subtract(patch.transpose(2, 0, 1), mean, out=out, casting="unsafe")
    return out


def preprocess_frame(frame_bgr: np.ndarray, prep: Preprocessing, out: np.ndarray | None = None) -> np.ndarray:
    """Evaluation preprocessing of one frame: resize, centre crop, subtract mean -> ``(3, c, c)``."""
    top, left = prep.center_offsets
    return normalize_crop(resize_frame(frame_bgr, prep), prep, top, left, out)


def crop_clip(
    frames_bgr: list[np.ndarray] | np.ndarray,
    prep: Preprocessing,
    *,
    crop_origin: tuple[int, int] | None = None,
    hflip: bool = False,
) -> np.ndarray:
    """``T`` BGR frames -> resized, cropped, channel-first ``(3, T, c, c)`` uint8: the clip before the mean.

    Training loaders send this (a quarter of float32's bytes) and subtract the mean on the device;
    ``preprocess_clip`` subtracts it here. Either way the numbers are the same (exact integer arithmetic).
    """
    top, left = crop_origin if crop_origin is not None else prep.center_offsets
    c = prep.crop_size
    w, h = prep.resize_wh
    if isinstance(frames_bgr, np.ndarray) and frames_bgr.shape[1:] == (h, w, 3):
        clip = np.ascontiguousarray(frames_bgr[:, top : top + c, left : left + c].transpose(3, 0, 1, 2))
    else:
        clip = np.empty((3, len(frames_bgr), c, c), dtype=np.uint8)
        for t, frame in enumerate(frames_bgr):
            clip[:, t] = resize_frame(frame, prep)[top : top + c, left : left + c].transpose(2, 0, 1)
    return np.ascontiguousarray(clip[..., ::-1]) if hflip else clip


def preprocess_clip(
    frames_bgr: list[np.ndarray] | np.ndarray,
    prep: Preprocessing,
    *,
    crop_origin: tuple[int, int] | None = None,
    hflip: bool = False,
) -> np.ndarray:
    """Turn ``T`` BGR frames into a network clip ``(3, T, c, c)`` float32.

    ``crop_origin`` is ``(top, left)`` in the resized frame (the centre when None);
    ``hflip`` mirrors every frame (training augmentation).
    """
    return subtract_mean(crop_clip(frames_bgr, prep, crop_origin=crop_origin, hflip=hflip), prep)


def subtract_mean(clip: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """``crop_clip``'s uint8 ``(3, T, c, c)`` -> the network's float32 clip."""
    mean = np.asarray(prep.mean_bgr, dtype=np.float32).reshape(3, 1, 1, 1)
    return np.subtract(clip, mean, dtype=np.float32)


def augment_clip(clip: np.ndarray, rng: np.random.Generator, scale_jitter: float = 0.0,
                 color_jitter: float = 0.0) -> np.ndarray:
    """Training-only changes that keep what the clip shows happening: the same for every frame of the clip.

    ``scale_jitter`` s: a square window of (1 - s .. 1) x the crop, anywhere in it, resized back up (a closer
    camera; motion keeps its direction). ``color_jitter`` j: contrast and brightness change by up to j
    (brightness j x 64 levels) and each colour channel's gain by up to j / 2 (other light, another camera).
    ``clip`` is ``crop_clip``'s uint8 ``(3, T, c, c)``; so is the result.
    """
    if scale_jitter > 0:
        c = clip.shape[-1]
        side = int(round(c * rng.uniform(1 - scale_jitter, 1)))
        if side < c:
            top, left = (int(v) for v in rng.integers(0, c - side + 1, 2))
            frames = clip[:, :, top : top + side, left : left + side].transpose(1, 2, 3, 0)  # (T, s, s, 3)
            clip = np.stack([cv2.resize(np.ascontiguousarray(f), (c, c), interpolation=cv2.INTER_LINEAR)
                             for f in frames]).transpose(3, 0, 1, 2)
    if color_jitter > 0:
        contrast = 1 + rng.uniform(-color_jitter, color_jitter)
        gains = contrast * (1 + rng.uniform(-color_jitter / 2, color_jitter / 2, 3)).reshape(3, 1, 1, 1)
        mean = clip.mean()
        shifted = (clip.astype(np.float32) - mean) * gains + mean + rng.uniform(-color_jitter, color_jitter) * 64
        clip = np.clip(np.rint(shifted), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(clip)


def random_crop_origin(prep: Preprocessing, rng: np.random.Generator) -> tuple[int, int]:
    w, h = prep.resize_wh
    return int(rng.integers(0, h - prep.crop_size + 1)), int(rng.integers(0, w - prep.crop_size + 1))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits along the last axis (the network's output end of the contract)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def denormalize_frame(chw: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Inverse of the mean subtraction, back to a displayable BGR uint8 ``(c, c, 3)``."""
    mean = np.asarray(prep.mean_bgr, dtype=np.float32).reshape(3, 1, 1)
    return np.clip(chw + mean, 0, 255).astype(np.uint8).transpose(1, 2, 0)
