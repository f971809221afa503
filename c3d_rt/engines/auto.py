"""``--engine auto``: time every proven engine x precision that runs here, take the fastest, remember it.

Candidates are the plans (see :mod:`.registry`) whose library and device exist
and whose file the exporter proved equivalent at that precision (``report.json``
beside the file); the eager checkpoint is the reference itself. Each is loaded,
warmed up and timed for a few batch-1 calls (``serve``: its batch size) with the options the caller will
use. The choice and its timing table are cached, keyed by the files' SHA-256, the
CPU (with its speed flags) and GPU, the library versions and the load options; a
cache entry that cannot be read or no longer loads is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..artifacts.formats import FORMATS, artifact_sha256
from ..artifacts.info import OUTPUT_NAME
from ..core.errors import describe
from ..core.fileio import read_json, user_cache_file, write_json_quietly
from .base import Engine, EngineError, EngineUnavailable, Plan, layer_hint, time_calls
from .registry import ENGINES, gpu_available, load_plan
from .resolve import availability, plans, resolve, unproven

CACHE_FILE = "auto.json"


@dataclass
class Trial:
    key: str  # engine/precision/device
    file: str
    p50_ms: float | None = None
    status: str = "ok"  # ok, skipped, failed
    reason: str = ""


@dataclass
class AutoChoice:
    chosen: str
    trials: list[Trial] = field(default_factory=list)
    cached: bool = False
    date: str = ""
    fallback: str = ""  # said when auto wanted a GPU and could not have one
    batch: int = 1  # clips per call in the timing

    def format(self) -> str:
        head = f"auto chose {self.chosen}" + (f" (cached choice from {self.date})" if self.cached else "")
        rows = [f"  {t.key:<24} {f'{t.p50_ms:9.2f} ms' if t.p50_ms is not None else '        -   '}  "
                f"{t.status}{': ' + t.reason if t.reason else ''}" for t in self.trials]
        return "\n".join([head + f"; batch-{self.batch} p50 of each candidate:"] + rows
                         + ([self.fallback] if self.fallback else []))


def candidates(model: Path, devices: tuple[str, ...], checkpoint: Path | None,
               layer: str = OUTPUT_NAME) -> tuple[list[Plan], list[Trial]]:
    """(plans worth timing, plans left out with the reason), of those that give ``layer``."""
    folder = model if model.is_dir() else model.parent
    chosen, skipped = [], []
    for plan in plans(model, checkpoint=checkpoint, devices=devices, layer=layer):
        if ENGINES[plan.engine].remote:  # a server is used only when named (--engine triton --triton-url)
            continue
        why = availability(plan) or unproven(plan, folder)
        if why:
            skipped.append(Trial(plan.key, plan.path.name, status="skipped", reason=why))
        else:
            chosen.append(plan)
    return chosen, skipped


def choose(model: str | Path, device: str = "auto", *, precision: str | tuple[str, ...] = "auto",
           checkpoint: str | Path | None = None, iters: int = 5, use_cache: bool = True,
           log: Callable[[str], None] = print, batch: int = 1, layer: str = OUTPUT_NAME,
           **options) -> tuple[Engine, AutoChoice]:
    """Load the fastest proven engine for ``model`` (a folder or a file) on ``device`` (auto, cpu or cuda),
    among all precisions or the ones given (``bench --precision fp32,int8``), timed at ``batch`` clips a call
    (``serve`` runs batches); with ``layer`` fc6 or fc7, among those whose file gives it (``Engine.layers``)."""
    model = Path(model)
    checkpoint = Path(checkpoint) if checkpoint else None
    devices, fallback = _devices(device)
    plans_to_time, skipped = candidates(model, devices, checkpoint, layer)
    if precision != "auto":
        wanted = (precision,) if isinstance(precision, str) else tuple(precision)
        skipped += [Trial(p.key, p.path.name, status="skipped", reason=f"not {' or '.join(wanted)}")
                    for p in plans_to_time if p.precision not in wanted]
        plans_to_time = [p for p in plans_to_time if p.precision in wanted]
    if not plans_to_time:
        raise EngineUnavailable(_nothing_to_time(model, devices, skipped, checkpoint, layer))
    key = cache_key(plans_to_time, {**options, **({"batch": batch} if batch != 1 else {}),
                                    **({"layer": layer} if layer != OUTPUT_NAME else {})})
    if use_cache:
        cached = _load_cached(key, plans_to_time, options)
        if cached is not None:
            engine, choice = cached
            choice.fallback = fallback
            return engine, choice
    engine, trials = _time_all(plans_to_time, iters, log, options, batch)
    choice = AutoChoice(engine.key, sorted(trials, key=_order) + skipped, date=time.strftime("%Y-%m-%d %H:%M"),
                        fallback=fallback, batch=batch)
    if use_cache:
        _store(key, choice)
    return engine, choice


def _nothing_to_time(model: Path, devices: tuple[str, ...], skipped: list[Trial], checkpoint: Path | None,
                     layer: str = OUTPUT_NAME) -> str:
    """Why auto has no candidate: each plan left out with its reason, or what the folder lacks (never an empty list).

    ``skipped`` holds the plans on ``devices`` that cannot run or are unproven; without any, the folder holds no
    model file, or only what runs on a server (named, never auto's pick) or on another device."""
    where = "/".join(devices)
    if skipped:
        return (f"{model}: auto found no proven engine that runs here on {where}:\n"
                + "\n".join(f"  {t.key}: {t.reason}" for t in skipped)
                + "\nName an engine to run a file unproven (e.g. --engine ort), prove one with `c3d-rt verify FILE` "
                "(it records the proof beside the file), or export again with `c3d-rt export CKPT --out DIR`.")
    elsewhere = [p.key for p in plans(model, checkpoint=checkpoint, layer=layer)]
    if not elsewhere and layer != OUTPUT_NAME:
        return f"{model}: holds nothing that gives {layer} for auto to choose from. {layer_hint(layer)}"
    if elsewhere:
        return (f"{model}: auto found nothing to run on {where}: it holds only {', '.join(elsewhere)}, which run on a "
                "server (name it: --engine triton --triton-url URL) or on another --device.")
    return (f"{model}: holds no model file for auto to choose from (expected one of "
            f"{', '.join(f.file for f in FORMATS.values())}). Export one with `c3d-rt export CKPT --out DIR`, or "
            "pass --model PATH.")


def _devices(device: str) -> tuple[tuple[str, ...], str]:
    if device == "cpu":
        return ("cpu",), ""
    if device == "cuda":
        if not gpu_available():
            raise EngineUnavailable("--device cuda: no usable NVIDIA GPU here (no NVIDIA driver: libcuda.so.1 not "
                                    "found); use --device cpu or --device auto")
        return ("cuda",), ""
    if gpu_available():
        return ("cuda", "cpu"), ""
    return ("cpu",), "no NVIDIA GPU here: auto looked at CPU engines only"


def _time_all(to_time: list[Plan], iters: int, log, options, batch: int = 1) -> tuple[Engine, list[Trial]]:
    best: tuple[float, Engine] | None = None
    trials = []
    for plan in to_time:
        trial = Trial(plan.key, plan.path.name)
        trials.append(trial)
        try:
            engine = load_plan(plan, **options)
        except Exception as exc:  # an engine that cannot load is a failed trial, not a failed run
            trial.status, trial.reason = "failed", describe(exc)
            continue
        try:
            clips = np.zeros((batch, *engine.input_shape), np.float32)
            trial.p50_ms = round(float(np.median(time_calls(engine, clips, warmup=2, iters=iters))), 3)
        except Exception as exc:  # an engine that breaks while timing is a failed trial, not a failed run
            trial.status, trial.reason = "failed", describe(exc)
            engine.close()
            continue
        log(f"  auto: {plan.key:<24} p50 {trial.p50_ms:.2f} ms" + (f" at batch {batch}" if batch > 1 else ""))
        if best is None or trial.p50_ms < best[0]:
            if best is not None:
                best[1].close()
            best = (trial.p50_ms, engine)
        else:
            engine.close()
    if best is None:
        raise EngineError("auto: every candidate engine failed to load or run:\n"
                          + "\n".join(f"  {t.key}: {t.reason}" for t in trials))
    return best[1], trials


def _order(trial: Trial) -> float:
    return trial.p50_ms if trial.p50_ms is not None else float("inf")


# --- the cache -----------------------------------------------------------------------------------------


def machine_fingerprint() -> dict:
    """What makes one engine faster than another: the CPU (with its speed flags), the GPU, the versions."""
    from ..core.machine import machine_info

    return {k: v for k, v in machine_info().items() if k not in ("date", "platform")}


def cache_key(to_time: list[Plan], options: dict) -> str:
    files = [[plan.key, str(plan.path.resolve()), artifact_sha256(plan.path)] for plan in to_time]
    payload = {"files": files, "machine": machine_fingerprint(), "options": {k: str(v) for k, v in options.items()}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _load_cached(key: str, to_time: list[Plan], options: dict) -> tuple[Engine, AutoChoice] | None:
    entry = read_json(user_cache_file(CACHE_FILE), {}).get(key)
    try:
        trials = [Trial(t["key"], t["file"], None if t["p50_ms"] is None else float(t["p50_ms"]), str(t["status"]),
                        str(t["reason"])) for t in entry["trials"]]
        choice = AutoChoice(str(entry["chosen"]), trials, cached=True, date=str(entry["date"]),
                            batch=int(entry.get("batch", 1)))
        plan = next(p for p in to_time if p.key == choice.chosen)
    except (TypeError, KeyError, ValueError, StopIteration):
        return None  # no entry, or a corrupt one: time again
    try:
        return load_plan(plan, **options), choice
    except Exception:  # a cached choice that no longer loads: time again
        return None


def _store(key: str, choice: AutoChoice) -> None:
    path = user_cache_file(CACHE_FILE)
    data = read_json(path, {})
    entry = asdict(choice)
    entry.pop("cached", None)
    entry.pop("fallback", None)
    data[key] = entry
    write_json_quietly(path, data)


def open_engine(model: str | Path, engine: str = "auto", precision: str = "auto", device: str = "auto", *,
                checkpoint: str | Path | None = None, layer: str = OUTPUT_NAME, log: Callable[[str], None] = print,
                **options) -> Engine:
    """What ``--model/--engine/--precision/--device`` mean on every command: the engine named, or ``auto``'s
    choice (whose timing table is printed); one whose file gives ``layer`` (logits; fc6, fc7: ``Engine.layers``)."""
    if engine != "auto":
        plan = resolve(Path(model), engine, precision, device, checkpoint=Path(checkpoint) if checkpoint else None,
                       layer=layer)
        why = unproven(plan, Path(model) if Path(model).is_dir() else plan.path.parent)
        if why:
            log(f"note: {plan.key} on {plan.path.name} is {why}")
        return load_plan(plan, **options)
    chosen, choice = choose(model, device, precision=precision, checkpoint=checkpoint, log=log, layer=layer,
                            **options)
    log(choice.format())
    return chosen
