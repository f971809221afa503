"""`c3d-rt bench`: every way of running an exported C3D, side by side, with speed, memory and agreement.

Each row is one engine (see :mod:`c3d_rt.engines`) at one precision, on one
device and batch size, loaded and called exactly as the live recognizer does.
Every row is checked against the eager fp32 model on the same real clips with
the shared equivalence rules before its speed counts: an engine that computes
something else is marked FAILED and the command exits non-zero. One that cannot
run here gets a row that says why. Two more rows: OpenVINO with its defaults on
c3d.onnx (the peer a user would try first) and whatever ``--engine auto`` picks.

Timings: warm-up first, then ``iters`` timed calls of the one timer
(:func:`c3d_rt.engines.time_calls`), each synchronised with the device. Paths are
compared in one run, as ratios, because shared machines are noisy.
"""

from __future__ import annotations

import gc
import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .artifacts import ArtifactInfo
from .engines import (ENGINES, PRECISIONS, Engine, EngineUnavailable, Plan, engine_options, load_plan, plans,
                      time_calls)
from .engines.equivalence import judge, run_batched
from .engines.registry import (CHECKPOINT, DEVICES, FORMATS, artifact_size_mb, availability, folder_files,
                               library_installed, read_info, source_checkpoint)
from .errors import C3DError, describe
from .fileio import atomic_path
from .runtime.stats import percentiles

PEER = "openvino-defaults"  # OpenVINO compiled with no settings on c3d.onnx: what a user would try first
AUTO = "auto"


class BenchError(C3DError):
    """Bad benchmark arguments or a model folder without usable artifacts."""


@dataclass
class Row:
    engine: str
    precision: str
    device: str
    batch: int
    status: str = "ok"  # ok, unavailable, FAILED
    reason: str = ""
    detail: str = ""  # how the engine ran (provider, hints, what auto chose)
    artifact: str = ""
    size_mb: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    clips_per_s: float | None = None
    peak_mem_mb: float | None = None  # resident memory added while loading and running this engine
    max_abs_err: float | None = None  # logits, against eager fp32
    max_prob_err: float | None = None
    top1_agreement: float | None = None
    agreement_clips: int = 0

    @property
    def key(self) -> str:
        return f"{self.engine}/{self.precision}/{self.device}"


@dataclass
class BenchSettings:
    engines: tuple[str, ...] = tuple(n for n, e in ENGINES.items() if not e.remote)
    triton_url: str = ""  # the server of the triton rows
    precisions: tuple[str, ...] = PRECISIONS
    devices: tuple[str, ...] = DEVICES
    batches: tuple[int, ...] = (1, 8)
    threads: int | None = None  # None: every core
    warmup: int = 3
    iters: int = 20
    clips: int = 32  # real clips for the agreement check
    auto: bool = True  # add the row of what `--engine auto` picks
    peer: bool = True  # add OpenVINO with its defaults on c3d.onnx, the peer the targets compare with
    e2e: bool = False
    e2e_engine: str = AUTO
    e2e_precision: str = "auto"
    e2e_seconds: float = 10.0
    e2e_fps: float = 30.0
    torch_variants: tuple[str, ...] = ()  # eager options measured as rows of their own: channels_last, compile


@dataclass
class BenchReport:
    model_dir: str
    reference: str
    clips_source: str
    settings: dict
    machine: dict
    rows: list[Row] = field(default_factory=list)
    auto_choice: dict = field(default_factory=dict)
    e2e: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.status == "FAILED"]

    def to_dict(self) -> dict[str, Any]:
        return {"model_dir": self.model_dir, "reference": self.reference, "clips_source": self.clips_source,
                "settings": self.settings, "machine": self.machine, "rows": [asdict(r) for r in self.rows],
                "auto_choice": self.auto_choice, "e2e": self.e2e, "ratios": headline_ratios(self)}


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


def batch_of(clips: np.ndarray, batch: int) -> np.ndarray:
    reps = -(-batch // len(clips))
    return np.ascontiguousarray(np.concatenate([clips] * reps)[:batch])


def options_for(plan: Plan, batch: int, threads: int | None) -> dict:
    """Engine options for timing one batch size: OpenVINO takes its throughput hint for batches."""
    options: dict[str, Any] = {"threads": threads}
    if plan.engine == "openvino":
        options["mode"] = "latency" if batch == 1 else "throughput"
    return options


def _load(plan: Plan, options: dict) -> Engine:
    """Load one row's engine; a server's engine is a row of the device its instances run on."""
    engine = load_plan(plan, **options)
    if engine.device != plan.device:
        engine.close()
        raise EngineUnavailable(f"the server runs the model on {engine.device}, not {plan.device}")
    return engine


def measure(engine_for: Callable[[int], Engine], rows: list[Row], clips: np.ndarray, reference: np.ndarray,
            s: BenchSettings) -> list[Row]:
    """Load (through ``engine_for(batch)``), check the agreement of every engine loaded, and time every batch
    size of ``rows``; each row gets the verdict of the engine it timed."""
    timings, verdicts, loaded = {}, {}, {}
    try:
        with PeakMemory() as memory:
            for row in rows:
                engine = engine_for(row.batch)
                if id(engine) not in loaded:
                    loaded[id(engine)] = engine
                    verdicts[id(engine)] = judge(reference, run_batched(engine, clips), engine.precision)
                row.detail, row.artifact, row.precision = engine.detail, str(engine.path), engine.precision
                timings[row.batch] = (time_calls(engine, batch_of(clips, row.batch), s.warmup, s.iters),
                                      verdicts[id(engine)])
    except EngineUnavailable as exc:
        return [Row(rows[0].engine, rows[0].precision, rows[0].device, rows[0].batch, status="unavailable",
                    reason=describe(exc).split(": ", 1)[-1])]
    except Exception as exc:  # an engine that breaks is a row, not a crashed benchmark
        for row in rows:
            row.status, row.reason = "FAILED", describe(exc)
        return rows
    finally:
        for engine in loaded.values():
            engine.close()
        gc.collect()
    for row in rows:
        samples, agreement = timings[row.batch]
        stats = percentiles(samples)
        path = Path(row.artifact)
        row.size_mb = artifact_size_mb(path) if path.is_file() else None
        row.p50_ms, row.p95_ms, row.p99_ms, row.mean_ms = (round(stats[k], 3) for k in
                                                           ("p50_ms", "p95_ms", "p99_ms", "mean_ms"))
        row.clips_per_s = float(f"{row.batch * 1e3 / stats['mean_ms']:.4g}")  # 4 digits, not 2 decimals: 1.85 of 1.8547
        row.peak_mem_mb = memory.added_mb
        row.max_abs_err, row.max_prob_err = agreement.max_abs_err, agreement.max_prob_err
        row.top1_agreement, row.agreement_clips = agreement.top1_agreement, agreement.clips
        if not agreement.ok:
            row.status, row.reason = "FAILED", agreement.reason
    return rows


def bench_plan(plan: Plan, clips: np.ndarray, reference: np.ndarray, s: BenchSettings,
               variant: str = "") -> list[Row]:
    """All batch sizes of one engine at one precision on one device (one load per set of options);
    ``variant`` is a torch option measured as its own rows (``torch+compile``)."""
    label = f"{plan.engine}+{variant}" if variant else plan.engine
    rows = [Row(label, plan.precision, plan.device, b) for b in s.batches]
    why = availability(plan)
    if why:
        return [Row(label, plan.precision, plan.device, s.batches[0], status="unavailable", reason=why)]
    cache: dict[str, Engine] = {}

    def engine_for(batch: int) -> Engine:
        options = {**options_for(plan, batch, s.threads), **({variant: True} if variant else {}),
                   **({"url": s.triton_url} if ENGINES[plan.engine].remote else {})}
        key = json.dumps(options, sort_keys=True)
        if key not in cache:
            cache[key] = _load(plan, options)
        return cache[key]

    return measure(engine_for, rows, clips, reference, s)


def bench_peer(model_dir: Path, clips: np.ndarray, reference: np.ndarray, s: BenchSettings) -> list[Row]:
    """OpenVINO with no settings at all on c3d.onnx (bf16 by itself on CPUs that have it)."""
    plan = Plan("openvino", "fp32", "cpu", model_dir / FORMATS["onnx"].file, "onnx")
    rows = [Row(PEER, "default", "cpu", b) for b in s.batches]
    why = availability(plan) or ("" if plan.path.is_file() else f"{plan.path.name} not found in {model_dir}")
    if why:
        return [Row(PEER, "default", "cpu", s.batches[0], status="unavailable", reason=why)]
    engine = None

    def engine_for(_batch: int) -> Engine:
        nonlocal engine
        engine = engine or load_plan(plan, mode="defaults", threads=None)
        return engine

    return measure(engine_for, rows, clips, reference, s)


def bench_auto(model_dir: Path, checkpoint: Path | None, clips: np.ndarray, reference: np.ndarray,
               s: BenchSettings, report: BenchReport) -> list[Row]:
    """What `--engine auto` picks on this machine (the live recognizer's options), timed like every row."""
    from .engines.auto import choose

    rows = [Row(AUTO, "-", "-", b) for b in s.batches]
    chosen = None

    def engine_for(_batch: int) -> Engine:
        nonlocal chosen
        if chosen is None:
            options = {"live": True, **({"threads": s.threads} if s.threads else {})}  # as `webcam` loads it
            chosen, choice = choose(model_dir, "auto", checkpoint=checkpoint, log=lambda _m: None, **options)
            report.auto_choice = asdict(choice)
            for row in rows:
                row.device = chosen.device
        return chosen

    measured = measure(engine_for, rows, clips, reference, s)
    for row in measured:
        row.detail = f"{report.auto_choice.get('chosen', '?')}: {row.detail}"
    return measured


# --- inputs ---------------------------------------------------------------------------------------


def find_reference(model_dir: Path, checkpoint: Path | None) -> tuple[ArtifactInfo, Path | None]:
    """The metadata of the folder's artifacts, and the checkpoint they were exported from."""
    if not model_dir.is_dir():
        raise BenchError(f"--model {model_dir}: expected the folder `c3d-rt export` wrote (c3d.onnx, c3d.ts, ...).")
    files = folder_files(model_dir)
    if not files:
        raise BenchError(f"--model {model_dir}: holds none of {', '.join(f.file for f in FORMATS.values())}. "
                         "Run `c3d-rt export CKPT --out DIR` first.")
    info = read_info(next(iter(files.values())))
    return info, checkpoint or source_checkpoint(model_dir)


def agreement_clips(info: ArtifactInfo, checkpoint, n: int) -> tuple[np.ndarray, str]:
    """Real held-out clips of the checkpoint's data set; synthetic motion clips when it has none here."""
    from .synth import synthetic_clips

    if checkpoint is not None:  # a loaded checkpoint: torch is here
        from .export import data_sets_for, real_clips

        calib_set, held_out = data_sets_for(checkpoint, info.preprocessing, None)
        clips, _ = real_clips(held_out if held_out is not None else calib_set, n)
        if len(clips):
            return clips, "held-out split" if held_out is not None else "training split"
    return synthetic_clips(n, info.preprocessing), "synthetic motion clips (no data set found)"


def reference_logits(checkpoint, model_dir: Path, clips: np.ndarray) -> tuple[np.ndarray, str]:
    """Eager fp32 on the CPU (no TF32, whatever the GPU) is the reference; without the checkpoint, ONNX Runtime
    CPU fp32 stands in."""
    if checkpoint is not None:
        from .engines.torch_engines import reference_engine

        return run_batched(reference_engine(checkpoint, checkpoint.build_model()), clips), "eager fp32 (CPU)"
    plan = Plan("ort", "fp32", "cpu", model_dir / FORMATS["onnx"].file, "onnx")
    with load_plan(plan) as engine:
        why = ("the source checkpoint was not found; pass --checkpoint" if library_installed("torch") else
               "torch is not installed, so the checkpoint cannot run")
        return run_batched(engine, clips), f"ONNX Runtime CPU fp32 ({why})"


def bench_machine() -> dict[str, Any]:
    from .machine import machine_info

    return machine_info()


# --- the whole benchmark -----------------------------------------------------------------------------


def planned_rows(model_dir: Path, checkpoint: Path | None, s: BenchSettings) -> list[Plan | Row]:
    """Every engine x precision x device asked for: a plan to measure, or a row that says why not."""
    found = {p.key: p for p in plans(model_dir, checkpoint=checkpoint, devices=s.devices)}
    out: list[Plan | Row] = []
    for name in s.engines:
        spec = ENGINES[name]
        for precision in (p for p in s.precisions if p in spec.formats):
            for device in (d for d in s.devices if d in spec.devices):
                plan = found.get(f"{name}/{precision}/{device}")
                if plan is not None:
                    out.append(plan)
                    continue
                wanted = spec.formats[precision]
                missing = ("no checkpoint (pass --checkpoint)" if wanted == (CHECKPOINT,) else
                           f"{' or '.join(FORMATS[f].file for f in wanted if f != CHECKPOINT)} not found in "
                           f"{model_dir} (export it with `c3d-rt export`)")
                out.append(Row(name, precision, device, s.batches[0], status="unavailable", reason=missing))
    return out


def run_bench(model_dir: str | Path = "export", settings: BenchSettings = BenchSettings(), *,
              checkpoint: str | Path | None = None, log: Callable[[str], None] = print) -> BenchReport:
    model_dir = Path(model_dir)
    info, ckpt_path = find_reference(model_dir, Path(checkpoint) if checkpoint else None)
    ckpt = None  # loaded once; without torch (the runtime install) the proven fp32 ONNX file is the reference
    if ckpt_path is not None and ckpt_path.is_file() and library_installed("torch"):
        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(ckpt_path)
    clips, clips_source = agreement_clips(info, ckpt, settings.clips)
    reference, reference_name = reference_logits(ckpt, model_dir, clips)
    report = BenchReport(str(model_dir), reference_name, clips_source, asdict(settings), bench_machine())
    log(f"reference: {reference_name} on {len(clips)} {clips_source}; batches {list(settings.batches)}, "
        f"{settings.warmup} warm-up + {settings.iters} timed calls each")
    for item in planned_rows(model_dir, ckpt_path, settings):
        if isinstance(item, Row):
            _add(report, [item], log)
            continue
        _add(report, bench_plan(item, clips, reference, settings), log)
        for variant in settings.torch_variants if item.engine == "torch" else ():
            _add(report, bench_plan(item, clips, reference, settings, variant), log)
    if settings.peer:
        _add(report, bench_peer(model_dir, clips, reference, settings), log)
    if settings.auto:
        _add(report, bench_auto(model_dir, ckpt_path, clips, reference, settings, report), log)
    if settings.e2e:
        report.e2e = [run_e2e(model_dir, settings, log)]
    return report


def _add(report: BenchReport, rows: list[Row], log: Callable[[str], None]) -> None:
    report.rows.extend(rows)
    log(_progress_line(rows))


def run_e2e(model_dir: Path, s: BenchSettings, log: Callable[[str], None]) -> dict:
    """The live pipeline on a paced synthetic camera, with the engine asked for (``auto`` by default)."""
    from .runtime import RunSettings, run_live

    frames = max(32, int(s.e2e_seconds * s.e2e_fps))
    summary = run_live(model_dir, f"synthetic@{s.e2e_fps:g}", RunSettings(show=False, max_frames=frames),
                       engine=s.e2e_engine, precision=s.e2e_precision, log=lambda _m: None,
                       engine_options=engine_options(s.e2e_engine, url=s.triton_url))
    g2l, infer, over = (summary.latency_ms[k] for k in ("glass_to_label", "inference", "overhead"))
    result = {"engine": summary.engine, "fps": s.e2e_fps, "frames": summary.frames_read,
              "frames_dropped": summary.frames_dropped, "predictions": summary.predictions,
              "predictions_per_s": summary.predictions_per_s, "windows_dropped": summary.windows_dropped,
              **{f"g2l_{k}": g2l[k] for k in ("p50_ms", "p95_ms", "p99_ms")},
              "inference_p50_ms": infer["p50_ms"], "overhead_p50_ms": over["p50_ms"],
              "overhead_p99_ms": over["p99_ms"]}
    log(f"e2e {summary.engine}: glass-to-label p50 {g2l['p50_ms']:.1f} ms, p99 {g2l['p99_ms']:.1f} ms; "
        f"{summary.predictions_per_s:.1f} predictions/s; {summary.frames_dropped} frames dropped")
    return result


def headline_ratios(report: BenchReport, batch: int = 1) -> dict[str, float | str | None]:
    """Batch-1 p50 ratios that the project tracks (None where a path did not run)."""
    rows = report.rows
    p50 = {r.key: r.p50_ms for r in rows if r.batch == batch and r.status == "ok"}
    ratio = lambda a, b: round(p50[a] / p50[b], 3) if a in p50 and b in p50 else None  # noqa: E731
    auto = next((r for r in rows if r.engine == AUTO and r.batch == batch and r.status == "ok"), None)
    peer = next((r for r in rows if r.engine == PEER and r.batch == batch and r.status == "ok"), None)
    ratios: dict[str, float | str | None] = {
        "ort_fp32_over_torch_fp32": ratio("ort/fp32/cpu", "torch/fp32/cpu"),
        "ort_int8_over_ort_fp32": ratio("ort/int8/cpu", "ort/fp32/cpu"),
        "openvino_int8_over_openvino_fp32": ratio("openvino/int8/cpu", "openvino/fp32/cpu"),
        "auto_choice": report.auto_choice.get("chosen"),
        "auto_over_openvino_defaults": round(auto.p50_ms / peer.p50_ms, 3) if auto and peer else None,
    }
    for e in report.e2e:  # what the live runner adds to the same engine's standalone latency
        standalone = p50.get(e["engine"])
        ratios["live_g2l_over_standalone"] = round(e["g2l_p50_ms"] / standalone, 3) if standalone else None
    return ratios


# --- output ---------------------------------------------------------------------------------------------


def _cell(value, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def _progress_line(rows: list[Row]) -> str:
    r = rows[0]
    if r.status != "ok" and r.p50_ms is None:
        return f"  {r.engine:<17} {r.precision:<7} {r.device:<4} {r.status}: {r.reason}"
    speeds = ", ".join(f"b{x.batch} {x.p50_ms:.1f} ms" for x in rows)
    return (f"  {r.engine:<17} {r.precision:<7} {r.device:<4} {r.status} {speeds}; top-1 agreement "
            f"{r.top1_agreement:.1%}" + (f" ({r.reason})" if r.reason else ""))


COLUMNS = ("engine", "precision", "device", "batch", "status", "size MB", "p50 ms", "p95 ms", "p99 ms", "clips/s",
           "+mem MB", "max|dprob|", "top-1 agree")


def _row_cells(r: Row) -> list[str]:
    return [r.engine, r.precision, r.device, str(r.batch), r.status, _cell(r.size_mb, ".1f"), _cell(r.p50_ms, ".2f"),
            _cell(r.p95_ms, ".2f"), _cell(r.p99_ms, ".2f"), _cell(r.clips_per_s, ".1f"), _cell(r.peak_mem_mb, ".0f"),
            _cell(r.max_prob_err, ".1e"), _cell(r.top1_agreement, ".1%")]


def _notes(report: BenchReport) -> dict[str, str]:
    """engine/precision/device -> why it is unavailable or FAILED, and how each measured engine ran."""
    notes = {r.key: r.reason for r in report.rows if r.reason}
    for r in report.rows:
        if r.detail and r.key not in notes:
            notes[r.key] = r.detail
    return notes


def format_table(report: BenchReport) -> str:
    cells = [list(COLUMNS)] + [_row_cells(r) for r in report.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i > 4 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    lines += [f"  {key}: {why}" for key, why in _notes(report).items()]
    ratios = headline_ratios(report)
    lines.append("batch-1 ratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items() if v is not None))
    for e in report.e2e:
        lines.append(f"e2e {e['engine']} ({e['fps']:g} fps source): glass-to-label p50 "
                     f"{e['g2l_p50_ms']:.1f} / p95 {e['g2l_p95_ms']:.1f} / p99 {e['g2l_p99_ms']:.1f} ms, "
                     f"{e['predictions_per_s']:.1f} predictions/s, frames dropped {e['frames_dropped']}, runtime "
                     f"overhead p50 {e['overhead_p50_ms']:.2f} ms")
    return "\n".join(lines)


def format_markdown(report: BenchReport) -> str:
    m = report.machine
    head = (f"# c3d-rt bench: {report.model_dir}\n\n"
            f"- machine: {m.get('cpu')} ({m.get('cores')} cores; flags {m.get('cpu_flags') or '-'}), "
            f"GPU {m.get('gpu') or 'none'}, driver {m.get('gpu_driver') or 'none'}\n"
            f"- versions: python {m.get('python')}, torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}, "
            f"openvino {m.get('openvino')}, c3d-rt {m.get('c3d_rt')}; date {m.get('date')}\n"
            f"- agreement reference: {report.reference}, on {report.settings['clips']} {report.clips_source}\n"
            f"- {report.settings['warmup']} warm-up and {report.settings['iters']} timed calls per row; threads: "
            f"{report.settings['threads'] or 'all cores'}\n\n")
    table = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    table += ["| " + " | ".join(_row_cells(r)) + " |" for r in report.rows]
    body = "\n".join(table) + "\n\n" + "".join(f"- {key}: {why}\n" for key, why in _notes(report).items())
    ratios = headline_ratios(report)
    body += "\nBatch-1 p50 ratios: " + ", ".join(f"`{k}` {v}" for k, v in ratios.items()) + "\n"
    if report.e2e:
        keys = ("engine", "fps", "frames", "frames_dropped", "predictions_per_s", "windows_dropped",
                "g2l_p50_ms", "g2l_p95_ms", "g2l_p99_ms", "inference_p50_ms", "overhead_p50_ms")
        body += "\n## Live pipeline (paced synthetic camera)\n\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys)
        body += "".join("\n| " + " | ".join(_cell(e[k], ".2f") if isinstance(e[k], float) else str(e[k])
                                             for k in keys) + " |" for e in report.e2e) + "\n"
    return head + body


def save_plot(report: BenchReport, path: str | Path) -> Path:
    """Latency p50 against batch size, one line per engine, precision and device (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in report.rows:
        if r.status != "unavailable" and r.p50_ms is not None:
            series.setdefault(f"{r.engine} {r.precision} {r.device}", []).append((r.batch, r.p50_ms))
    for name, points in sorted(series.items()):
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size (clips)")
    ax.set_ylabel("latency p50 per call (ms)")
    ax.set_title(f"C3D latency by engine — {report.machine.get('cpu', '')}"[:80], fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def save_outputs(report: BenchReport, json_path=None, markdown_path=None, plot_path=None) -> None:
    from .fileio import atomic_write_text

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
