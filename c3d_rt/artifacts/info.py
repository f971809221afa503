"""Self-describing artifacts: the metadata written into every exported model, and read back.

ONNX files carry it in ``metadata_props`` (one key per field, JSON values);
TorchScript files and ``.pt2`` archives (torch.export, AOTInductor) carry the same dict as the
extra file ``c3d_rt.json``. Both are zip archives, so their metadata is read without torch.
The runtime and the benchmark read these instead of re-declaring constants.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import ModelConfig, Preprocessing
from ..core.errors import C3DError, describe

TS_EXTRA_FILE = "c3d_rt.json"
INPUT_NAME, OUTPUT_NAME = "clip", "logits"
FEATURE_LAYERS = ("fc6", "fc7")  # the activations a features file (c3d.features.onnx) gives beside the logits
FEATURES_NOTE = "fc6 and fc7 are taken after their ReLU (as the C3D authors' Caffe feature extractor gives them)"


class ArtifactError(C3DError):
    """A model file that is missing, unreadable, or lacks c3d-rt metadata."""


@dataclass(frozen=True)
class ArtifactInfo:
    """What an exported model says about itself."""

    labels: list[str]
    preprocessing: Preprocessing
    model_config: ModelConfig
    precision: str  # fp32, fp16, int8
    fmt: str  # torchscript, onnx
    opset: int | None
    exporter_version: str
    source_sha256: str
    source_path: str
    runtime_version: str = ""  # the torch that wrote a .ts or .pt2 (they load only on a compatible one)
    outputs: tuple[str, ...] = (OUTPUT_NAME,)  # the graph's outputs by name: a features file adds FEATURE_LAYERS

    def to_metadata(self) -> dict[str, str]:
        prep = self.preprocessing
        fields: dict[str, Any] = {
            "labels": self.labels,
            "clip_len": prep.clip_len,
            "frame_interval": prep.frame_interval,
            "resize_wh": list(prep.resize_wh),
            "crop_size": prep.crop_size,
            "mean_bgr": list(prep.mean_bgr),
            "channel_order": prep.channel_order,
            "input_layout": "B,C,T,H,W",
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
            "outputs": list(self.outputs),
            "precision": self.precision,
            "format": self.fmt,
            "opset": self.opset,
            "exporter": "c3d-rt",
            "exporter_version": self.exporter_version,
            "source_sha256": self.source_sha256,
            "source_path": self.source_path,
            "runtime_version": self.runtime_version,
            "model_config": self.model_config.to_dict(),
            "preprocessing": prep.to_dict(),
        }
        if set(FEATURE_LAYERS) & set(self.outputs):
            fields["features_note"] = FEATURES_NOTE
        return {k: json.dumps(v) for k, v in fields.items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], where: str) -> "ArtifactInfo":
        if meta.get("exporter") != '"c3d-rt"':
            raise ArtifactError(f"{where}: has no c3d-rt metadata (labels, clip length, preprocessing). "
                                "Export it with `c3d-rt export CKPT`, which writes them into the file.")
        values = {k: json.loads(v) for k, v in meta.items()}
        classes = values["model_config"].get("num_classes")
        if len(values["labels"]) != classes:
            raise ArtifactError(f"{where}: lists {len(values['labels'])} labels, but its model has {classes} outputs; "
                                "a prediction could have no name. Export it again from a consistent checkpoint "
                                "(`c3d-rt export CKPT`, with --labels FILE of one name per output if needed).")
        return cls(
            labels=values["labels"],
            preprocessing=Preprocessing.from_dict(values["preprocessing"]),
            model_config=ModelConfig.from_dict(values["model_config"]),
            precision=values["precision"],
            fmt=values["format"],
            opset=values.get("opset"),
            exporter_version=values["exporter_version"],
            source_sha256=values["source_sha256"],
            source_path=values.get("source_path", ""),
            runtime_version=values.get("runtime_version", ""),
            outputs=tuple(values.get("outputs", [OUTPUT_NAME])),  # files written before features: logits only
        )


def read_onnx_info(path: str | Path) -> ArtifactInfo:
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file. Export one with `c3d-rt export CKPT --out DIR`.")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"{path}: not a readable ONNX file ({describe(exc)}).") from None
    return ArtifactInfo.from_metadata({p.key: p.value for p in model.metadata_props}, str(path))


def read_zip_metadata(path: str | Path) -> ArtifactInfo:
    """Metadata of a TorchScript (``.ts``) or ``.pt2`` artifact, from the zip archive itself (no torch needed).

    torch stores extra files under ``<archive>/extra/``; the archive's folder name varies with the
    writer, so the entry is found by its ending.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file. Export one with `c3d-rt export CKPT --out DIR`.")
    try:
        with zipfile.ZipFile(path) as archive:
            entry = next((n for n in archive.namelist() if n.endswith(f"extra/{TS_EXTRA_FILE}")), None)
            if entry is None:
                raise ArtifactError(f"{path}: has no {TS_EXTRA_FILE} extra file; export it with `c3d-rt export`.")
            meta = json.loads(archive.read(entry))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a readable TorchScript or .pt2 archive ({describe(exc)}).") from None
    return ArtifactInfo.from_metadata(meta, str(path))


