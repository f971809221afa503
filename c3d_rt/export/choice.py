"""Which formats an export writes: what `--formats` may name and what is written by default here."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..artifacts import triton as triton_repo
from ..artifacts.formats import DEFAULT_EXPORT_FORMATS, FORMATS
from ..core.machine import library_installed
from .inputs import ExportError


def parse_formats(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ExportError(f"unknown format {', '.join(unknown) or repr(text)}; choose from {', '.join(FORMATS)} "
                          "(comma-separated).")
    if "aoti" in names and not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
        raise ExportError("format aoti compiles C++ kernels with the system C++ compiler, and none was found (c++, "
                          "g++ or clang++ on PATH). Install one (e.g. apt-get install g++), or export torch-export.")
    for name in names:
        if FORMATS[name].kind == "openvino" and not openvino_ready(name):
            raise ExportError(f"format {name} needs OpenVINO{' and NNCF' if name.endswith('int8') else ''}: "
                              "pip install 'c3d-rt[openvino]'")
        if name == "triton" and not library_installed("tritonclient"):
            raise ExportError(f"format triton checks its config.pbtxt with Triton's own schema, which comes with "
                              f"tritonclient: {triton_repo.INSTALL}")
    return names


def check_repository(out_dir: Path, formats: list[str], force: bool) -> None:
    """An existing Triton model folder is replaced only with ``force`` (a server may be serving it)."""
    folder = out_dir / triton_repo.REPOSITORY / triton_repo.MODEL_NAME
    if "triton" in formats and folder.exists() and not force:
        raise ExportError(f"{folder}: a Triton model folder is already there (a server may be serving it). Pass "
                          "--force to replace it, or --out another folder.")


def default_formats() -> list[str]:
    """Every format whose tools are installed: the OpenVINO IRs where the openvino extra is."""
    return list(DEFAULT_EXPORT_FORMATS) + [n for n, f in FORMATS.items() if f.kind == "openvino" and openvino_ready(n)]


def openvino_ready(name: str) -> bool:
    return library_installed("openvino") and (not name.endswith("int8") or library_installed("nncf"))
