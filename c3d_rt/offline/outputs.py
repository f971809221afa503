"""What an offline run writes, and how a second run knows a video is done: per-video records named after the
video, tables over all videos, each written atomically (a temporary file, then a rename)."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

from ..artifacts.formats import artifact_sha256
from ..core.errors import C3DError
from ..core.fileio import atomic_write_text, read_json
from ..core.version import __version__
from ..engines.base import Engine
from .sources import VideoItem


class OutputError(C3DError):
    """An output folder that cannot be written, or a finished record that cannot be read."""


def model_identity(engine: Engine) -> dict:
    """Which model computed an output: the file (and its SHA-256: what a rerun compares), engine, precision."""
    return {"file": str(engine.path.resolve()), "sha256": artifact_sha256(engine.path), "engine": engine.name,
            "precision": engine.precision, "device": engine.device, "detail": engine.detail,
            "classes": len(engine.labels), "c3d_rt": __version__}


def record_path(out_dir: Path, item: VideoItem, suffix: str = ".json") -> Path:
    """``DIR/<relative path of the video><suffix>``: ``walk/v1.mp4`` -> ``DIR/walk/v1.mp4.json``."""
    return out_dir / f"{item.key}{suffix}"


def finished_record(path: Path, model: dict, settings: dict, companions: tuple[Path, ...] = ()) -> dict | None:
    """The record of a video done earlier by the same model file with the same settings, or None (do it again).

    Only a finished, successful record counts: a failed video is tried again (its file may have been mended)."""
    record = read_json(path, {})
    same = (record.get("status") == "ok" and record.get("model", {}).get("sha256") == model["sha256"]
            and record.get("settings") == settings and all(p.is_file() for p in companions))
    return record if same else None


def write_record(path: Path, record: dict) -> None:
    atomic_write_text(json.dumps(record, indent=1) + "\n", path)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(buffer.getvalue(), path)


def check_out_dir(out_dir: Path, model: dict, overwrite: bool, marker: str) -> None:
    """An output folder is one model's: another model's outputs are refused (``--overwrite`` replaces them).

    ``marker`` (``predict.json``, ``features.json``) records the model and the run that wrote the folder."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--out {out_dir}: cannot create it ({exc.strerror}). Pass a writable folder.") from None
    before = read_json(out_dir / marker, {})
    theirs = before.get("model", {}).get("sha256")
    if theirs and theirs != model["sha256"] and not overwrite:
        raise OutputError(f"--out {out_dir}: holds the outputs of another model ({before['model'].get('file')}, "
                          f"sha256 {theirs[:12]}); this run's is {model['file']} ({model['sha256'][:12]}). To "
                          "continue that run, pass --model, --engine and --precision naming its file; else another "
                          "--out, or --overwrite to replace them.")


def start_run(items: list[VideoItem], out_dir: Path, model: dict, settings: dict, *, overwrite: bool, marker: str,
              companions: tuple[str, ...] = (), log=print, **about) -> tuple[dict[str, dict], list[VideoItem]]:
    """(records of the videos already done, keyed in the items' order with ``{}`` for the rest; videos to do).

    A video counts as done when its record says ok for this model file and these settings, and its companion files
    (``.png``, ``.npy``) are there; ``marker`` then records which model and settings the folder holds."""
    check_out_dir(out_dir, model, overwrite, marker)
    records: dict[str, dict] = {item.key: {} for item in items}
    todo = []
    for item in items:
        files = tuple(record_path(out_dir, item, suffix) for suffix in companions)
        earlier = None if overwrite else finished_record(record_path(out_dir, item), model, settings, files)
        if earlier is None:
            todo.append(item)
        else:
            records[item.key] = earlier
    if len(todo) < len(items):
        log(f"{len(items) - len(todo)} of {len(items)} videos already done by this model with these settings "
            "(skipped; --overwrite does them again)")
    write_record(out_dir / marker, {"model": model, "settings": settings, "videos": len(items), **about,
                                    "date": time.strftime("%Y-%m-%d %H:%M:%S")})
    return records, todo
