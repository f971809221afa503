"""The batch at which an engine is fastest per clip, measured here the way ``auto`` measures (and cached like it).

Offline work (``c3d-rt predict``, ``c3d-rt features``) has every window at hand, so it runs the batch that gives
the most clips per second. Batches double from 1 while the time per clip keeps falling by more than
``GAIN`` and a call stays within ``CALL_BUDGET_S`` (a full-size C3D on two CPU cores takes about half a second
a clip: batch 64 there would take half a minute a call and gain nothing); a batch that does not fit in memory
ends the search. The choice is cached by the file's SHA-256, the engine, the machine and the library versions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..artifacts.formats import artifact_sha256
from ..core.errors import describe
from ..core.fileio import read_json, user_cache_file, write_json_quietly
from .base import Engine, time_calls

CACHE_FILE = "batch.json"
MAX_BATCH = 256
GAIN = 0.05  # a doubled batch must be at least 5% faster per clip to be worth its memory and latency
CALL_BUDGET_S = 4.0  # no batch whose one call takes longer than this is tried further


@dataclass
class BatchChoice:
    batch: int
    per_clip_ms: dict[int, float] = field(default_factory=dict)  # batch -> median milliseconds a clip
    reason: str = ""
    cached: bool = False

    def format(self) -> str:
        table = ", ".join(f"{b}: {ms:.1f}" for b, ms in sorted(self.per_clip_ms.items()))
        return (f"batch {self.batch} ({self.reason}{'; cached' if self.cached else ''}); ms per clip by batch: "
                f"{table}")


def fastest_batch(engine: Engine, *, iters: int = 3, use_cache: bool = True,
                  log: Callable[[str], None] = lambda m: None) -> BatchChoice:
    """Time ``engine`` at batch 1, 2, 4, ... and return the batch with the lowest time per clip."""
    key = _cache_key(engine)
    if use_cache:
        cached = read_json(user_cache_file(CACHE_FILE), {}).get(key)
        if isinstance(cached, dict) and isinstance(cached.get("batch"), int):
            return BatchChoice(cached["batch"], {int(b): float(v) for b, v in cached.get("per_clip_ms", {}).items()},
                               str(cached.get("reason", "")), cached=True)
    choice = _measure(engine, iters, log)
    if use_cache:
        path = user_cache_file(CACHE_FILE)
        store = read_json(path, {})
        store[key] = {k: v for k, v in asdict(choice).items() if k != "cached"}
        write_json_quietly(path, store)
    return choice


def _measure(engine: Engine, iters: int, log: Callable[[str], None]) -> BatchChoice:
    per_clip: dict[int, float] = {}
    batch, reason = 1, f"the largest tried, {MAX_BATCH}"
    while batch <= MAX_BATCH:
        clips = np.zeros((batch, *engine.input_shape), np.float32)
        try:
            samples = time_calls(engine, clips, warmup=1, iters=iters)
        except Exception as exc:  # out of memory, on the GPU or here: the search ends
            reason = f"batch {batch} failed ({describe(exc)[:80]})"
            break
        per_clip[batch] = float(np.median(samples)) / batch
        log(f"  batch {batch:>4}: {per_clip[batch]:8.2f} ms a clip")
        if batch > 1 and per_clip[batch] > per_clip[batch // 2] * (1 - GAIN):
            reason = f"batch {batch} was not {GAIN:.0%} faster a clip than batch {batch // 2}"
            break
        if per_clip[batch] * batch / 1e3 > CALL_BUDGET_S:
            reason = f"a call at batch {batch} took {per_clip[batch] * batch / 1e3:.1f} s"
            break
        batch *= 2
    best = min(per_clip, key=lambda b: (per_clip[b], b)) if per_clip else 1
    return BatchChoice(best, {b: round(v, 3) for b, v in per_clip.items()}, f"fastest per clip; stopped: {reason}")


def _cache_key(engine: Engine) -> str:
    from .auto import machine_fingerprint

    payload = {"file": str(engine.path.resolve()), "sha": artifact_sha256(engine.path) if engine.path.is_file() else "",
               "key": engine.key, "detail": engine.detail, "machine": machine_fingerprint()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

