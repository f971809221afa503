"""Writing ``report.json`` (the trust contract between export and ``auto``) and the table a user reads.

Every write goes through here; :mod:`c3d_rt.artifacts.proofs` reads it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..artifacts.formats import FORMATS, artifact_files, artifact_sha256, read_artifact_info
from ..artifacts.proofs import REPORT_FILE, read_report
from ..core.errors import C3DError
from ..core.fileio import atomic_write_text
from ..engines import Plan
from .inputs import RANDOM_BATCHES
from .proof import ArtifactResult, proof_record


@dataclass
class ExportReport:
    source: str
    source_sha256: str
    out_dir: str
    artifacts: list[ArtifactResult] = field(default_factory=list)
    real_clips: int = 0
    real_source: str = ""
    calibration_clips: int = 0
    quantization: dict[str, Any] = field(default_factory=dict)  # what each quantiser did (NNCF's settings)
    proofs: list[dict] = field(default_factory=list)  # engine/precision/device checks of lowered precisions
    seconds: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(a.status == "ok" for a in self.artifacts)

    def failures(self, explicit: bool) -> tuple[list[str], list[str]]:
        """(formats whose failure fails the export, formats merely refused).

        A format asked for by name must pass. Of the default set, an int8 format that misses the
        rule is refused (not written, said in the table) without failing the export: whether
        quantisation keeps a given model's top-1 is a property of that model, while an fp32 or
        fp16 mismatch is a bug.
        """
        failed = [a.format for a in self.artifacts if a.status != "ok"]
        if explicit:
            return failed, []
        refused = [f for f in failed if FORMATS[f].precision == "int8"]
        return [f for f in failed if f not in refused], refused

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def write_report(out_dir: Path, report: ExportReport, formats: list[str], start: float, log: Callable[[str], None],
                 prove_lowered: Callable[[dict], list[dict]] | None) -> ExportReport:
    """Merge what this export did with what an earlier export of the same checkpoint left, and save it.

    ``prove_lowered(earlier report)`` gives the proofs of lowered precisions; None (an interrupted export)
    keeps the earlier ones."""
    sha = report.source_sha256
    earlier = read_report(out_dir)
    earlier = earlier if earlier.get("source_sha256") == sha else {}
    report.artifacts += earlier_results(out_dir, earlier, formats)
    remove_other_models(out_dir, sha, formats, log)
    report.artifacts.sort(key=lambda a: list(FORMATS).index(a.format))
    report.proofs = earlier.get("proofs", []) if prove_lowered is None else prove_lowered(earlier)
    report.seconds = round(time.perf_counter() - start, 2)
    atomic_write_text(json.dumps(report.to_dict(), indent=2) + "\n", out_dir / REPORT_FILE)
    return report


def earlier_results(out_dir: Path, earlier: dict, formats: list[str]) -> list[ArtifactResult]:
    """Proofs of files from an earlier export of the same checkpoint into this folder that this one left
    alone, while each file is still the one proven (same SHA-256)."""
    kept = []
    for a in earlier.get("artifacts", []):
        try:
            path = out_dir / FORMATS[a["format"]].file
            if a["format"] not in formats and path.is_file() and a.get("sha256") == artifact_sha256(path):
                kept.append(ArtifactResult(**a))
        except (KeyError, TypeError, OSError):
            continue
    return kept


def remove_other_models(out_dir: Path, sha256: str, formats: list[str], log: Callable[[str], None]) -> None:
    """An export folder holds one model: files exported from another checkpoint (by their own metadata) go."""
    folder_source = read_report(out_dir).get("source_sha256")
    stale = []
    for name, spec in FORMATS.items():
        path = out_dir / spec.file
        if name in formats or not path.is_file():
            continue
        try:
            other = read_artifact_info(path).source_sha256 != sha256
        except C3DError:  # unreadable: the folder's report says whose it was
            other = folder_source not in (None, sha256)
        if other and name == "triton":  # a model repository is replaced only with --force (a server may serve it)
            log(f"note: {path.parent.parent} holds a Triton model of another checkpoint; left as it is "
                "(`--formats triton --force` replaces it)")
        elif other:
            stale += [part for part in artifact_files(path) if part.is_file()]
    for part in stale:
        part.unlink()
    if stale:
        log(f"removed {', '.join(p.name for p in stale)}: exported earlier from another checkpoint")


def result_line(r: ArtifactResult) -> str:
    errors = (f"max|d logits| {r.max_abs_err:.2e}" if r.precision == "fp32" and r.max_abs_err is not None else
              f"max|d prob| {r.max_prob_err:.2e}" if r.max_prob_err is not None else "")
    agree = f"top-1 agree {r.top1_agreement:.1%}" if r.top1_agreement is not None else ""
    return f"  {r.format:<13} {r.status:<6} {r.size_mb:>8.1f} MB  {errors}  {agree}  {r.seconds:.1f}s  {r.reason}"


def format_report_table(report: ExportReport) -> str:
    head = f"{'format':<13} {'status':<6} {'size MB':>8} {'max|dlogit|':>11} {'max rel':>9} {'max|dprob|':>10} " \
           f"{'top1 agree':>10} {'acc':>6} {'time s':>7}"
    rows = [head, "-" * len(head)]
    fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
    for a in report.artifacts:
        rows.append(f"{a.format:<13} {a.status:<6} {a.size_mb:>8.1f} {fmt(a.max_abs_err, '11.2e')} "
                    f"{fmt(a.max_rel_err, '9.2e')} {fmt(a.max_prob_err, '10.2e')} "
                    f"{fmt(a.top1_agreement, '10.1%')} {fmt(a.accuracy, '6.1%')} {a.seconds:>7.1f}")
        if a.reason:
            rows.append(f"  -> {a.reason}")
    rows.append(f"checked on random clips (batch {', '.join(map(str, RANDOM_BATCHES))}) and {report.real_clips} real "
                f"clips ({report.real_source}); total {report.seconds:.1f}s")
    return "\n".join(rows)


def record_verification(folder: Path, plan: Plan, result: ArtifactResult, source_sha256: str) -> None:
    """Write a verification into the folder's report.json (created if missing); skipped where it cannot be
    written, and never for a checkpoint other than the one the report is about."""
    report = read_report(folder) or {"source_sha256": source_sha256, "artifacts": [], "proofs": []}
    if report.get("source_sha256") != source_sha256:
        return
    if plan.lowered:
        proofs = [p for p in report.get("proofs", []) if isinstance(p, dict) and p.get("plan") != plan.key]
        report["proofs"] = proofs + [proof_record(plan, result)]
    else:
        others = [a for a in report.get("artifacts", []) if isinstance(a, dict)
                  and Path(str(a.get("file", ""))).name != plan.path.name]  # this file's earlier record goes
        report["artifacts"] = others + [asdict(result)]
    try:
        atomic_write_text(json.dumps(report, indent=2) + "\n", folder / REPORT_FILE)
    except OSError:
        pass  # a read-only folder: the check still printed its verdict
