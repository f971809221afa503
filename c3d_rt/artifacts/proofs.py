"""Reading ``report.json``: which files of an export folder were proven equivalent to the trained model.

The exporter and `verify` write it (:mod:`c3d_rt.export`); ``auto`` and the engines only trust a file whose
SHA-256 a passing record names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..core.fileio import read_json
from .formats import FORMATS, artifact_sha256, folder_files, read_artifact_info
from .info import ArtifactError

REPORT_FILE = "report.json"  # written by the exporter: which formats were proven, and how


def read_report(folder: Path) -> dict:
    """The exporter's report.json of a folder ({} when there is none or it is unreadable)."""
    return read_json(Path(folder) / REPORT_FILE, {})


def source_checkpoint(folder: Path) -> Path | None:
    """The checkpoint the folder's artifacts were exported from, where the folder itself holds it: the file of the
    recorded source's name inside ``folder``, with the recorded SHA-256; else None.

    A model folder runs only what is inside it: the recorded path (report.json's "source", each file's
    source_path) points back into the training run, and a copied folder must not reach back there. A checkpoint
    elsewhere is used only when the user names it."""
    for source, sha256 in _recorded_sources(Path(folder)):
        if not (isinstance(source, str) and source and isinstance(sha256, str) and sha256):
            continue
        candidate = Path(folder) / Path(source).name
        if candidate.is_file() and artifact_sha256(candidate) == sha256:
            return candidate
    return None


def _recorded_sources(folder: Path) -> Iterator[tuple[object, object]]:
    """(path, SHA-256) of the source checkpoint as report.json records it; without a report, as each file's
    metadata does (read only then: reading an IR imports OpenVINO)."""
    report = read_report(folder)
    if report.get("source"):
        yield report.get("source"), report.get("source_sha256")
        return
    for path in folder_files(folder).values():
        try:
            info = read_artifact_info(path)
        except ArtifactError:
            continue
        yield info.source_path, info.source_sha256


def proven_digests(folder: Path) -> dict[str, str]:
    """SHA-256 -> format of every file the exporter (or `verify`) proved equivalent, from ``report.json``."""
    try:
        return {a["sha256"]: a["format"] for a in read_report(folder)["artifacts"]
                if a.get("status") == "ok" and a.get("sha256")}
    except (KeyError, TypeError, AttributeError):
        return {}


def recorded_proof(path: Path) -> dict | None:
    """The exporter's (or `verify`'s) passing record of this file as it is now (same SHA-256), or None.

    What a machine without torch can check: that a file is the one proven, not the proof itself again.
    """
    path = Path(path)
    try:
        records = read_report(path.parent)["artifacts"]
        sha = artifact_sha256(path)
        return next((a for a in records if a.get("status") == "ok" and a.get("sha256") == sha), None)
    except (KeyError, TypeError, AttributeError, OSError):
        return None


def proven_before_digests(folder: Path, path: Path) -> bool:
    """Reports written before proofs carried a SHA-256: the file under its exported name, same source."""
    report = read_report(folder)
    try:
        ok = {a["format"] for a in report["artifacts"] if a.get("status") == "ok" and "sha256" not in a}
        name = next((n for n, f in FORMATS.items() if f.file == path.name), None)
        return name in ok and read_artifact_info(path).source_sha256 == report.get("source_sha256")
    except (KeyError, TypeError, AttributeError, ArtifactError, OSError):
        return False


def runtime_proofs(folder: Path) -> dict[str, str]:
    """engine/precision/device -> SHA-256 of the file it was proven on, for precisions a runtime lowers by
    itself (OpenVINO bf16, TensorRT fp16, autocast): the exporter and ``verify --engine`` record them."""
    proofs = read_report(folder).get("proofs", [])
    try:
        return {p["plan"]: p["sha256"] for p in proofs if p.get("status") == "ok"}
    except (KeyError, TypeError, AttributeError):
        return {}
