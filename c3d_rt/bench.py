"""`c3d-rt bench`: every way of running an exported C3D, side by side, with speed, memory and agreement.

Each row is one backend at one precision and batch size. Every row is checked
against the eager fp32 model on the same real clips before its speed counts:
a backend that computes something else is marked FAILED and the command exits
non-zero. A backend that cannot run here gets a row that says why.

Timings: warm-up first, then ``iters`` timed calls, each synchronised with the
device (ONNX Runtime copies outputs back; PyTorch calls ``cuda.synchronize``).
Paths are compared in one run, as ratios, because shared machines are noisy.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .artifacts import ArtifactInfo, read_artifact_info
from .errors import C3DError
from .checkpoint import Checkpoint, load_checkpoint
from .export import FORMATS, eager_runner, machine_info, run_batched
from .transforms import softmax
from .runtime.stats import percentiles

# backend -> the precisions it has at all (a missing one is not a row; one it cannot run *here* is, with why)
SUPPORTED = {
    "eager": ("fp32", "fp16", "bf16"),  # fp16 on CUDA; bf16 through autocast
    "torchscript": ("fp32",),
    "ort-cpu": ("fp32", "fp16", "int8"),
    "ort-cuda": ("fp32", "fp16", "int8"),
    "ort-tensorrt": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "bf16", "int8"),  # its CPU plugin's half precision is bf16
}
BACKENDS = tuple(SUPPORTED)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
MIN_TOP1_AGREEMENT = 0.99  # every row, against eager fp32 on the same real clips
MAX_FP32_PROB_ERROR = 1e-3  # fp32 rows must also match probabilities closely
ARTIFACT = {p: FORMATS[f][0] for f, p in (("onnx", "fp32"), ("onnx-fp16", "fp16"), ("onnx-int8", "int8"))}


class BenchError(C3DError):
    """Bad benchmark arguments or a model folder without usable artifacts."""


@dataclass
class Row:
    backend: str
    precision: str
    batch: int
    status: str = "ok"  # ok, unavailable, FAILED
    reason: str = ""
    device: str = "-"
    artifact: str = ""
    size_mb: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    clips_per_s: float | None = None
    peak_mem_mb: float | None = None  # resident memory added while loading and running this backend
    max_abs_err: float | None = None  # logits, against eager fp32
    max_prob_err: float | None = None
    top1_agreement: float | None = None
    agreement_clips: int = 0


@dataclass
class BenchSettings:
    backends: tuple[str, ...] = BACKENDS
    precisions: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
    batches: tuple[int, ...] = (1, 8)
    threads: int | None = None  # None: every core
    warmup: int = 3
    iters: int = 20
    clips: int = 32  # real clips for the agreement check
    e2e: bool = False
    e2e_seconds: float = 10.0
    e2e_fps: float = 30.0


@dataclass
class BenchReport:
    model_dir: str
    reference: str
    clips_source: str
    settings: dict
    machine: dict
    rows: list[Row] = field(default_factory=list)
    e2e: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.status == "FAILED"]

    def to_dict(self) -> dict[str, Any]:
        return {"model_dir": self.model_dir, "reference": self.reference, "clips_source": self.clips_source,
                "settings": self.settings, "machine": self.machine, "rows": [asdict(r) for r in self.rows],
                "e2e": self.e2e, "ratios": headline_ratios(self.rows)}


# --- what runs each backend -------------------------------------------------------------------------


class Unavailable(Exception):
    """This backend or precision cannot run here; the message says why."""


Runner = Callable[[np.ndarray], np.ndarray]


def _torch_runner(module, device: str, precision: str) -> Runner:
    """fp32 as is; bf16 through autocast; fp16 (CUDA only) with the weights and inputs in half."""
    import torch

    half = precision == "fp16"
    if half:
        module = module.half()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            xt = torch.from_numpy(x).to(device)
            result = module(xt.half() if half else xt).float().cpu().numpy()
        sync()
        return result

    return run


def _torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_eager(checkpoint: Checkpoint | None, precision: str, threads: int | None) -> tuple[Runner, str]:
    import torch

    if checkpoint is None:
        raise Unavailable("the source checkpoint named in the artifacts was not found; pass --checkpoint")
    device = _torch_device()
    if precision == "fp16" and device == "cpu":
        raise Unavailable("fp16 convolutions are not a CPU path in PyTorch (use bf16)")
    if precision == "bf16" and device == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise Unavailable("this CPU has no native bf16 (AVX-512 BF16 or AMX); emulated bf16 is slower than fp32")
    if threads:
        torch.set_num_threads(threads)
    model = checkpoint.build_model().to(device)
    return _torch_runner(model, device, precision), device


def load_torchscript(path: Path, precision: str, threads: int | None) -> tuple[Runner, str]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    device = _torch_device()
    return _torch_runner(torch.jit.load(str(path), map_location=device), device, precision), device


def load_ort(path: Path, provider: str, threads: int | None) -> tuple[Runner, str]:
    from .runtime.backends import BackendError, OrtModel, cuda_driver_present

    if provider != "cpu" and not cuda_driver_present():
        raise Unavailable("no NVIDIA driver on this machine (libcuda.so.1 not found)")
    try:
        model = OrtModel(path, provider, threads=threads)
    except BackendError as exc:
        raise Unavailable(str(exc)) from None
    return model, "cuda" if model.on_device else "cpu"


def load_openvino(path: Path, precision: str, threads: int | None) -> tuple[Runner, str]:
    try:
        import openvino as ov
    except ImportError:
        raise Unavailable("OpenVINO is not installed (pip install 'c3d-rt[openvino]')") from None
    core = ov.Core()
    hints = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the QDQ graph sets it; f32 elsewhere
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise Unavailable("this CPU has no bf16 support (AVX-512 BF16 or AMX)")
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hints[precision], "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        return request.infer({0: x})[compiled.output(0)].copy()

    return run, "cpu"


def artifact_for(model_dir: Path, backend: str, precision: str) -> Path:
    if backend == "torchscript":
        return model_dir / FORMATS["torchscript"][0]
    if backend == "openvino" and precision == "bf16":
        return model_dir / ARTIFACT["fp32"]  # OpenVINO lowers the fp32 graph to bf16 itself
    if backend == "ort-tensorrt" and precision == "fp16":
        return model_dir / ARTIFACT["fp32"]  # TensorRT builds fp16 kernels from the fp32 graph
    return model_dir / ARTIFACT[precision]


def load_backend(backend: str, precision: str, model_dir: Path, checkpoint: Checkpoint | None,
                 threads: int | None) -> tuple[Runner, str, Path | None]:
    """(run function, device, artifact file) of one backend at one precision, or raise Unavailable."""
    if backend == "eager":
        run, device = load_eager(checkpoint, precision, threads)
        return run, device, checkpoint.path
    path = artifact_for(model_dir, backend, precision)
    if not path.is_file():
        raise Unavailable(f"{path.name} not found in {model_dir} (export it with `c3d-rt export`)")
    if backend == "torchscript":
        run, device = load_torchscript(path, precision, threads)
    elif backend == "openvino":
        run, device = load_openvino(path, precision, threads)
    else:
        run, device = load_ort(path, {"ort-cpu": "cpu", "ort-cuda": "cuda", "ort-tensorrt": "tensorrt"}[backend],
                               threads)
    return run, device, path


# --- measuring ----------------------------------------------------------------------------------


class PeakMemory:
    """Highest resident memory of this process while the block runs, sampled every 5 ms."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.baseline = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def added_mb(self) -> float:
        return round((self.peak - self.baseline) / 2**20, 1)


def time_calls(run: Runner, x: np.ndarray, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        run(x)
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        run(x)
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def agreement(run: Runner, clips: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    got = run_batched(run, clips)
    return {"max_abs_err": float(np.abs(got - reference).max()),
            "max_prob_err": float(np.abs(softmax(got) - softmax(reference)).max()),
            "top1_agreement": float((got.argmax(1) == reference.argmax(1)).mean())}


def judge(row: Row) -> None:
    """Mark a row FAILED when it does not compute what the eager fp32 model computes."""
    if not np.isfinite(row.max_abs_err):
        row.status, row.reason = "FAILED", "non-finite outputs"
    elif row.top1_agreement < MIN_TOP1_AGREEMENT:
        row.status = "FAILED"
        row.reason = (f"top-1 agrees with eager fp32 on {row.top1_agreement:.1%} of {row.agreement_clips} clips "
                      f"(needs >= {MIN_TOP1_AGREEMENT:.0%})")
    elif row.precision == "fp32" and row.max_prob_err > MAX_FP32_PROB_ERROR:
        row.status = "FAILED"
        row.reason = f"fp32 probabilities differ by up to {row.max_prob_err:.2g} (allowed {MAX_FP32_PROB_ERROR:g})"


def batch_of(clips: np.ndarray, batch: int) -> np.ndarray:
    reps = -(-batch // len(clips))
    return np.ascontiguousarray(np.concatenate([clips] * reps)[:batch])


def bench_backend(backend: str, precision: str, model_dir: Path, checkpoint: Checkpoint | None, clips: np.ndarray,
                  reference: np.ndarray, s: BenchSettings) -> list[Row]:
    """All batch sizes of one backend at one precision (one load, one agreement check)."""
    rows = [Row(backend, precision, b) for b in s.batches]
    try:
        with PeakMemory() as memory:
            run, device, path = load_backend(backend, precision, model_dir, checkpoint, s.threads)
            checked = agreement(run, clips, reference)
            timings = {b: time_calls(run, batch_of(clips, b), s.warmup, s.iters) for b in s.batches}
    except Unavailable as exc:
        return [Row(backend, precision, s.batches[0], status="unavailable", reason=str(exc))]
    except Exception as exc:  # a backend that breaks is a row, not a crashed benchmark
        for row in rows:
            row.status, row.reason = "FAILED", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return rows
    finally:
        gc.collect()
    for row in rows:
        stats = percentiles(timings[row.batch])
        row.device, row.artifact = device, str(path) if path else ""
        row.size_mb = round(path.stat().st_size / 2**20, 2) if path and path.is_file() else None
        row.p50_ms, row.p95_ms, row.p99_ms, row.mean_ms = (round(stats[k], 3) for k in
                                                           ("p50_ms", "p95_ms", "p99_ms", "mean_ms"))
        row.clips_per_s = round(row.batch * 1e3 / stats["mean_ms"], 2)
        row.peak_mem_mb = memory.added_mb
        row.max_abs_err, row.max_prob_err, row.top1_agreement = (checked[k] for k in
                                                                 ("max_abs_err", "max_prob_err", "top1_agreement"))
        row.agreement_clips = len(clips)
        judge(row)
    return rows


# --- inputs ---------------------------------------------------------------------------------------


def find_reference(model_dir: Path, checkpoint: Path | None) -> tuple[ArtifactInfo, Path | None]:
    """The metadata of the folder's artifacts, and the checkpoint they were exported from."""
    if not model_dir.is_dir():
        raise BenchError(f"--model {model_dir}: expected the folder `c3d-rt export` wrote (c3d.onnx, c3d.ts, ...).")
    candidates = [model_dir / name for name, _ in FORMATS.values() if (model_dir / name).is_file()]
    if not candidates:
        raise BenchError(f"--model {model_dir}: holds none of {', '.join(n for n, _ in FORMATS.values())}. "
                         "Run `c3d-rt export CKPT --out DIR` first.")
    info = read_artifact_info(candidates[0])
    return info, checkpoint or (Path(info.source_path) if info.source_path else None)


def agreement_clips(info: ArtifactInfo, checkpoint: Checkpoint | None, n: int) -> tuple[np.ndarray, str]:
    """Real held-out clips of the checkpoint's data set; synthetic motion clips when it has none here."""
    from .export import data_sets_for, real_clips
    from .synth import synthetic_clips

    if checkpoint is not None:
        calib_set, held_out = data_sets_for(checkpoint, info.preprocessing, None)
        clips, _ = real_clips(held_out if held_out is not None else calib_set, n)
        if len(clips):
            return clips, "held-out split" if held_out is not None else "training split"
    return synthetic_clips(n, info.preprocessing), "synthetic motion clips (no data set found)"


def reference_logits(checkpoint: Checkpoint | None, model_dir: Path, clips: np.ndarray) -> tuple[np.ndarray, str]:
    """Eager fp32 on the CPU (no TF32, whatever the GPU) is the reference; without the checkpoint, ONNX Runtime
    CPU fp32 stands in."""
    if checkpoint is not None:
        return run_batched(eager_runner(checkpoint.build_model()), clips), "eager fp32 (CPU)"
    run, _ = load_ort(model_dir / ARTIFACT["fp32"], "cpu", None)
    return run_batched(run, clips), "ONNX Runtime CPU fp32 (the source checkpoint was not found; pass --checkpoint)"


def bench_machine() -> dict[str, Any]:
    info = machine_info()
    try:
        import openvino as ov

        info["openvino"] = ov.__version__
    except ImportError:
        info["openvino"] = None
    info.setdefault("gpu", None)
    info["gpu_driver"] = _nvidia_driver()
    return info


def _nvidia_driver() -> str | None:
    path = Path("/proc/driver/nvidia/version")
    if path.is_file():
        return path.read_text().splitlines()[0].strip()
    return None


# --- the whole benchmark -----------------------------------------------------------------------------


def run_bench(model_dir: str | Path = "export", settings: BenchSettings = BenchSettings(), *,
              checkpoint: str | Path | None = None, log: Callable[[str], None] = print) -> BenchReport:
    model_dir = Path(model_dir)
    unknown = [b for b in settings.backends if b not in BACKENDS] + [p for p in settings.precisions
                                                                      if p not in PRECISIONS]
    if unknown:
        raise BenchError(f"unknown backend or precision {', '.join(unknown)}; backends: {', '.join(BACKENDS)}; "
                         f"precisions: {', '.join(PRECISIONS)}")
    info, ckpt_path = find_reference(model_dir, Path(checkpoint) if checkpoint else None)
    ckpt = load_checkpoint(ckpt_path) if ckpt_path is not None and ckpt_path.is_file() else None  # loaded once
    clips, clips_source = agreement_clips(info, ckpt, settings.clips)
    reference, reference_name = reference_logits(ckpt, model_dir, clips)
    report = BenchReport(str(model_dir), reference_name, clips_source, asdict(settings), bench_machine())
    log(f"reference: {reference_name} on {len(clips)} {clips_source}; batches {list(settings.batches)}, "
        f"{settings.warmup} warm-up + {settings.iters} timed calls each")
    for backend in settings.backends:
        for precision in (p for p in settings.precisions if p in SUPPORTED[backend]):
            rows = bench_backend(backend, precision, model_dir, ckpt, clips, reference, settings)
            report.rows.extend(rows)
            log(_progress_line(rows))
    if settings.e2e:
        report.e2e = run_e2e(model_dir, settings, log)
    return report


def run_e2e(model_dir: Path, s: BenchSettings, log: Callable[[str], None]) -> list[dict]:
    """The live pipeline on a paced synthetic camera, for each ONNX precision present."""
    from .runtime import RunSettings, run_live

    results = []
    for precision in ("fp32", "fp16", "int8"):
        path = model_dir / ARTIFACT[precision]
        if precision not in s.precisions or not path.is_file():
            continue
        frames = max(32, int(s.e2e_seconds * s.e2e_fps))
        summary = run_live(path, f"synthetic@{s.e2e_fps:g}", RunSettings(show=False, max_frames=frames),
                           log=lambda _m: None)
        g2l, infer, over = (summary.latency_ms[k] for k in ("glass_to_label", "inference", "overhead"))
        results.append({"precision": precision, "provider": summary.provider, "fps": s.e2e_fps,
                        "frames": summary.frames_read, "frames_dropped": summary.frames_dropped,
                        "predictions": summary.predictions, "predictions_per_s": summary.predictions_per_s,
                        "windows_dropped": summary.windows_dropped,
                        **{f"g2l_{k}": g2l[k] for k in ("p50_ms", "p95_ms", "p99_ms")},
                        "inference_p50_ms": infer["p50_ms"], "overhead_p50_ms": over["p50_ms"],
                        "overhead_p99_ms": over["p99_ms"]})
        log(f"e2e {precision} on {summary.provider}: glass-to-label p50 {g2l['p50_ms']:.1f} ms, "
            f"p99 {g2l['p99_ms']:.1f} ms; {summary.predictions_per_s:.1f} predictions/s; "
            f"{summary.frames_dropped} frames dropped")
    return results


def headline_ratios(rows: list[Row], batch: int = 1) -> dict[str, float | str | None]:
    """Batch-1 p50 ratios that the project tracks (None where a path did not run)."""
    p50 = {(r.backend, r.precision): r.p50_ms for r in rows if r.batch == batch and r.status == "ok"}
    ratio = lambda a, b: round(p50[a] / p50[b], 3) if a in p50 and b in p50 else None  # noqa: E731
    ours = {k: v for k, v in p50.items() if k[0].startswith("ort-")}  # what `c3d-rt webcam` runs
    openvino = {k: v for k, v in p50.items() if k[0] == "openvino"}
    best_ours = min(ours, key=ours.get) if ours else None
    best_ov = min(openvino, key=openvino.get) if openvino else None
    return {
        "ort_fp32_over_eager_fp32": ratio(("ort-cpu", "fp32"), ("eager", "fp32")),
        "ort_int8_over_ort_fp32": ratio(("ort-cpu", "int8"), ("ort-cpu", "fp32")),
        "best_ort": "/".join(best_ours) if best_ours else None,
        "best_openvino": "/".join(best_ov) if best_ov else None,
        "best_ort_over_best_openvino": ratio(best_ours, best_ov) if best_ours and best_ov else None,
    }


# --- output ---------------------------------------------------------------------------------------------


def _cell(value, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def _progress_line(rows: list[Row]) -> str:
    r = rows[0]
    if r.status != "ok" and r.p50_ms is None:
        return f"  {r.backend:<13} {r.precision:<5} {r.status}: {r.reason}"
    speeds = ", ".join(f"b{x.batch} {x.p50_ms:.1f} ms" for x in rows)
    return f"  {r.backend:<13} {r.precision:<5} {r.status} {speeds}; top-1 agreement {r.top1_agreement:.1%}"


COLUMNS = ("backend", "precision", "device", "batch", "status", "size MB", "p50 ms", "p95 ms", "p99 ms", "clips/s",
           "+mem MB", "max|dprob|", "top-1 agree")


def _row_cells(r: Row) -> list[str]:
    return [r.backend, r.precision, r.device, str(r.batch), r.status, _cell(r.size_mb, ".1f"), _cell(r.p50_ms, ".2f"),
            _cell(r.p95_ms, ".2f"), _cell(r.p99_ms, ".2f"), _cell(r.clips_per_s, ".1f"), _cell(r.peak_mem_mb, ".0f"),
            _cell(r.max_prob_err, ".1e"), _cell(r.top1_agreement, ".1%")]


def format_table(report: BenchReport) -> str:
    cells = [list(COLUMNS)] + [_row_cells(r) for r in report.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i > 4 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    notes = {(r.backend, r.precision): r.reason for r in report.rows if r.reason}
    lines += [f"  {b} {p}: {why}" for (b, p), why in notes.items()]
    ratios = headline_ratios(report.rows)
    lines.append("batch-1 ratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items() if v is not None))
    for e in report.e2e:
        lines.append(f"e2e {e['precision']} ({e['provider']}, {e['fps']:g} fps source): glass-to-label p50 "
                     f"{e['g2l_p50_ms']:.1f} / p95 {e['g2l_p95_ms']:.1f} / p99 {e['g2l_p99_ms']:.1f} ms, "
                     f"{e['predictions_per_s']:.1f} predictions/s, frames dropped {e['frames_dropped']}, runtime "
                     f"overhead p50 {e['overhead_p50_ms']:.2f} ms")
    return "\n".join(lines)


def format_markdown(report: BenchReport) -> str:
    m = report.machine
    head = (f"# c3d-rt bench: {report.model_dir}\n\n"
            f"- machine: {m.get('cpu')} ({m.get('cores')} cores), GPU {m.get('gpu') or 'none'}, "
            f"driver {m.get('gpu_driver') or 'none'}\n"
            f"- versions: python {m.get('python')}, torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}, "
            f"openvino {m.get('openvino')}, c3d-rt {m.get('c3d_rt')}; date {m.get('date')}\n"
            f"- agreement reference: {report.reference}, on {report.settings['clips']} {report.clips_source}\n"
            f"- {report.settings['warmup']} warm-up and {report.settings['iters']} timed calls per row; threads: "
            f"{report.settings['threads'] or 'all cores'}\n\n")
    table = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    table += ["| " + " | ".join(_row_cells(r)) + " |" for r in report.rows]
    notes = {(r.backend, r.precision): r.reason for r in report.rows if r.reason}
    body = "\n".join(table) + "\n\n" + "".join(f"- {b} {p}: {why}\n" for (b, p), why in notes.items())
    ratios = headline_ratios(report.rows)
    body += "\nBatch-1 p50 ratios: " + ", ".join(f"`{k}` {v}" for k, v in ratios.items()) + "\n"
    if report.e2e:
        keys = ("precision", "provider", "fps", "frames", "frames_dropped", "predictions_per_s", "windows_dropped",
                "g2l_p50_ms", "g2l_p95_ms", "g2l_p99_ms", "inference_p50_ms", "overhead_p50_ms")
        body += "\n## Live pipeline (paced synthetic camera)\n\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys)
        body += "".join("\n| " + " | ".join(_cell(e[k], ".2f") if isinstance(e[k], float) else str(e[k])
                                             for k in keys) + " |" for e in report.e2e) + "\n"
    return head + body


def save_plot(report: BenchReport, path: str | Path) -> Path:
    """Latency p50 against batch size, one line per backend and precision (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in report.rows:
        if r.status != "unavailable" and r.p50_ms is not None:
            series.setdefault(f"{r.backend} {r.precision}", []).append((r.batch, r.p50_ms))
    for name, points in sorted(series.items()):
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size (clips)")
    ax.set_ylabel("latency p50 per call (ms)")
    ax.set_title(f"C3D latency by backend — {report.machine.get('cpu', '')}"[:80], fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def save_outputs(report: BenchReport, json_path=None, markdown_path=None, plot_path=None) -> None:
    from .checkpoint import atomic_write_text

    if json_path:
        atomic_write_text(json.dumps(report.to_dict(), indent=2) + "\n", Path(json_path))
    if markdown_path:
        atomic_write_text(format_markdown(report), Path(markdown_path))
    if plot_path:
        save_plot(report, plot_path)


def parse_names(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise BenchError(f"unknown {what} {', '.join(unknown) or repr(text)}; choose from {', '.join(allowed)} "
                         "(comma-separated)")
    return names


def parse_batches(text: str) -> tuple[int, ...]:
    try:
        batches = tuple(sorted({int(b) for b in text.split(",") if b.strip()}))
    except ValueError:
        batches = ()
    if not batches or batches[0] < 1:
        raise BenchError(f"--batch {text!r}: expected positive batch sizes, comma-separated (e.g. 1,8,32)")
    return batches


def device_slug(machine: dict[str, Any] | None = None) -> str:
    """A file-name-safe name of the machine: the GPU if there is one, else the CPU and its core count."""
    import re

    m = machine or bench_machine()
    name = m.get("gpu") or f"{m.get('cpu', 'cpu')}-{m.get('cores')}c"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
