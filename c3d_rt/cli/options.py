"""What the commands share: option types whose choices come from the one registry, and small helpers
(the torch check, Ctrl-C, the model folder's default)."""

from __future__ import annotations

import json
import shlex
from enum import Enum
from pathlib import Path
from typing import NoReturn

import typer

from ..artifacts.formats import folder_files
from ..bench.rows import BenchError
from ..demo import DEMO_OUT, QUICK_OUT
from ..engines.base import PRECISIONS
from ..engines.registry import ENGINES
from ..engines.resolve import plans
from . import checks

DEFAULT_EXPORT = Path("export")
DEMO_EXPORTS = (DEMO_OUT / "export", QUICK_OUT / "export")  # where `c3d-rt demo` (and --quick) write their models


def needs_torch(command: str) -> None:
    """Training, evaluation and export need PyTorch, which the plain (runtime) install leaves out."""
    from ..core.machine import library_installed
    from ..engines.registry import TORCH_INSTALL

    if not library_installed("torch"):
        raise checks.ValidationError(
            f"`c3d-rt {command}` needs PyTorch, which is not installed here (the plain install is the runtime: "
            f"webcam and bench with ONNX Runtime or OpenVINO). Install the training extra: {TORCH_INSTALL}")


def interrupted(what: str) -> NoReturn:
    """Ctrl-C: say what was saved and how to go on; exit 130 like any interrupted program."""
    typer.secho(f"interrupted: {what}", fg=typer.colors.YELLOW, err=True)
    raise typer.Exit(code=130)


def command_line(*args: str) -> str:
    return shlex.join(["c3d-rt", *args])


def model_folder(model: Path) -> Path:
    """--model names nothing to run: say where `c3d-rt demo` put its models, or how to make some.

    A folder with no model file in it counts as missing: the repository ships ``export/.gitkeep``, so the
    default export/ exists in every checkout and holds nothing until something is exported into it."""
    if model.is_dir():
        if folder_files(model) or plans(model):  # plans: a folder may hold just its checkpoint
            return model
        problem = "holds no model file"
    elif model.exists() or model.suffix:
        return model  # one file, there or not: the engines say whether they run it
    else:
        problem = "no such folder here" if model == DEFAULT_EXPORT else "no such file or folder"
    demo = next((d for d in DEMO_EXPORTS if d.is_dir() and model.absolute() != d.absolute()), None)
    if demo is not None:
        raise checks.ValidationError(f"--model {model}: {problem}. `c3d-rt demo` wrote its models to {demo}: "
                                     f"pass --model {demo}.")
    raise checks.ValidationError(f"--model {model}: {problem}. Export a model first (`c3d-rt export CKPT --out "
                                 f"{model}`), run `c3d-rt demo`, or pass --model PATH.")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


EngineName = Enum("EngineName", {n: n for n in ("auto", *ENGINES)}, type=str)  # choices from the one registry
PrecisionName = Enum("PrecisionName", {n: n for n in ("auto", *PRECISIONS)}, type=str)


class TrainPrecision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class TritonKind(str, Enum):
    cpu = "cpu"
    gpu = "gpu"
    tensorrt = "tensorrt"


TRITON_URL_HELP = ("With --engine triton: the server, http://HOST:8000 or grpc://HOST:8001 (also from "
                   "C3D_RT_TRITON_URL).")


class Footage(str, Enum):
    texture = "texture"
    real = "real"


class Recipe(str, Enum):
    auto = "auto"
    finetune = "finetune"
    scratch = "scratch"


def write_json(path: Path, payload: dict) -> None:
    from ..core.fileio import atomic_write_text

    atomic_write_text(json.dumps(payload, indent=2) + "\n", path)


def explicit(ctx: typer.Context, name: str) -> bool:
    """Whether the user passed option ``name`` (not just its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


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
