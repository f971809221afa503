"""Export commands: `export` (every format, each proven) and `verify` (prove one file again)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional

import typer

from ..artifacts.formats import FORMATS
from . import checks
from .app import app
from .options import Device, EngineName, PrecisionName, TritonKind, command_line, interrupted, needs_torch, write_json

if TYPE_CHECKING:
    from ..export.report import ExportReport


def _proof_recorded_without_torch(artifact: Path) -> bool:
    """Without torch, `verify` can only say whether the file is the one whose proof report.json records."""
    from ..artifacts.proofs import recorded_proof
    from ..core.machine import library_installed
    from ..engines.registry import TORCH_INSTALL

    if library_installed("torch"):
        return False
    record = recorded_proof(artifact) if artifact.is_file() else None
    if record is None:
        raise checks.ValidationError(
            f"{artifact}: report.json beside it records no passing check of this file as it is now, and checking "
            f"it again needs PyTorch (the eager model is the reference), which is not installed here: {TORCH_INSTALL}")
    typer.echo(f"{artifact}: ok ({record.get('precision')}) as recorded: this is the file the exporter proved "
               f"(SHA-256 {record['sha256'][:12]}, top-1 agreement {record.get('top1_agreement')}, 95% lower bound "
               f"{record.get('top1_lower_bound')}){_old_rule(record)}; running the check "
               f"again needs PyTorch: {TORCH_INSTALL}")
    return True


def _old_rule(record: dict) -> str:
    """A reduced precision's record without the 95% lower bound predates the evidence rule: `auto` does not take it."""
    if record.get("precision") == "fp32" or record.get("top1_lower_bound") is not None:
        return ""
    return (", but under the old rule (top-1 on a few clips, no 95% lower bound over many windows): `auto` does not "
            "take it until it is checked again")


@app.command()
def export(
    ckpt: Path = typer.Argument(..., help="Checkpoint: c3d-rt's, the reference trainer's, or a Sports-1M state dict."),
    out: Path = typer.Option(Path("export"), "--out", "-o", help="Output folder."),
    formats: Optional[str] = typer.Option(None, help=f"Comma-separated formats: {', '.join(FORMATS)} (default: all "
                                                     "whose tools are installed but aoti, which compiles C++; the "
                                                     "OpenVINO ones need the openvino extra)."),
    opset: int = typer.Option(18, min=17, max=23, help="ONNX opset."),
    calib: Optional[Path] = typer.Option(None, help="Data folder for int8 calibration and the accuracy check "
                                                    "(default: the checkpoint's own split)."),
    labels: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="Class names, one per line."),
    check_clips: int = typer.Option(500, "--check-clips", min=1, help="At most this many held-out windows (16 frames "
                                    "every 8 of each video) to prove each reduced precision on: 381 decided ones clear "
                                    "the rule with no flip."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also copy the report here."),
    force: bool = typer.Option(False, "--force", help="Replace what OUT holds of another checkpoint (its exported "
                                                      "files and report.json; without it such a folder is refused), "
                                                      "and an existing Triton model folder (OUT/triton/c3d)."),
    triton_kind: TritonKind = typer.Option(TritonKind.cpu, help="With --formats triton: where the server runs it "
                                                                "(KIND_CPU, KIND_GPU, KIND_GPU with TensorRT)."),
    triton_max_batch: int = typer.Option(8, min=1, max=4096, help="With --formats triton: max_batch_size (the "
                                                                  "dynamic batcher's largest batch)."),
) -> None:
    """Write TorchScript, ONNX (fp32, fp16, int8), OpenVINO IR (fp32, NNCF int8), .pt2 (torch.export, AOTInductor)
    and a Triton model repository, each proven equivalent."""
    needs_torch("export")
    checks.output_dir(out, "--out")
    checks.output_file(json_out, "--json", checks.JSON_SUFFIXES, "report.json")
    if calib is not None:
        checks.input_dir(calib, "--calib", "a data folder with one sub-folder of videos per class")
    from ..artifacts.triton import TritonOptions
    from ..export.choice import default_formats, parse_formats
    from ..export.job import export_checkpoint
    from ..export.report import format_report_table

    chosen = parse_formats(formats) if formats else default_formats()
    try:
        report = export_checkpoint(ckpt, out, formats=chosen, opset=opset, calib=calib, labels_file=labels,
                                   check_clips=check_clips, force=force,
                                   triton=TritonOptions(triton_kind.value, triton_max_batch),
                                   log=lambda m: typer.echo(m, err=True))
    except KeyboardInterrupt as exc:
        _interrupted_export(ckpt, out, chosen, getattr(exc, "report", None), force)
    typer.echo(format_report_table(report))
    if json_out:
        write_json(json_out, report.to_dict())
    failed, refused = report.failures(explicit=formats is not None)
    if refused:
        typer.secho(f"warning: {', '.join(refused)} did not clear the rule for reduced precisions (top-1 agreement's "
                    f"95% lower bound over held-out windows; reasons above and in {out / 'report.json'}) and was not "
                    "written; the other formats are proven. Pass --calib DATA with more or longer held-out videos (or "
                    "a larger --check-clips), or ask for the format with --formats to make its failure an error.",
                    fg=typer.colors.YELLOW, err=True)
    if failed:
        typer.secho(f"error: {', '.join(failed)} failed the equivalence check and was not written (see "
                    f"{out / 'report.json'})", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)


def _interrupted_export(ckpt: Path, out: Path, chosen: list[str], report: ExportReport | None,
                        force: bool) -> NoReturn:
    """Say exactly what report.json holds after Ctrl-C (``report``: what the exporter wrote there; None: Ctrl-C
    came before it wrote anything) and how to export the rest."""
    def again(formats: list[str]) -> str:
        flags = ["--force"] if force and "triton" in formats else []
        return command_line("export", str(ckpt), "--out", str(out), "--formats", ",".join(formats), *flags)

    if report is None:
        interrupted(f"before any format was exported: nothing was written to {out}, and its report.json (if any) is "
                    f"as it was. Export with: {again(chosen)}")
    proven = [a.format for a in report.artifacts if a.status == "ok"]
    failed = [a.format for a in report.artifacts if a.status != "ok"]
    holds = (f"{out / 'report.json'} now records an incomplete export (\"complete\": false, \"ok\": false) of "
             f"{ckpt}: proven: {', '.join(proven) or 'nothing'}"
             + (f"; failed its check: {', '.join(failed)}" if failed else "")
             + ". `auto` and `verify` trust only the files it records as proven; no half-written file is left.")
    if report.unfinished:
        interrupted(f"{holds} Not exported: {', '.join(report.unfinished)}. Export the rest with: "
                    f"{again(report.unfinished)}")
    interrupted(f"{holds} Every format asked for is written, but the checks of the precisions a runtime lowers a file "
                f"to by itself (OpenVINO bf16, TensorRT fp16, autocast) did not finish: report.json keeps earlier "
                f"ones only, and `auto` takes none without its check. Check one with `c3d-rt verify FILE --engine E "
                f"--precision P`, or export again: {again(chosen)}")


@app.command()
def verify(
    artifact: Path = typer.Argument(..., help="An exported .onnx, .ts, .pt2 or OpenVINO .xml file."),
    against: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                           help="Checkpoint to compare with (default: the source named in the file)."),
    calib: Optional[Path] = typer.Option(None, help="Data folder for real clips (default: the checkpoint's split)."),
    engine: Optional[EngineName] = typer.Option(None, help="Check this engine on the file (e.g. openvino --precision "
                                                           "bf16), so that --engine auto may use it; default: as the "
                                                           "exporter checked it."),
    precision: PrecisionName = typer.Option(PrecisionName.auto, help="With --engine: the precision to check."),
    device: Device = typer.Option(Device.cpu, help="With --engine: the device to check on."),
    check_clips: int = typer.Option(500, "--check-clips", min=1, help="At most this many held-out windows to check "
                                                                      "a reduced precision on."),
) -> None:
    """Re-run the equivalence check of an exported artifact, and record it in the report.json beside it."""
    if engine is None and _proof_recorded_without_torch(artifact):
        return
    needs_torch("verify")  # the reference is the eager model of the source checkpoint
    if calib is not None:
        checks.input_dir(calib, "--calib", "a data folder with one sub-folder of videos per class")
    from ..export.report import agreement_text
    from ..export.verify import verify_artifact

    if engine is not None and engine.value == "auto":
        raise checks.ValidationError("--engine auto: verify checks one engine; name it (torch, ort, openvino, ...)")
    if engine is None and (precision.value != "auto" or device.value != "cpu"):
        raise checks.ValidationError("--precision and --device choose what --engine checks; name the engine too "
                                       "(e.g. --engine openvino --precision bf16).")
    r = verify_artifact(artifact, against, calib=calib, engine=engine.value if engine else None,
                        precision=precision.value, device=device.value, check_clips=check_clips)
    errors = f"max|d logits| {r.max_abs_err:.3g}, max|d prob| {r.max_prob_err:.3g}, " if r.max_abs_err is not None else ""
    agree = agreement_text(r) + (f" ({r.checked_clips} clips)" if r.top1_agreement is not None else "")
    typer.echo(f"{artifact}: {r.status} ({r.precision}) {errors}{agree}")
    if r.status != "ok":
        typer.secho(f"error: {artifact} does not compute what the checkpoint computes: {r.reason}",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)
