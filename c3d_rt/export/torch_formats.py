"""Writers of the torch formats: TorchScript (``.ts``), torch.export (``.pt2``) and AOTInductor (``.aoti.pt2``)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch

from ..artifacts.info import TS_EXTRA_FILE, ArtifactInfo
from ..model.c3d import C3D


def write_torchscript(model: C3D, info: ArtifactInfo, path: Path) -> None:
    example = torch.zeros(model.config.input_shape(2))
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
    extra = {TS_EXTRA_FILE: json.dumps(info.to_metadata())}
    torch.jit.save(traced, str(path), _extra_files=extra)


def exported_program(model: C3D):
    """torch.export's graph of the model with a dynamic batch (an example batch of 2: 1 can get specialised)."""
    example = torch.zeros(model.config.input_shape(2))
    batch = torch.export.Dim("batch", min=1, max=4096)
    return torch.export.export(model.eval(), (example,), dynamic_shapes={"clip": {0: batch}})


def write_torch_export(model: C3D, info: ArtifactInfo, path: Path) -> None:
    torch.export.save(exported_program(model), str(path), extra_files={TS_EXTRA_FILE: json.dumps(info.to_metadata())})


def write_aoti(model: C3D, info: ArtifactInfo, path: Path) -> None:
    """Compile with AOTInductor (the system C++ compiler, for this CPU) into a .pt2 package, metadata added."""
    from torch._inductor import aoti_compile_and_package

    aoti_compile_and_package(exported_program(model), package_path=str(path))
    with zipfile.ZipFile(path, "a") as archive:  # beside the package's own files, where torch keeps extras
        root = archive.namelist()[0].split("/", 1)[0]
        archive.writestr(f"{root}/extra/{TS_EXTRA_FILE}", json.dumps(info.to_metadata()))
