"""Writers of the OpenVINO IR formats (``.xml`` + ``.bin``), from the exported fp32 ONNX file.

The IR carries the same c3d-rt metadata as the ONNX file (one JSON string per key)
in its ``rt_info``, under a ``c3d_rt`` section, so the runtime and the benchmark can
read labels and preprocessing from an ``.xml`` exactly as they do from an ``.onnx``
(:mod:`c3d_rt.artifacts.openvino` reads it back).
The int8 IR is quantised by NNCF, with the classifier (fc8) kept in float.
OpenVINO and NNCF are optional extras: they are imported only inside these functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts.info import INPUT_NAME, OUTPUT_NAME, ArtifactError, ArtifactInfo
from ..artifacts.openvino import RT_SECTION, frontend_supports, import_optional
from ..core.errors import describe


def _convert(onnx_path: Path):
    """The ONNX file as an OpenVINO model, with the ONNX frontend's stale copy of its metadata removed."""
    ov = import_optional("openvino")
    if not Path(onnx_path).is_file():
        raise ArtifactError(f"{onnx_path}: no such ONNX file; write the fp32 ONNX export first.")
    if not frontend_supports("onnx", onnx_path):
        raise ArtifactError(f"{onnx_path}: not an ONNX file; pass the fp32 .onnx written by `c3d-rt export`.")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:
        raise ArtifactError(f"{onnx_path}: OpenVINO cannot convert it ({describe(exc)}); "
                            "re-export the fp32 ONNX file with `c3d-rt export`.") from None
    # The ONNX frontend copies metadata_props into rt_info["framework"]; that copy says format "onnx"
    # (and precision "fp32" for int8), so drop it: the c3d_rt section is the one source of truth.
    rt_info = model.get_rt_info()
    if "framework" in rt_info:
        del rt_info["framework"]
    names = (model.input(0).get_names(), model.output(0).get_names())
    if len(model.inputs) != 1 or len(model.outputs) != 1 or INPUT_NAME not in names[0] or OUTPUT_NAME not in names[1]:
        raise ArtifactError(f"{onnx_path}: expected one input {INPUT_NAME!r} and one output {OUTPUT_NAME!r}, got "
                            f"inputs {[sorted(i.get_names()) for i in model.inputs]} and outputs "
                            f"{[sorted(o.get_names()) for o in model.outputs]}; re-export it with `c3d-rt export`.")
    return model


def _save(model, info: ArtifactInfo, xml_path: Path) -> None:
    """Embed ``info`` (format "openvino") in ``model``'s rt_info and write the .xml/.bin pair, weights as they are."""
    ov = import_optional("openvino")
    xml_path = Path(xml_path)
    if xml_path.suffix != ".xml":
        raise ArtifactError(f"{xml_path}: an OpenVINO IR path must end in .xml (its weights go beside it in .bin).")
    for key, value in dataclasses.replace(info, fmt="openvino").to_metadata().items():
        model.set_rt_info(value, [RT_SECTION, key])
    ov.save_model(model, str(xml_path), compress_to_fp16=False)  # the default would halve fp32 weights to fp16


def write_openvino_ir(onnx_path: Path, info: ArtifactInfo, xml_path: Path) -> None:
    """Convert the fp32 ONNX export to an fp32 IR (dynamic batch kept), with c3d-rt metadata inside."""
    _save(_convert(onnx_path), info, xml_path)


def classifier_ops(model) -> list[str]:
    """Friendly names of the MatMul that computes the logits (fc8), found by walking up from the output.

    It stays in float for the reason given in ``export.onnx.classifier_nodes``: quantising it flips
    top-1 between close classes, and it is a negligible share of C3D's work.
    """
    frontier = [model.output(OUTPUT_NAME).get_node()]
    for _ in range(8):  # the ops between fc8 and the output: its bias Add, perhaps a Reshape or Convert
        inputs = [v.get_node() for node in frontier for v in node.input_values()]
        frontier = [n for n in inputs if n.get_type_name() not in ("Constant", "Parameter")]
        matmuls = [n.get_friendly_name() for n in frontier if n.get_type_name() == "MatMul"]
        if matmuls:
            return matmuls
    raise ArtifactError(f"found no MatMul producing {OUTPUT_NAME!r} within 8 ops of the output; the graph is not "
                        "C3D's. Pass ignore=\"none\" to quantise every layer.")


@contextlib.contextmanager
def _quiet_nncf():
    """Silence NNCF while it runs, then restore its log level.

    NNCF logs INFO lines through its own stdout handler and draws rich progress bars on
    stdout; the exporter prints its own one-line progress and report, so neither may reach
    the user. Its handler holds the stdout of import time, so it is silenced by level (errors
    still show); the bars are caught by redirecting stdout.
    """
    from nncf.common.logging import nncf_logger

    level = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # rich's Console resolves sys.stdout when it draws
            yield
    finally:
        nncf_logger.setLevel(level)


IGNORE = ("fc8", "fc", "none")  # which layers stay float: the logits layer, every FC layer, or none


def ignored_ops(model, ignore: str) -> list[str]:
    """Names of the ops NNCF must leave in float for ``ignore`` (see ``IGNORE``)."""
    if ignore not in IGNORE:
        raise ArtifactError(f"unknown ignore {ignore!r}; choose {', '.join(IGNORE)}")
    if ignore == "fc":
        return [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "MatMul"]
    return classifier_ops(model) if ignore == "fc8" else []


def _calibration(clips: np.ndarray):
    nncf = import_optional("nncf")
    clips = np.asarray(clips, dtype=np.float32)
    if clips.ndim != 5 or len(clips) == 0:
        raise ArtifactError(f"calibration clips must be a non-empty (N, 3, T, H, W) array; got shape {clips.shape}. "
                            "Pass --calib DATA or let the exporter use synthetic clips.")
    return nncf.Dataset(clips, lambda clip: clip[None]), len(clips)


def write_openvino_int8(onnx_path: Path, info: ArtifactInfo, xml_path: Path, calib_clips: np.ndarray, *,
                        ignore: str = "fc8", subset_size: int | None = None,
                        agreement_clips: np.ndarray | None = None, max_disagreement: float = 0.01,
                        **quantize_options: Any) -> dict[str, Any]:
    """Quantise the fp32 ONNX export with NNCF post-training quantisation and write an int8 IR.

    ``calib_clips`` is (N, 3, T, H, W); each clip is one calibration batch of 1. With
    ``agreement_clips``, NNCF's ``quantize_with_accuracy_control`` reverts layers to float until
    top-1 agrees with the fp32 model on at least ``1 - max_disagreement`` of them (the exporter's
    own rule, as NNCF's metric). Other keyword arguments go to ``nncf.quantize`` (e.g.
    ``fast_bias_correction=False``). Returns what was done, for the export report.
    """
    ov, nncf = import_optional("openvino"), import_optional("nncf")
    dataset, count = _calibration(calib_clips)
    model = _convert(onnx_path)
    ignored = ignored_ops(model, ignore)
    n = min(count, subset_size or count)
    scope = nncf.IgnoredScope(names=ignored) if ignored else None
    start = time.perf_counter()
    with _quiet_nncf():
        if agreement_clips is None:
            quantized = nncf.quantize(model, dataset, subset_size=n, ignored_scope=scope, **quantize_options)
        else:
            quantized = _quantize_to_agreement(ov, nncf, model, dataset, n, scope, agreement_clips, max_disagreement)
    seconds = time.perf_counter() - start
    _save(quantized, dataclasses.replace(info, precision="int8"), xml_path)
    return {"calibration_clips": n, "ignored_ops": ignored, "accuracy_control": agreement_clips is not None,
            "fake_quantize_ops": sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops()),
            "nncf_version": nncf.__version__, "openvino_version": ov.__version__, "seconds": round(seconds, 2),
            **{k: str(v) for k, v in quantize_options.items()}}


def _quantize_to_agreement(ov, nncf, model, dataset, n, scope, clips: np.ndarray, max_disagreement: float):
    """``quantize_with_accuracy_control`` whose metric is top-1 agreement with this fp32 model."""
    reference = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    targets = [int(np.argmax(reference(clip[None])[0])) for clip in np.asarray(clips, np.float32)]
    pairs = nncf.Dataset(list(zip(np.asarray(clips, np.float32), targets)), lambda pair: pair[0][None])

    def agreement(compiled, items) -> float:
        output = compiled.output(0)
        return float(np.mean([int(np.argmax(compiled(clip[None])[output][0])) == target for clip, target in items]))

    return nncf.quantize_with_accuracy_control(model, dataset, pairs, validation_fn=agreement,
                                               max_drop=max_disagreement, drop_type=nncf.DropType.ABSOLUTE,
                                               subset_size=n, ignored_scope=scope)


