"""`c3d-rt bench`: every way of running an exported C3D, side by side, with speed, memory and agreement.

Each row is one engine (see :mod:`c3d_rt.engines`) at one precision, on one
device and batch size, loaded and called exactly as the live recognizer does.
Every row is checked against the eager fp32 model on the same real clips with
the shared equivalence rules before its speed counts: an engine that computes
something else is marked FAILED and the command exits non-zero. One that is not
here gets an unavailable row that says why; a batch that could not run (out of
memory, an engine error) an ERROR row that says why (also a non-zero exit, with
another message: it says nothing about what the engine computes). A batch whose
clips cannot fit in memory is refused before anything runs. Two more rows:
OpenVINO with its defaults on c3d.onnx (the peer a user would try first) and
whatever ``--engine auto`` picks among the precisions and devices asked for.
``--e2e`` runs `c3d-rt webcam` on the synthetic camera in a process of its own.

Timings: warm-up first, then ``iters`` timed calls of the one timer
(:func:`c3d_rt.engines.time_calls`), each synchronised with the device. Paths are
compared in one run, as ratios, because shared machines are noisy.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import shlex
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..artifacts.formats import CHECKPOINT, FORMATS, artifact_size_mb
from ..core.console import filter_harmless_warnings
from ..core.errors import C3DError
from ..core.machine import library_installed
from ..engines import ENGINES, Engine, EngineUnavailable, Plan, engine_options, load_plan, plans, time_calls
from ..engines.equivalence import Agreement, judge, run_batched
from ..engines.resolve import availability
from ..runtime import RunSettings, RunSummary, run_live
from ..runtime.stats import percentiles
from .memory import check_batches, could_not_run
from .reference import agreement_clips, find_reference, reference_logits
from .report import progress_line
from .rows import AUTO, ERROR, FAILED, PEER, BenchReport, BenchSettings, Row, bench_machine, floor_share


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
    size of ``rows``; each row gets the verdict of the engine it timed.

    An engine that is not here is one unavailable row. A batch that cannot run (out of memory, an engine that
    breaks) is an ERROR row that says why, and the other batches are still measured; an engine that cannot load
    makes every batch of it an ERROR. Only a row that ran and computed something else is FAILED."""
    verdicts: dict[int, Agreement] = {}
    loaded: dict[int, Engine] = {}
    clip_shape = tuple(clips.shape[1:])
    try:
        with PeakMemory() as memory:
            for i, row in enumerate(rows):
                try:
                    engine = engine_for(row.batch)
                except EngineUnavailable:
                    raise
                except Exception as exc:  # it cannot load: none of its batches runs
                    for r in rows[i:]:
                        r.status, r.reason = ERROR, could_not_run(exc, r, clip_shape)
                    break
                loaded[id(engine)] = engine
                try:
                    _measure_row(row, engine, clips, reference, s, verdicts)
                except Exception as exc:  # an engine that breaks is a row, not a crashed benchmark
                    row.status, row.reason = ERROR, could_not_run(exc, row, clip_shape)
    except EngineUnavailable as exc:
        return [Row(rows[0].engine, rows[0].precision, rows[0].device, rows[0].batch, status="unavailable",
                    reason=one_line(exc))]
    finally:
        for engine in loaded.values():
            engine.close()
        gc.collect()
    for row in rows:
        if row.p50_ms is not None:
            row.peak_mem_mb = memory.added_mb
    return rows


def one_line(exc: BaseException) -> str:
    """An exception's whole message on one line: auto's names each candidate it left out on a line of its own."""
    text = ""
    for part in filter(None, (line.strip() for line in str(exc).splitlines())):
        text += ("" if not text else " " if text.endswith(":") else "; ") + part
    return text


def _measure_row(row: Row, engine: Engine, clips: np.ndarray, reference: np.ndarray, s: BenchSettings,
                 verdicts: dict[int, Agreement]) -> None:
    """Time ``engine`` at ``row.batch`` and give the row its agreement (checked once per engine)."""
    row.detail, row.artifact, row.precision = engine.detail, str(engine.path), engine.precision
    if id(engine) not in verdicts:
        verdicts[id(engine)] = judge(reference, run_batched(engine, clips), engine.precision)
    agreement = verdicts[id(engine)]
    stats = percentiles(time_calls(engine, batch_of(clips, row.batch), s.warmup, s.iters))
    path = Path(row.artifact)
    row.size_mb = artifact_size_mb(path) if path.is_file() else None
    row.p50_ms, row.p95_ms, row.p99_ms, row.mean_ms = (round(stats[k], 3) for k in
                                                       ("p50_ms", "p95_ms", "p99_ms", "mean_ms"))
    row.clips_per_s = float(f"{row.batch * 1e3 / stats['mean_ms']:.4g}")  # 4 digits, not 2 decimals: 1.85 of 1.8547
    row.max_abs_err, row.max_prob_err = agreement.max_abs_err, agreement.max_prob_err
    row.top1_agreement, row.agreement_clips = agreement.top1_agreement, agreement.clips
    if not agreement.ok:
        row.status, row.reason = FAILED, agreement.reason


# --- memory: refuse what cannot fit, and say so when something did not ---------------------------------------------


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
    """What `--engine auto` picks on this machine among the precisions and devices asked for (the live
    recognizer's options), timed like every row."""
    from ..engines.auto import choose

    rows = [Row(AUTO, "-", "-", b) for b in s.batches]
    chosen = None

    def engine_for(_batch: int) -> Engine:
        nonlocal chosen
        if chosen is None:
            options = {"live": True, **({"threads": s.threads} if s.threads else {})}  # as `webcam` loads it
            chosen, choice = choose(model_dir, one_device(s), precision=tuple(s.precisions), checkpoint=checkpoint,
                                    log=lambda _m: None, **options)
            report.auto_choice = asdict(choice)
            for row in rows:
                row.device = chosen.device
        return chosen

    measured = measure(engine_for, rows, clips, reference, s)
    for row in measured:
        row.detail = f"{report.auto_choice.get('chosen', '?')}: {row.detail}"
    return measured


def one_device(s: BenchSettings) -> str:
    """The device of auto's choice and of the --e2e run: the one the bench is asked for, else auto."""
    return s.devices[0] if len(s.devices) == 1 else "auto"


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
    check_batches(settings.batches, info.model_config.input_shape(1)[1:])
    ckpt = None  # loaded once; without torch (the runtime install) the proven fp32 ONNX file is the reference
    if ckpt_path is not None and ckpt_path.is_file() and library_installed("torch"):
        from ..model.checkpoint import load_checkpoint

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
    report.model_gflops = round(info.model_config.gflops, 3)
    for row in report.rows:
        row.floor_share = floor_share(row, report.model_gflops, report.machine.get("matrix_tflops", {}))
    if settings.e2e:
        report.e2e = [run_e2e(model_dir, settings, log)]
    return report


def _add(report: BenchReport, rows: list[Row], log: Callable[[str], None]) -> None:
    report.rows.extend(rows)
    log(progress_line(rows))


def run_e2e(model_dir: Path, s: BenchSettings, log: Callable[[str], None]) -> dict:
    """The live pipeline on the paced synthetic camera, as the `c3d-rt webcam` command it records runs it.

    In a process of its own: this one has loaded and run every engine, and a live run here would measure what they
    left behind as well (torch's thread count is process-wide and ``--threads`` sets it; thread pools, allocator
    caches, a GPU context). On the device the bench was asked for when it names one, and on every core, as
    `webcam` runs (it has no --threads)."""
    frames = max(32, int(s.e2e_seconds * s.e2e_fps))
    source, device = f"synthetic@{s.e2e_fps:g}", one_device(s)
    url = s.triton_url if s.e2e_engine in ENGINES and ENGINES[s.e2e_engine].remote else ""
    command = ["c3d-rt", "webcam", "--model", str(model_dir), "--source", source, "--no-show", "--max-frames",
               str(frames), "--engine", s.e2e_engine, "--precision", s.e2e_precision, "--device", device,
               *(["--triton-url", url] if url else [])]
    note = "a process of its own, every core" + (f"; the rows ran on --threads {s.threads}" if s.threads else "")
    how = {"command": shlex.join(command), "note": note}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            summary = pool.submit(live_summary, str(model_dir), source, frames, s.e2e_engine, s.e2e_precision,
                                  device, url).result()
        except (C3DError, BrokenProcessPool) as exc:  # the rows measured are kept: the run says why it did not
            reason = (one_line(exc) if isinstance(exc, C3DError) else
                      "its process ended before it finished (killed, or out of memory)")
            log(f"e2e could not run: {reason}")
            return {"engine": f"{s.e2e_engine}/{s.e2e_precision}/{device}", "status": ERROR, "reason": reason, **how}
    g2l, infer, over = (summary.latency_ms[k] for k in ("glass_to_label", "inference", "overhead"))
    result = {"engine": summary.engine, "status": "ok", "fps": s.e2e_fps, "frames": summary.frames_read,
              "frames_dropped": summary.frames_dropped, "predictions": summary.predictions,
              "predictions_per_s": summary.predictions_per_s, "windows_dropped": summary.windows_dropped,
              **{f"g2l_{k}": g2l[k] for k in ("p50_ms", "p95_ms", "p99_ms")},
              "inference_p50_ms": infer["p50_ms"], "overhead_p50_ms": over["p50_ms"],
              "overhead_p99_ms": over["p99_ms"], **how}
    log(f"e2e {summary.engine}: glass-to-label p50 {g2l['p50_ms']:.1f} ms, p99 {g2l['p99_ms']:.1f} ms; "
        f"{summary.predictions_per_s:.1f} predictions/s; {summary.frames_dropped} frames dropped ({note})")
    return result


def live_summary(model_dir: str, source: str, frames: int, engine: str, precision: str, device: str,
                 url: str) -> RunSummary:
    """The body of the --e2e process: `c3d-rt webcam --no-show` on ``source`` for ``frames`` frames."""
    filter_harmless_warnings()  # as the `c3d-rt` process does
    return run_live(model_dir, source, RunSettings(show=False, max_frames=frames), engine=engine, precision=precision,
                    device=device, log=lambda _m: None, engine_options=engine_options(engine, url=url or None))
