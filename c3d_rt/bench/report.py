"""Reading a bench run: the terminal table, Markdown, a plot, JSON, and the headline ratios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.fileio import atomic_path
from .rows import BenchReport, Row, bench_machine, headline_ratios


def _cell(value, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def progress_line(rows: list[Row]) -> str:
    """One engine's rows on one line: each batch's p50 (or its status where it did not run) and why."""
    r = rows[0]
    head = f"  {r.engine:<17} {r.precision:<7} {r.device:<4}"
    timed = [x for x in rows if x.p50_ms is not None]
    if not timed:
        return f"{head} {r.status}: {r.reason}"
    speeds = ", ".join(f"b{x.batch} {x.p50_ms:.1f} ms" if x.p50_ms is not None else f"b{x.batch} {x.status}"
                       for x in rows)
    reasons = "; ".join(dict.fromkeys(x.reason for x in rows if x.reason))
    return (f"{head} {timed[0].status} {speeds}; top-1 agreement {timed[0].top1_agreement:.1%}"
            + (f" ({reasons})" if reasons else ""))


COLUMNS = ("engine", "precision", "device", "batch", "status", "size MB", "p50 ms", "p95 ms", "p99 ms", "clips/s",
           "+mem MB", "max|dprob|", "top-1 agree", "of floor")


def _row_cells(r: Row) -> list[str]:
    return [r.engine, r.precision, r.device, str(r.batch), r.status, _cell(r.size_mb, ".1f"), _cell(r.p50_ms, ".2f"),
            _cell(r.p95_ms, ".2f"), _cell(r.p99_ms, ".2f"), _cell(r.clips_per_s, ".1f"), _cell(r.peak_mem_mb, ".0f"),
            _cell(r.max_prob_err, ".1e"), _cell(r.top1_agreement, ".1%"), _cell(r.floor_share, ".1%")]


def _notes(report: BenchReport) -> dict[str, str]:
    """engine/precision/device -> why it is unavailable or FAILED, and how each measured engine ran."""
    notes = {r.key: r.reason for r in report.rows if r.reason}
    for r in report.rows:
        if r.detail and r.key not in notes:
            notes[r.key] = r.detail
    return notes


def _md(cell: str) -> str:
    """A Markdown table cell: a pipe in it would end the cell (``max|dprob|`` made three of one)."""
    return cell.replace("|", "\\|")


def _md_row(cells) -> str:
    return "| " + " | ".join(_md(str(c)) for c in cells) + " |"


def _e2e_how(e: dict) -> str:
    """How an --e2e run was made: the `c3d-rt webcam` command that measures the same."""
    return f"as `{e['command']}` measures it ({e['note']})"


def format_table(report: BenchReport) -> str:
    cells = [list(COLUMNS)] + [_row_cells(r) for r in report.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i > 4 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    lines += [f"  {key}: {why}" for key, why in _notes(report).items()] + [_floor_line(report)]
    ratios = headline_ratios(report)
    lines.append("batch-1 ratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items() if v is not None))
    for e in report.e2e:
        if e in report.e2e_runs:
            lines.append(f"e2e {e['engine']} ({e['fps']:g} fps source): glass-to-label p50 "
                         f"{e['g2l_p50_ms']:.1f} / p95 {e['g2l_p95_ms']:.1f} / p99 {e['g2l_p99_ms']:.1f} ms, "
                         f"{e['predictions_per_s']:.1f} predictions/s, frames dropped {e['frames_dropped']}, runtime "
                         f"overhead p50 {e['overhead_p50_ms']:.2f} ms,")
        else:
            lines.append(f"e2e {e['engine']}: {e['status']}: {e['reason']},")
        lines.append(f"  {_e2e_how(e)}")
    return "\n".join(lines)


def _floor_line(report: BenchReport) -> str:
    rates = report.machine.get("matrix_tflops") or {}
    measured = ", ".join(f"{k} {v:g}" for k, v in rates.items() if k != "library" and v)
    return (f"of floor: a clip is {report.model_gflops:g} GFLOP; this CPU's dense matrix products run at {measured} "
            f"TFLOP/s ({rates.get('library')}, every core); a CPU row's share is that arithmetic's time at its "
            "precision's rate over its p50" if measured and report.model_gflops else "of floor: not measured")


def format_markdown(report: BenchReport) -> str:
    m = report.machine
    head = (f"# c3d-rt bench: {report.model_dir}\n\n"
            f"- machine: {m.get('cpu')} ({m.get('cores')} cores; flags {m.get('cpu_flags') or '-'}), "
            f"GPU {m.get('gpu') or 'none'}, driver {m.get('gpu_driver') or 'none'}\n"
            f"- versions: python {m.get('python')}, torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}, "
            f"openvino {m.get('openvino')}, c3d-rt {m.get('c3d_rt')}; date {m.get('date')}\n"
            f"- agreement reference: {report.reference}, on {report.settings['clips']} {report.clips_source}\n"
            f"- {_floor_line(report)}\n"
            f"- {report.settings['warmup']} warm-up and {report.settings['iters']} timed calls per row; threads: "
            f"{report.settings['threads'] or 'all cores'}\n\n")
    table = [_md_row(COLUMNS), "|" + "---|" * len(COLUMNS)] + [_md_row(_row_cells(r)) for r in report.rows]
    body = "\n".join(table) + "\n\n" + "".join(f"- {key}: {why}\n" for key, why in _notes(report).items())
    ratios = headline_ratios(report)
    body += "\nBatch-1 p50 ratios: " + ", ".join(f"`{k}` {v}" for k, v in ratios.items()) + "\n"
    if report.e2e:
        body += "\n## Live pipeline (paced synthetic camera)\n\n" + _e2e_markdown(report)
    return head + body


def _e2e_markdown(report: BenchReport) -> str:
    """The --e2e runs: a table of those that ran, then how each was made (and why one could not run)."""
    keys = ("engine", "fps", "frames", "frames_dropped", "predictions_per_s", "windows_dropped",
            "g2l_p50_ms", "g2l_p95_ms", "g2l_p99_ms", "inference_p50_ms", "overhead_p50_ms")
    table = [_md_row(keys), "|" + "---|" * len(keys)] + [
        _md_row(_cell(e[k], ".2f") if isinstance(e[k], float) else e[k] for k in keys) for e in report.e2e_runs]
    notes = [f"- {e['engine']}: " + ("" if e in report.e2e_runs else f"{e['status']}: {e['reason']}; ") + _e2e_how(e)
             for e in report.e2e]
    return ("\n".join(table) + "\n\n" if report.e2e_runs else "") + "\n".join(notes) + "\n"


def exit_messages(report: BenchReport) -> list[str]:
    """The ``error:`` lines of a run that exits non-zero: rows that ran and computed something else (FAILED), and
    rows that could not run (ERROR: out of memory, an engine error), which say nothing about what an engine
    computes."""
    lines = []
    if report.failed:
        names = ", ".join(sorted({r.key for r in report.failed}))
        lines.append(f"error: {names} did not compute what the eager fp32 model computes (see the table)")
    if report.errors:
        names = ", ".join(dict.fromkeys(f"{r.key} at batch {r.batch}" for r in report.errors))
        lines.append(f"error: {names} could not run (which says nothing about what it computes): "
                     f"{report.errors[0].reason} (see the table)")
    lines += [f"error: the --e2e run could not run: {e['reason']}" for e in report.e2e if e not in report.e2e_runs]
    return lines


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
    from ..core.fileio import atomic_write_text

    if json_path:
        atomic_write_text(json.dumps(report.to_dict(), indent=2) + "\n", Path(json_path))
    if markdown_path:
        atomic_write_text(format_markdown(report), Path(markdown_path))
    if plot_path:
        save_plot(report, plot_path)


def device_slug(machine: dict[str, Any] | None = None) -> str:
    """A file-name-safe name of the machine: the GPU if there is one, else the CPU and its core count."""
    import re

    m = machine or bench_machine()
    name = m.get("gpu") or f"{m.get('cpu', 'cpu')}-{m.get('cores')}c"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
