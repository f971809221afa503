"""`c3d-rt export`: TorchScript, ONNX fp32/fp16/int8, each proven equivalent before it is written.

Every artifact is written under a temporary name, checked against the eager
model on inputs the export never saw (random clips at batch 1 and 3, and clips
decoded from real video files), and only then renamed into place. A failing
artifact is deleted, reported with its measured error, and the command fails.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import __version__
from .artifacts import INPUT_NAME, OUTPUT_NAME, TS_EXTRA_FILE, ArtifactInfo, read_artifact_info
from .checkpoint import Checkpoint, atomic_write_text, load_checkpoint
from .config import Preprocessing
from .data import DataError, VideoClipDataset, load_data_split
from .errors import C3DError
from .model import C3D
from .transforms import softmax

FORMATS = {  # name -> (file name, precision)
    "torchscript": ("c3d.ts", "fp32"),
    "onnx": ("c3d.onnx", "fp32"),
    "onnx-fp16": ("c3d.fp16.onnx", "fp16"),
    "onnx-int8": ("c3d.int8.onnx", "int8"),
}
DEFAULT_OPSET = 18
FP32_RTOL, FP32_ATOL = 1e-3, 1e-5  # torchvision's and MMDeploy's tolerances on logits
MIN_TOP1_AGREEMENT = 0.99  # fp16 and int8 against eager fp32 on held-out real clips
MAX_ACCURACY_DROP = 0.01  # int8 against fp32 on the validation set
RANDOM_BATCHES = (1, 3)  # batch 1 and a batch above 1: catches a specialised batch axis


class ExportError(C3DError):
    """An export that could not be written or did not prove equivalent."""


def parse_formats(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ExportError(f"unknown format {', '.join(unknown) or repr(text)}; choose from {', '.join(FORMATS)} "
                          "(comma-separated).")
    return names


# --- inputs the export never saw ------------------------------------------------------------


@dataclass
class CheckInputs:
    """Random clips at several batch sizes, and real clips with their labels (may be empty)."""

    random: list[np.ndarray]
    real: np.ndarray  # (N, 3, T, H, W)
    real_labels: np.ndarray  # (N,)
    real_source: str


def random_clips(shape_fn: Callable[[int], tuple], seed: int = 1234) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)  # pixel-like values: mean-subtracted 0..255
    return [rng.uniform(-100, 155, size=shape_fn(b)).astype(np.float32) for b in RANDOM_BATCHES]


def real_clips(dataset: VideoClipDataset | None, limit: int) -> tuple[np.ndarray, np.ndarray]:
    if dataset is None or len(dataset) == 0:
        return np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    step = max(1, len(dataset) // limit)
    pairs = [dataset[i] for i in range(0, len(dataset), step)][:limit]
    return np.stack([c.numpy() for c, _ in pairs]), np.array([y for _, y in pairs])


def data_sets_for(ckpt: Checkpoint, prep: Preprocessing, calib: str | Path | None):
    """(calibration set, held-out set) from --calib, else from the checkpoint's own split."""
    split_info = ckpt.extra.get("split")
    if calib:
        split = load_data_split(calib)
        root, train, val, classes = split.root, split.train, split.val, split.classes
    elif split_info and Path(split_info["root"]).is_dir():
        root, train, val, classes = Path(split_info["root"]), split_info["train"], split_info["val"], split_info["classes"]
    else:
        return None, None
    try:
        calib_set = VideoClipDataset(root, train or val, classes, prep, train=False)
        held_out = VideoClipDataset(root, val, classes, prep, train=False) if val else None
    except DataError:
        return None, None
    return calib_set, held_out


# --- writing each format ----------------------------------------------------------------------


def write_torchscript(model: C3D, info: ArtifactInfo, path: Path) -> None:
    example = torch.zeros(model.config.input_shape(2))
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
    extra = {TS_EXTRA_FILE: json.dumps(info.to_metadata())}
    torch.jit.save(traced, str(path), _extra_files=extra)


def _set_metadata(model_proto, info: ArtifactInfo) -> None:
    del model_proto.metadata_props[:]
    for key, value in info.to_metadata().items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


def write_onnx_fp32(model: C3D, info: ArtifactInfo, path: Path, opset: int) -> None:
    import onnx

    example = torch.zeros(model.config.input_shape(2))  # batch 2: a batch of 1 can get specialised
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
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


# --- running artifacts --------------------------------------------------------------------------


def artifact_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A function clip batch -> logits for an ``.onnx`` (ONNX Runtime, CPU) or TorchScript file."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    module = torch.jit.load(str(path), map_location="cpu")

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


def eager_runner(model: C3D) -> Callable[[np.ndarray], np.ndarray]:
    """The eager PyTorch model as a clip batch -> logits function (the reference of every check)."""

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return run


def run_batched(fn: Callable[[np.ndarray], np.ndarray], clips: np.ndarray, batch: int = 8) -> np.ndarray:
    return np.concatenate([fn(clips[i : i + batch]) for i in range(0, len(clips), batch)]) if len(clips) else clips


# --- the proof ----------------------------------------------------------------------------------


@dataclass
class ArtifactResult:
    format: str
    file: str
    precision: str
    status: str = "pending"  # ok, FAILED
    size_mb: float = 0.0
    max_abs_err: float | None = None  # on logits
    max_rel_err: float | None = None
    max_prob_err: float | None = None
    top1_agreement: float | None = None  # with eager fp32, on real held-out clips (random if none)
    accuracy: float | None = None
    reference_accuracy: float | None = None
    checked_clips: int = 0
    seconds: float = 0.0
    reason: str = ""


def compare(result: ArtifactResult, reference: Callable[[np.ndarray], np.ndarray],
            candidate: Callable[[np.ndarray], np.ndarray], inputs: CheckInputs) -> ArtifactResult:
    """Fill ``result`` with the measured errors of ``candidate`` against ``reference`` and decide."""
    ref_parts, got_parts = [], []
    for x in inputs.random + ([inputs.real] if len(inputs.real) else []):
        ref_parts.append(run_batched(reference, x))
        got_parts.append(run_batched(candidate, x))
    ref, got = np.concatenate(ref_parts), np.concatenate(got_parts)
    diff = np.abs(got - ref)
    result.max_abs_err = float(diff.max())
    result.max_rel_err = float((diff / np.maximum(np.abs(ref), 1e-6)).max())
    result.max_prob_err = float(np.abs(softmax(got) - softmax(ref)).max())
    n_real = len(inputs.real)
    agree_ref, agree_got = (ref[-n_real:], got[-n_real:]) if n_real else (ref, got)
    result.top1_agreement = float((agree_ref.argmax(1) == agree_got.argmax(1)).mean())
    result.checked_clips = len(ref)
    if n_real:
        result.reference_accuracy = float((agree_ref.argmax(1) == inputs.real_labels).mean())
        result.accuracy = float((agree_got.argmax(1) == inputs.real_labels).mean())
    result.reason = verdict(result, ref, got, n_real)
    result.status = "FAILED" if result.reason else "ok"
    return result


def verdict(r: ArtifactResult, ref: np.ndarray, got: np.ndarray, n_real: int) -> str:
    """Empty when the artifact passes its precision's criteria, else what failed and by how much."""
    if not np.isfinite(got).all():
        return "produced non-finite outputs"
    if r.precision == "fp32":
        excess = np.abs(got - ref) - (FP32_ATOL + FP32_RTOL * np.abs(ref))
        if (excess > 0).any():
            return (f"logits differ beyond rtol {FP32_RTOL:g}, atol {FP32_ATOL:g}: max abs error "
                    f"{r.max_abs_err:.3g}, max rel error {r.max_rel_err:.3g} ({int((excess > 0).sum())} values)")
        return ""
    where = "held-out real clips" if n_real else "random clips"
    if r.top1_agreement < MIN_TOP1_AGREEMENT:
        return f"top-1 agrees with fp32 on {r.top1_agreement:.1%} of {where}; needs >= {MIN_TOP1_AGREEMENT:.0%}"
    if r.accuracy is not None and r.reference_accuracy - r.accuracy > MAX_ACCURACY_DROP:
        return (f"accuracy {r.accuracy:.1%} vs fp32 {r.reference_accuracy:.1%}: drops more than "
                f"{MAX_ACCURACY_DROP * 100:.0f} point")
    return ""


# --- export --------------------------------------------------------------------------------------


@dataclass
class ExportReport:
    source: str
    source_sha256: str
    out_dir: str
    artifacts: list[ArtifactResult] = field(default_factory=list)
    real_clips: int = 0
    real_source: str = ""
    calibration_clips: int = 0
    seconds: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(a.status == "ok" for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def artifact_info(ckpt: Checkpoint, labels: list[str], prep: Preprocessing, fmt: str, precision: str,
                  opset: int | None) -> ArtifactInfo:
    return ArtifactInfo(labels, prep, ckpt.model_config, precision, fmt, opset, __version__, ckpt.sha256,
                        str(ckpt.path.resolve()))


def resolve_labels(ckpt: Checkpoint, labels_file: str | Path | None) -> list[str]:
    n = ckpt.model_config.num_classes
    if labels_file:
        labels = [ln.strip() for ln in Path(labels_file).read_text().splitlines() if ln.strip()]
        if len(labels) != n:
            raise ExportError(f"{labels_file}: lists {len(labels)} labels; the model has {n} outputs.")
        return labels
    return ckpt.labels or [f"class_{i}" for i in range(n)]


def check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test", delete=True)
        probe.close()
    except OSError as exc:
        raise ExportError(f"{out_dir}: cannot write there ({exc.strerror}). Pass --out with a writable folder.") from None


def build_check_inputs(model: C3D, calib_set, held_out, n_real: int) -> CheckInputs:
    real, labels = real_clips(held_out if held_out is not None else calib_set, n_real)
    source = "held-out split" if held_out is not None else ("calibration set" if calib_set is not None else "none")
    return CheckInputs(random_clips(model.config.input_shape), real, labels, source)


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path = "export", *, formats: list[str] | None = None,
                      opset: int = DEFAULT_OPSET, calib: str | Path | None = None,
                      labels_file: str | Path | None = None, calib_clips: int = 32, check_clips: int = 100,
                      log: Callable[[str], None] = print) -> ExportReport:
    """Export a checkpoint to the given formats; write only artifacts that prove equivalent."""
    start = time.perf_counter()
    formats = formats or list(FORMATS)
    out_dir = Path(out_dir)
    ckpt = load_checkpoint(ckpt_path)
    labels = resolve_labels(ckpt, labels_file)
    prep = ckpt.preprocessing or Preprocessing.for_model(ckpt.model_config)
    model = ckpt.build_model()
    check_out_dir(out_dir)
    calib_set, held_out = data_sets_for(ckpt, prep, calib)
    inputs = build_check_inputs(model, calib_set, held_out, check_clips)
    report = ExportReport(str(ckpt_path), ckpt.sha256, str(out_dir), real_clips=len(inputs.real),
                          real_source=inputs.real_source, machine=machine_info())
    log(f"checking against {len(inputs.real)} real clips ({inputs.real_source}) and random clips at batch "
        f"{', '.join(map(str, RANDOM_BATCHES))}")

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as staging:
        staging = Path(staging)
        fp32_onnx = None
        for fmt in _ordered(formats):
            name, precision = FORMATS[fmt]
            tmp = staging / name
            result = ArtifactResult(fmt, str(out_dir / name), precision)
            t0 = time.perf_counter()
            info = artifact_info(ckpt, labels, prep, "torchscript" if fmt == "torchscript" else "onnx", precision,
                                 None if fmt == "torchscript" else opset)
            try:
                fp32_onnx = _write(fmt, model, info, tmp, staging, fp32_onnx, opset, calib_set, calib_clips, report)
                compare(result, eager_runner(model), artifact_runner(tmp), inputs)
            except C3DError:
                raise
            except Exception as exc:  # an exporter or runtime failure: report it, never half-write
                result.status, result.reason = "FAILED", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            result.seconds = round(time.perf_counter() - t0, 2)
            if tmp.exists():
                result.size_mb = round(tmp.stat().st_size / 2**20, 2)
            if result.status == "ok":
                _publish(tmp, out_dir / name)
            else:
                (out_dir / name).unlink(missing_ok=True)  # never leave an older, unproven file under this name
            report.artifacts.append(result)
            log(_result_line(result))
    report.seconds = round(time.perf_counter() - start, 2)
    report.artifacts.sort(key=lambda a: list(FORMATS).index(a.format))
    atomic_write_text(json.dumps(report.to_dict(), indent=2) + "\n", out_dir / "report.json")
    return report


def _ordered(formats: list[str]) -> list[str]:
    return sorted(dict.fromkeys(formats), key=list(FORMATS).index)


def _write(fmt, model, info, tmp, staging, fp32_onnx, opset, calib_set, calib_clips, report) -> Path | None:
    """Write one format to ``tmp``; return the fp32 ONNX file that fp16 and int8 derive from."""
    if fmt == "torchscript":
        write_torchscript(model, info, tmp)
        return fp32_onnx
    if fp32_onnx is None:
        fp32_onnx = staging / "fp32-base.onnx"
        base_info = ArtifactInfo(**{**info.__dict__, "precision": "fp32"})
        write_onnx_fp32(model, base_info, fp32_onnx, opset)
    if fmt == "onnx":
        shutil.copyfile(fp32_onnx, tmp)
    elif fmt == "onnx-fp16":
        write_onnx_fp16(fp32_onnx, info, tmp)
    elif fmt == "onnx-int8":
        clips = calibration_clips(model, calib_set, calib_clips)
        report.calibration_clips = len(clips)
        write_onnx_int8(fp32_onnx, info, tmp, clips)
    return fp32_onnx


def calibration_clips(model: C3D, calib_set, n: int) -> np.ndarray:
    """Real clips for int8 calibration; without data, synthetic motion clips (with a warning)."""
    clips, _ = real_clips(calib_set, n)
    if len(clips):
        return clips
    from .synth import synthetic_clips

    print("warning: no calibration data (pass --calib DATA); calibrating int8 on built-in synthetic clips")
    return synthetic_clips(n, Preprocessing.for_model(model.config))


def _publish(tmp: Path, target: Path) -> None:
    """Move a proven artifact into place: staging sits inside the output folder, so this is one atomic rename."""
    os.replace(tmp, target)


def _result_line(r: ArtifactResult) -> str:
    errors = (f"max|d logits| {r.max_abs_err:.2e}" if r.precision == "fp32" and r.max_abs_err is not None else
              f"max|d prob| {r.max_prob_err:.2e}" if r.max_prob_err is not None else "")
    agree = f"top-1 agree {r.top1_agreement:.1%}" if r.top1_agreement is not None else ""
    return f"  {r.format:<12} {r.status:<6} {r.size_mb:>8.1f} MB  {errors}  {agree}  {r.seconds:.1f}s  {r.reason}"


def format_report_table(report: ExportReport) -> str:
    head = f"{'format':<12} {'status':<6} {'size MB':>8} {'max|dlogit|':>11} {'max rel':>9} {'max|dprob|':>10} " \
           f"{'top1 agree':>10} {'acc':>6} {'time s':>7}"
    rows = [head, "-" * len(head)]
    fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
    for a in report.artifacts:
        rows.append(f"{a.format:<12} {a.status:<6} {a.size_mb:>8.1f} {fmt(a.max_abs_err, '11.2e')} "
                    f"{fmt(a.max_rel_err, '9.2e')} {fmt(a.max_prob_err, '10.2e')} "
                    f"{fmt(a.top1_agreement, '10.1%')} {fmt(a.accuracy, '6.1%')} {a.seconds:>7.1f}")
        if a.reason:
            rows.append(f"  -> {a.reason}")
    rows.append(f"checked on random clips (batch {', '.join(map(str, RANDOM_BATCHES))}) and {report.real_clips} real "
                f"clips ({report.real_source}); total {report.seconds:.1f}s")
    return "\n".join(rows)


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort

    info = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__,
            "platform": platform.platform(), "cpu": _cpu_model(), "cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d"), "c3d_rt": __version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- verify -------------------------------------------------------------------------------------


def verify_artifact(artifact: str | Path, against: str | Path | None = None, *, calib: str | Path | None = None,
                    check_clips: int = 100) -> ArtifactResult:
    """Re-run the equivalence check of one artifact against its source checkpoint."""
    artifact = Path(artifact)
    info = read_artifact_info(artifact)
    source = Path(against) if against else Path(info.source_path)
    if not source.is_file():
        raise ExportError(f"{artifact}: its source checkpoint {source} is not there; pass --against CKPT.")
    ckpt = load_checkpoint(source)
    if not against and ckpt.sha256 != info.source_sha256:
        raise ExportError(f"{source}: has changed since {artifact} was exported (SHA-256 {ckpt.sha256[:12]} vs "
                          f"{info.source_sha256[:12]}); pass --against CKPT to compare anyway.")
    model = ckpt.build_model()
    calib_set, held_out = data_sets_for(ckpt, info.preprocessing, calib)
    inputs = build_check_inputs(model, calib_set, held_out, check_clips)
    fmt = "torchscript" if info.fmt == "torchscript" else {"fp32": "onnx", "fp16": "onnx-fp16", "int8": "onnx-int8"}[info.precision]
    result = ArtifactResult(fmt, str(artifact), info.precision, size_mb=round(artifact.stat().st_size / 2**20, 2))

    t0 = time.perf_counter()
    try:
        compare(result, eager_runner(model), artifact_runner(artifact), inputs)
    except Exception as exc:
        result.status, result.reason = "FAILED", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    result.seconds = round(time.perf_counter() - t0, 2)
    return result
