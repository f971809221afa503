"""What a bench run is made of: its settings, one row per engine x precision x device x batch, the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.errors import C3DError
from ..engines import ENGINES, PRECISIONS
from ..engines.base import DEVICES

PEER = "openvino-defaults"  # OpenVINO compiled with no settings on c3d.onnx: what a user would try first
AUTO = "auto"
FAILED = "FAILED"  # it ran and computed something else than the eager fp32 model
ERROR = "ERROR"  # it could not run (out of memory, an engine error): says nothing about what it computes


class BenchError(C3DError):
    """Bad benchmark arguments or a model folder without usable artifacts."""


@dataclass
class Row:
    engine: str
    precision: str
    device: str
    batch: int
    status: str = "ok"  # ok, unavailable (not here), FAILED (computed something else), ERROR (could not run)
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
    floor_share: float | None = None  # the CPU's matrix-product floor for these clips over p50: 1.0 = at the floor

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
    model_gflops: float | None = None  # one clip's arithmetic (ModelConfig.gflops)

    @property
    def failed(self) -> list[Row]:
        """Rows that ran and computed something else than the eager fp32 model."""
        return [r for r in self.rows if r.status == FAILED]

    @property
    def errors(self) -> list[Row]:
        """Rows that could not run (out of memory, an engine that broke): nothing is known of what they compute."""
        return [r for r in self.rows if r.status == ERROR]

    @property
    def e2e_runs(self) -> list[dict]:
        """The --e2e runs that ran (one that could not has a status and a reason instead of figures)."""
        return [e for e in self.e2e if e.get("status", "ok") == "ok"]

    def to_dict(self) -> dict[str, Any]:
        return {"model_dir": self.model_dir, "reference": self.reference, "clips_source": self.clips_source,
                "settings": self.settings, "machine": self.machine, "rows": [asdict(r) for r in self.rows],
                "auto_choice": self.auto_choice, "e2e": self.e2e, "ratios": headline_ratios(self)}


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
    for e in report.e2e_runs:  # what the live runner adds to the same engine's standalone latency
        standalone = p50.get(e["engine"])
        ratios["live_g2l_over_standalone"] = round(e["g2l_p50_ms"] / standalone, 3) if standalone else None
    return ratios


def bench_machine() -> dict[str, Any]:
    """The machine block of a report, with its measured matrix-product rates (the floors rows are held to)."""
    from ..core.machine import machine_info, matrix_rates

    return {**machine_info(), "matrix_tflops": matrix_rates()}


FLOOR_RATE = {"fp32": "fp32", "fp16": "fp32", "bf16": "bf16", "int8": "int8"}  # CPUs compute fp16 models in fp32


def floor_share(row: Row, gflops: float, rates: dict[str, Any]) -> float | None:
    """How close a CPU row came to what the CPU can do: the time its clips' arithmetic takes at the measured
    dense matrix-product rate of its precision, over its p50 (1.0: at that floor; 0.1: ten times slower)."""
    rate = rates.get(FLOOR_RATE.get(row.precision, ""))
    if row.device != "cpu" or row.status != "ok" or not row.p50_ms or not rate:
        return None
    return round(gflops * row.batch / rate / row.p50_ms, 3)  # GFLOP / (TFLOP/s) = ms
