"""Reading OpenVINO IR artifacts (``.xml`` + ``.bin``): their files and the c3d-rt metadata in their rt_info.

The exporter (:mod:`c3d_rt.export.openvino`) writes the same ``c3d_rt`` section that is read here.
OpenVINO is an optional extra: it is imported only inside these functions.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..core.errors import describe
from .info import ArtifactError, ArtifactInfo

RT_SECTION = "c3d_rt"
INSTALL_HINT = "pip install 'c3d-rt[openvino]'"


def import_optional(name: str):
    """The optional module ``name`` (openvino or nncf), or an error that says how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ArtifactError(f"{name} is not installed; OpenVINO IR export needs it ({INSTALL_HINT}).") from None


def companion_files(xml_path: Path) -> list[Path]:
    """The files that make up one IR artifact: the graph (.xml) and its weights (.bin) beside it."""
    xml_path = Path(xml_path)
    return [xml_path, xml_path.with_suffix(".bin")]


def frontend_supports(framework: str, path: Path) -> bool:
    """Whether OpenVINO's ``framework`` frontend recognises the file.

    Asked before reading: given a file no frontend claims, OpenVINO tries each in turn and
    TensorFlow's parser logs its failures to stderr, which a clear error here spares the user.
    """
    return import_optional("openvino").frontend.FrontEndManager().load_by_framework(framework).supported(str(path))


def read_openvino_info(xml_path: Path) -> ArtifactInfo:
    """Metadata of an OpenVINO IR artifact, from the ``c3d_rt`` section of its rt_info."""
    ov = import_optional("openvino")
    xml_path = Path(xml_path)
    if not xml_path.is_file():
        raise ArtifactError(f"{xml_path}: no such model file. Export one with `c3d-rt export CKPT --out DIR`.")
    if not frontend_supports("ir", xml_path):
        raise ArtifactError(f"{xml_path}: not an OpenVINO IR .xml file (no <net> graph in it). "
                            "Pass the .xml written by `c3d-rt export`.")
    bin_path = companion_files(xml_path)[1]
    if not bin_path.is_file():
        raise ArtifactError(f"{xml_path}: its weights file {bin_path.name} is missing; "
                            "keep the .xml and .bin together.")
    try:
        model = ov.Core().read_model(str(xml_path))
    except Exception as exc:
        raise ArtifactError(f"{xml_path}: not a readable OpenVINO IR "
                            f"({describe(exc)}).") from None
    if not model.has_rt_info([RT_SECTION]):
        raise ArtifactError(f"{xml_path}: has no c3d-rt metadata (labels, clip length, preprocessing). "
                            "Export it with `c3d-rt export CKPT`, which writes them into the file.")
    section = model.get_rt_info([RT_SECTION]).astype(dict)  # {key: OVAny}; each holds the JSON string as written
    return ArtifactInfo.from_metadata({key: value.astype(str) for key, value in section.items()}, str(xml_path))
