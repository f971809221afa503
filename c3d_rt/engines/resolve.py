"""From a request to a plan: which files of a model folder run on which engine here, and the one to load.

``resolve`` turns what a user asked for (a folder or a file, an engine, a precision, a device) into one
concrete plan, or a message that lists what is available here and what to install.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts.formats import (
    CHECKPOINT,
    FORMATS,
    artifact_sha256,
    folder_files,
    format_of,
    layer_formats,
    read_artifact_info,
)
from ..artifacts.info import OUTPUT_NAME, ArtifactInfo
from ..artifacts.proofs import (
    REPORT_FILE,
    proven_before_digests,
    proven_digests,
    read_report,
    runtime_proofs,
    source_checkpoint,
)
from ..core.errors import C3DError
from .base import DEVICES, PRECISIONS, Engine, EngineError, EngineUnavailable, Plan, layer_hint
from .registry import ENGINES, device_unavailable, load_plan, missing_library, precision_unavailable, resolve_device


def read_info(path: Path) -> ArtifactInfo:
    """The self-description of any artifact (an eager checkpoint describes itself too)."""
    if path.suffix.lower() in (".pt", ".pth", ".tar"):
        from .pytorch import checkpoint_info

        return checkpoint_info(path)
    return read_artifact_info(path)


def unproven(plan: "Plan", folder: Path) -> str:
    """Why ``plan`` is not proven equivalent to the trained model (empty if it is).

    A reduced precision (int8, fp16, bf16) counts only with a record of the evidence rule (a 95% lower bound over
    many held-out windows, :mod:`.equivalence`): an older record judged a few clips, which cannot see a 5% flip rate."""
    if plan.fmt == CHECKPOINT and not plan.lowered:
        return ""  # the eager fp32 model is the reference itself
    sha = artifact_sha256(plan.path)
    if not plan.lowered:
        proven = sha in proven_digests(folder) or proven_before_digests(folder, plan.path)
        if not proven:
            return (f"not proven: {REPORT_FILE} beside it has no passing check of {plan.path.name} as it is now "
                    f"(`c3d-rt verify {plan.path}` checks and records it)")
        records, again = read_report(folder).get("artifacts", []), f"c3d-rt verify {plan.path}"
    else:
        if runtime_proofs(folder).get(plan.key) != sha:
            return (f"not proven: {plan.engine} lowers {plan.path.name} to {plan.precision} itself, and no check of "
                    f"that is recorded (`c3d-rt verify {plan.path} --engine {plan.engine} --precision "
                    f"{plan.precision} --device {plan.device}` checks and records it)")
        records = [p for p in read_report(folder).get("proofs", [])
                   if isinstance(p, dict) and p.get("plan") == plan.key]
        again = f"c3d-rt verify {plan.path} --engine {plan.engine} --precision {plan.precision} --device {plan.device}"
    if plan.precision == "fp32" or _has_evidence(records, sha):
        return ""
    return (f"not proven: {REPORT_FILE} records a pass of {plan.path.name} at {plan.precision} under the old rule "
            f"(top-1 on a few clips, no 95% lower bound over many held-out windows, which cannot see a few percent of "
            f"flips); `{again}` checks it under the current rule and records it (or export again)")


def _has_evidence(records: object, sha: str) -> bool:
    """A passing record of the file ``sha`` that carries the evidence rule's lower bound."""
    return isinstance(records, list) and any(
        isinstance(r, dict) and r.get("status") == "ok" and r.get("sha256") == sha
        and isinstance(r.get("top1_lower_bound"), (int, float)) for r in records)


def plans(model: Path, *, checkpoint: Path | None = None, devices: tuple[str, ...] = DEVICES,
          layer: str = OUTPUT_NAME) -> list[Plan]:
    """Every (engine, precision, device) that has a file to run in ``model`` (a folder or one file) that gives
    ``layer`` (logits; fc6 or fc7: a features file, or the eager checkpoint).

    A folder offers only what is inside it: the eager engine gets the training checkpoint when it is named
    (``checkpoint``) or lies in the folder itself (:func:`source_checkpoint`), never by the path the export recorded."""
    gives = layer_formats(layer)
    model = Path(model)
    if model.is_dir():
        files = folder_files(model)
        ckpt = checkpoint or source_checkpoint(model)
    else:
        fmt = format_of(model)
        files = {} if fmt == CHECKPOINT else {fmt: model}
        ckpt = model if fmt == CHECKPOINT else checkpoint
    if ckpt is not None:
        files[CHECKPOINT] = Path(ckpt)
    found = []
    for spec in ENGINES.values():
        for precision, fmts in spec.formats.items():
            fmt = next((f for f in fmts if f in files and f in gives), None)
            if fmt is None:
                continue
            found += [Plan(spec.name, precision, d, files[fmt], fmt) for d in spec.devices if d in devices]
    return found


def availability(plan: Plan) -> str:
    """Empty when ``plan`` can be tried here; otherwise why not (library missing, no GPU)."""
    spec = ENGINES[plan.engine]
    return missing_library(spec) or device_unavailable(plan) or precision_unavailable(plan)


def resolve(model: Path, engine: str, precision: str = "auto", device: str = "auto", *,
            checkpoint: Path | None = None, layer: str = OUTPUT_NAME) -> Plan:
    """The one plan for an explicit engine (``auto`` is chosen by :mod:`.auto`) that gives ``layer``, or a clear
    error."""
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}; choose auto or one of {', '.join(ENGINES)}")
    if precision != "auto" and precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}; choose auto or one of {', '.join(PRECISIONS)}")
    spec = ENGINES[engine]
    device = resolve_device(device, engine)
    if device not in spec.devices:
        raise EngineUnavailable(f"engine {engine} runs on {', '.join(spec.devices)} only, not {device}")
    if layer != OUTPUT_NAME and spec.remote:
        raise EngineUnavailable(f"engine {engine} serves the logits only (its server runs c3d.onnx), not {layer}. "
                                f"{layer_hint(layer)}")
    options = [p for p in plans(model, checkpoint=checkpoint, devices=(device,), layer=layer) if p.engine == engine]
    if precision == "auto":  # the file's own precision first, then the fastest usual one
        order = {"int8": 0, "fp16": 1, "fp32": 2, "bf16": 3} if not Path(model).is_dir() else {"fp32": 0}
        options = [p for p in options if not p.lowered] or options
        options.sort(key=lambda p: order.get(p.precision, 9))
    else:
        options = [p for p in options if p.precision == precision]
    if not options:
        what = "" if layer == OUTPUT_NAME else f" that gives {layer}"
        raise EngineUnavailable(f"{model}: nothing for engine {engine} at precision {precision} on {device}{what}. "
                                f"{_needs_checkpoint(model, engine, checkpoint)}"
                                f"{_what_is_here(model, checkpoint, layer)}")
    plan = options[0]
    why = availability(plan)
    if why:
        raise EngineUnavailable(f"engine {plan.key} cannot run here: {why}. "
                                f"{_what_is_here(model, checkpoint, layer)}")
    return plan


def _needs_checkpoint(model: Path, engine: str, checkpoint: Path | None) -> str:
    """Why a folder offers an eager engine nothing: it runs only the files inside it."""
    if checkpoint is not None or not Path(model).is_dir() or any(
            f != CHECKPOINT for fmts in ENGINES[engine].formats.values() for f in fmts):
        return ""
    return (f"Engine {engine} runs a training checkpoint, and a model folder runs only the files inside it (not the "
            "checkpoint its report.json names): name it (--model CKPT.pt, --checkpoint CKPT where the command has "
            "it, checkpoint= in the API). ")


def _what_is_here(model: Path, checkpoint: Path | None, layer: str = OUTPUT_NAME) -> str:
    """What else ``model`` offers here (for ``layer``); where that is nothing, why (never an empty list)."""
    try:
        found = [p for p in plans(model, checkpoint=checkpoint, layer=layer)
                 if not ENGINES[p.engine].remote]  # a server: named
    except C3DError:
        found = []
    usable = [p.key for p in found if not availability(p)]
    if usable:
        return f"Available here{'' if layer == OUTPUT_NAME else f' for {layer}'}: {', '.join(usable)}."
    if not found and layer != OUTPUT_NAME:
        return f"It holds no file that gives {layer}: {layer_hint(layer)}"
    if not found:
        return "It holds no model file: export one with `c3d-rt export CKPT --out DIR`."
    reasons = dict.fromkeys(availability(p) for p in found)
    return f"Nothing in it runs here: {'; '.join(reasons)}."


def proof_plan(path: Path, fmt: str) -> Plan:
    """How the exporter proves a file: the first engine in the table that runs it at its own precision on a CPU."""
    precision = FORMATS[fmt].precision
    engine = next(e for e in ENGINES.values() if fmt in e.formats.get(precision, ()) and "cpu" in e.devices)
    return Plan(engine.name, precision, "cpu", Path(path), fmt)


def load_engine(model: str | Path, engine: str = "ort", precision: str = "auto", device: str = "auto", *,
                checkpoint: str | Path | None = None, layer: str = OUTPUT_NAME, **options) -> Engine:
    """The engine asked for, on a file that gives ``layer``, loaded (for ``engine="auto"`` use
    :func:`c3d_rt.engines.auto.choose`)."""
    plan = resolve(Path(model), engine, precision, device, checkpoint=Path(checkpoint) if checkpoint else None,
                   layer=layer)
    return load_plan(plan, **options)
