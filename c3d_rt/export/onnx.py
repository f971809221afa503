"""Writers of the ONNX formats: fp32 (the source of every other ONNX and IR file), fp16, static int8 (QDQ), and the
fp32 features file (fc6, fc7 and the logits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..artifacts.info import FEATURE_LAYERS, INPUT_NAME, OUTPUT_NAME, ArtifactInfo
from ..model.c3d import C3D
from .inputs import ExportError


def _set_metadata(model_proto, info: ArtifactInfo) -> None:
    del model_proto.metadata_props[:]
    for key, value in info.to_metadata().items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


def write_onnx_fp32(model: C3D, info: ArtifactInfo, path: Path, opset: int) -> None:
    """c3d.onnx: the logits alone."""
    _export_fp32(model, model.config, info, path, opset, [OUTPUT_NAME])


class _Layers(torch.nn.Module):
    """The model with fc6 and fc7 (after ReLU) as outputs beside the logits: what c3d.features.onnx computes."""

    def __init__(self, model: C3D) -> None:
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.forward_layers(clip)


def write_onnx_features(model: C3D, info: ArtifactInfo, path: Path, opset: int) -> None:
    """c3d.features.onnx: outputs fc6, fc7 and logits (``C3D.forward_layers``), the same export as c3d.onnx."""
    _export_fp32(_Layers(model).eval(), model.config, info, path, opset, [*FEATURE_LAYERS, OUTPUT_NAME])


def _export_fp32(module: torch.nn.Module, config, info: ArtifactInfo, path: Path, opset: int,
                 outputs: list[str]) -> None:
    """torch.onnx's dynamo export with a dynamic batch axis, c3d-rt metadata inside."""
    import onnx

    example = torch.zeros(config.input_shape(2))  # batch 2: a batch of 1 can get specialised
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME], output_names=outputs,
                      dynamic_shapes={"clip": {0: batch}}, opset_version=opset, external_data=False,
                      dynamo=True, verbose=False)
    proto = onnx.load(str(path))
    _set_metadata(proto, info)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def write_onnx_fp16(fp32_path: Path, info: ArtifactInfo, path: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)  # callers keep float32 I/O
    _sort_topologically(proto.graph)  # the converter appends its input Casts at the end
    _set_metadata(proto, info)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _sort_topologically(graph) -> None:
    """Reorder ``graph.node`` so that every node comes after the producers of its inputs."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        runnable = [n for n in pending if all(i in ready for i in n.input)]
        if not runnable:
            raise ExportError("the fp16 graph has a cycle or an undefined input; cannot order its nodes")
        for node in runnable:
            ordered.append(node)
            ready.update(node.output)
        pending = [n for n in pending if all(n is not r for r in runnable)]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


class _ClipReader:
    """ONNX Runtime's CalibrationDataReader over a list of clips, one at a time."""

    def __init__(self, clips: np.ndarray) -> None:
        self._iter = iter(clips)

    def get_next(self):
        clip = next(self._iter, None)
        return None if clip is None else {INPUT_NAME: clip[None]}


def classifier_nodes(onnx_path: Path) -> list[str]:
    """The node that computes the logits (fc8): it stays in float.

    Quantising the last layer flips top-1 on clips where two classes are close:
    on a partly trained full-size C3D, 94.4% top-1 agreement with it quantised,
    100% without (72 held-out clips). Its share of the work is negligible:
    4096 x classes multiply-adds of C3D's 38.5 G.
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in graph.node if OUTPUT_NAME in n.output and n.op_type in ("Gemm", "MatMul")]


def write_onnx_int8(fp32_path: Path, info: ArtifactInfo, path: Path, calib_clips: np.ndarray) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(fp32_path), str(path), _ClipReader(calib_clips), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=classifier_nodes(fp32_path))
    proto = onnx.load(str(path))
    _set_metadata(proto, info)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
