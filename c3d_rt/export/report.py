"""Writing ``report.json`` (the trust contract between export and ``auto``) and the table a user reads.

Every write goes through here; :mod:`c3d_rt.artifacts.proofs` reads it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..artifacts import triton as triton_repo
from ..artifacts.formats import FORMATS, artifact_files, artifact_sha256, folder_files, read_artifact_info
from ..artifacts.proofs import REPORT_FILE, read_report
from ..core.errors import C3DError
from ..core.fileio import atomic_write_text
from ..engines import Plan
from ..engines.equivalence import MIN_TOP1_AGREEMENT, NEAR_TIE_MARGIN
from .inputs import FP32_WINDOWS, RANDOM_BATCHES, WINDOW_STRIDE, ExportError
from .proof import ArtifactResult, proof_record


@dataclass
class ExportReport:
    source: str
    source_sha256: str
    out_dir: str
    artifacts: list[ArtifactResult] = field(default_factory=list)
    real_clips: int = 0  # real windows checked (16 frames each, every WINDOW_STRIDE frames of each held-out video)
    real_source: str = ""
    real_videos: int = 0  # the videos they come from
    windows_available: int = 0  # windows those videos give at the stride (real_clips is capped by --check-clips)
    calibration_clips: int = 0
    quantization: dict[str, Any] = field(default_factory=dict)  # what each quantiser did (NNCF's settings)
    proofs: list[dict] = field(default_factory=list)  # engine/precision/device checks of lowered precisions
    seconds: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)
    complete: bool = True  # False: interrupted (Ctrl-C); what it records is proven, the rest was not done
    unfinished: list[str] = field(default_factory=list)  # formats asked for that an interrupted export left

    @property
    def ok(self) -> bool:
        """Every format asked for is proven; never for an interrupted export."""
        return self.complete and all(a.status == "ok" for a in self.artifacts)

    def failures(self, explicit: bool) -> tuple[list[str], list[str]]:
        """(formats whose failure fails the export, formats merely refused).

        A format asked for by name must pass. Of the default set, an int8 format that misses the
        rule is refused (not written, said in the table) without failing the export: whether
        quantisation keeps a given model's top-1 is a property of that model, while an fp32 or
        fp16 mismatch is a bug. So is a reduced precision refused for too little evidence (too few
        held-out windows, too many near-ties): a property of the data the export was given.
        """
        failed = [a.format for a in self.artifacts if a.status != "ok"]
        if explicit:
            return failed, []
        refused = [a.format for a in self.artifacts if a.status != "ok"
                   and (FORMATS[a.format].precision == "int8" or a.insufficient_evidence)]
        return [f for f in failed if f not in refused], refused

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def write_report(out_dir: Path, report: ExportReport, start: float, log: Callable[[str], None],
                 prove_lowered: Callable[[dict], list[dict]] | None, *, force: bool = False) -> ExportReport:
    """Merge what this export did (``report.artifacts``) with what an earlier export of the same checkpoint
    left, save it, and return the merged report.

    A format this export did not write keeps its earlier proof while its file is unchanged. ``prove_lowered(earlier
    report)`` gives the proofs of lowered precisions; None (an interrupted export) keeps the earlier ones.
    ``report`` itself is left as it is, so an export interrupted in here can call it again. ``force``: files of
    another checkpoint go (without it the export was refused before it began)."""
    earlier = read_report(out_dir)
    earlier = earlier if earlier.get("source_sha256") == report.source_sha256 else {}
    kept = earlier_results(out_dir, earlier, [a.format for a in report.artifacts])
    if force:  # first: the lowered precisions are proven on this checkpoint's files only
        remove_other_models(out_dir, report.source_sha256, log)
    proofs = earlier.get("proofs", []) if prove_lowered is None else prove_lowered(earlier)
    merged = replace(report, artifacts=sorted(report.artifacts + kept, key=lambda a: list(FORMATS).index(a.format)),
                     proofs=proofs, seconds=round(time.perf_counter() - start, 2),
                     unfinished=[f for f in report.unfinished if f not in {a.format for a in kept}])
    atomic_write_text(json.dumps(merged.to_dict(), indent=2) + "\n", out_dir / REPORT_FILE)
    return merged


def earlier_results(out_dir: Path, earlier: dict, done: list[str]) -> list[ArtifactResult]:
    """Proofs of files from an earlier export of the same checkpoint into this folder that this one left
    alone (not in ``done``), while each file is still the one proven (same SHA-256)."""
    kept = []
    for a in earlier.get("artifacts", []):
        try:
            path = out_dir / FORMATS[a["format"]].file
            if a["format"] not in done and path.is_file() and a.get("sha256") == artifact_sha256(path):
                kept.append(ArtifactResult(**a))
        except (KeyError, TypeError, OSError):
            continue
    return kept


def other_models(out_dir: Path, sha256: str) -> dict[Path, str]:
    """Each file in ``out_dir`` exported from another checkpoint than ``sha256`` -> that checkpoint (as recorded).

    A file says whose it is in its own metadata; where that cannot be read, the folder's report.json says, and
    report.json itself is listed when it is another checkpoint's. An IR counts as its .xml and .bin."""
    report = read_report(out_dir)
    folder_sha = report.get("source_sha256")
    folder_source = str(report.get("source") or f"SHA-256 {str(folder_sha)[:12]}")
    found: dict[Path, str] = {}
    for path in folder_files(out_dir).values():
        try:
            info = read_artifact_info(path)
            other, source = info.source_sha256 != sha256, info.source_path or f"SHA-256 {info.source_sha256[:12]}"
        except C3DError:  # unreadable: the folder's report says whose it was
            other, source = folder_sha not in (None, sha256), folder_source
        if other:
            found.update({part: source for part in artifact_files(path) if part.is_file()})
    if folder_sha not in (None, sha256):
        found[out_dir / REPORT_FILE] = folder_source
    return found


def check_one_model(out_dir: Path, ckpt: Path, sha256: str, force: bool) -> None:
    """An export folder holds one model: refuse, before anything is written, a folder that holds another
    checkpoint's files (or report.json), unless ``force`` replaces them. A Triton model folder is not counted:
    a server may be serving it, and only ``--formats triton --force`` replaces it (see ``choice.check_repository``)."""
    others = {p: s for p, s in other_models(out_dir, sha256).items() if not _in_repository(out_dir, p)}
    if others and not force:
        names = ", ".join(p.relative_to(out_dir).as_posix() for p in others)
        sources = sorted(set(others.values()))
        whose = (f"an earlier version of {ckpt} (it has changed since: SHA-256 now {sha256[:12]})"
                 if sources == [str(Path(ckpt).resolve())] else f"another checkpoint ({', '.join(sources)})")
        raise ExportError(f"{out_dir}: holds {names}, exported from {whose}, not from {ckpt} as it is now. An export "
                          "folder holds one "
                          "model: pass --force to replace them (they are removed once this export has written its "
                          "own), or --out another folder.")


def remove_other_models(out_dir: Path, sha256: str, log: Callable[[str], None]) -> None:
    """With --force: files exported from another checkpoint go (report.json is about to be replaced); a Triton
    model of another checkpoint stays, and is said to."""
    stale, triton = [], []
    for part in other_models(out_dir, sha256):
        if _in_repository(out_dir, part):
            triton.append(part)
        elif part.name != REPORT_FILE:
            stale.append(part)
    for part in stale:
        part.unlink(missing_ok=True)
    if stale:
        log(f"removed {', '.join(p.name for p in stale)}: exported earlier from another checkpoint")
    if triton:
        log(f"note: {out_dir / triton_repo.REPOSITORY} holds a Triton model of another checkpoint; left as it is "
            "(`--formats triton --force` replaces it)")


def _in_repository(out_dir: Path, part: Path) -> bool:
    return part.relative_to(out_dir).parts[0] == triton_repo.REPOSITORY


def result_line(r: ArtifactResult) -> str:
    errors = (f"max|d logits| {r.max_abs_err:.2e}" if r.precision == "fp32" and r.max_abs_err is not None else
              f"max|d prob| {r.max_prob_err:.2e}" if r.max_prob_err is not None else "")
    if r.layers:
        errors += "; " + layers_text(r.layers)
    return (f"  {r.format:<13} {r.status:<6} {r.size_mb:>8.1f} MB  {errors}  {agreement_text(r)}  {r.seconds:.1f}s  "
            f"{r.reason}")


def layers_text(layers: dict[str, dict]) -> str:
    """A features file's layers as a user reads them: each one's largest error and lowest cosine similarity."""
    return ", ".join(f"{name} max|d| {rec['max_abs_err']:.2e} ({rec['tolerance_used']:.1%} of the tolerance), "
                     f"min cosine {rec['min_cosine']:.7f}" for name, rec in layers.items())


def agreement_text(r: ArtifactResult) -> str:
    """Top-1 agreement as a user reads it; for a reduced precision, the evidence the rule judged."""
    if r.top1_agreement is None:
        return ""
    if r.top1_lower_bound is None:
        return f"top-1 agree {r.top1_agreement:.1%}"
    decided = r.windows - (r.near_ties or 0)
    ties = (f"; near-ties {r.near_ties}: {r.near_tie_agreement:.1%}" if r.near_tie_agreement is not None
            else "; no near-ties")
    decided_text = (f"top-1 agree {r.decided_agreement:.1%} of {decided} decided windows (95% lower bound "
                    f"{r.top1_lower_bound:.1%})" if r.decided_agreement is not None else "no decided windows")
    return decided_text + ties


def format_report_table(report: ExportReport) -> str:
    head = f"{'format':<13} {'status':<6} {'size MB':>8} {'max|dlogit|':>11} {'max rel':>9} {'max|dprob|':>10} " \
           f"{'top1 agree':>10} {'low95':>6} {'ties':>5} {'acc':>6} {'time s':>7}"
    rows = [head, "-" * len(head)]
    fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
    for a in report.artifacts:
        rows.append(f"{a.format:<13} {a.status:<6} {a.size_mb:>8.1f} {fmt(a.max_abs_err, '11.2e')} "
                    f"{fmt(a.max_rel_err, '9.2e')} {fmt(a.max_prob_err, '10.2e')} "
                    f"{fmt(a.top1_agreement, '10.1%')} {fmt(a.top1_lower_bound, '6.1%')} {fmt(a.near_ties, '5d')} "
                    f"{fmt(a.accuracy, '6.1%')} {a.seconds:>7.1f}")
        if a.layers:
            rows.append(f"  layers: {layers_text(a.layers)}")
        if a.reason:
            rows.append(f"  -> {a.reason}")
    rows.append(f"checked on random clips (batch {', '.join(map(str, RANDOM_BATCHES))}) and {report.real_clips} real "
                f"windows (16 frames every {WINDOW_STRIDE} of {report.real_videos} videos, {report.real_source}; "
                f"fp32 files on {min(FP32_WINDOWS, report.real_clips)} of them); low95: the 95% lower bound on top-1 "
                f"agreement over windows that are not near-ties (fp32 top-2 within {NEAR_TIE_MARGIN:g}; ties: how many), which must be >= "
                f"{MIN_TOP1_AGREEMENT:.0%}; total {report.seconds:.1f}s")
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
