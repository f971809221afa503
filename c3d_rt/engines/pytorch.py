"""PyTorch engines: eager from a training checkpoint (the reference of every check), TorchScript, and the
``.pt2`` formats (torch.export's ExportedProgram; an AOTInductor package of compiled C++ kernels).

Eager runs fp32, bf16 by autocast (on CPUs with native bf16, and on GPUs), and
fp16 on CUDA with the weights in half. fp32 on CUDA turns TF32 off, so fp32
means fp32. ``channels_last`` (``channels_last_3d``) and ``compile``
(``torch.compile``) are options: the bench measures whether they are faster.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..artifacts.formats import CHECKPOINT
from ..artifacts.info import FEATURE_LAYERS, OUTPUT_NAME, TS_EXTRA_FILE, ArtifactError, ArtifactInfo, read_zip_metadata
from ..core.errors import describe
from .base import Engine, EngineUnavailable, Plan
from .registry import precision_unavailable


def checkpoint_info(path: Path) -> ArtifactInfo:
    """An eager checkpoint described like an artifact (labels, preprocessing, model config, hash)."""
    from ..model.checkpoint import load_checkpoint

    return checkpoint_info_of(load_checkpoint(path))


class TorchEngine(Engine):
    """A torch module (eager or TorchScript) called under ``inference_mode``, synchronised with its device."""

    def __init__(self, plan: Plan, info: ArtifactInfo, module, *, threads: int | None = None, live: bool = False,
                 channels_last: bool = False, compile: bool = False) -> None:
        import torch

        super().__init__(plan.path, info)
        self.name, self.precision, self.device = plan.engine, plan.precision, plan.device
        _check_precision(plan)
        if threads:
            torch.set_num_threads(threads)
        if plan.device == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = plan.precision != "fp32"
        self.half = plan.precision == "fp16"
        module = module.to(plan.device)
        if self.half:
            module = module.half()
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        if channels_last:
            module = module.to(memory_format=self.memory_format)
        # The eager model (a checkpoint's C3D) computes every layer; TorchScript and .pt2 graphs give the logits.
        self.forward_layers = getattr(module, "forward_layers", None)
        if self.forward_layers is not None:
            self.outputs = (*FEATURE_LAYERS, OUTPUT_NAME)
        # On CUDA, "reduce-overhead" also captures CUDA graphs: batch 1 is bound by kernel launches there.
        mode = "reduce-overhead" if plan.device == "cuda" else None
        self.module = torch.compile(module, mode=mode) if compile else module
        notes = [n for n, on in (("autocast", plan.precision == "bf16"), ("channels_last_3d", channels_last),
                                 (f"torch.compile{' + CUDA graphs' if mode else ''}", compile)) if on]
        self.detail = ", ".join(notes)

    def _run(self, clips: np.ndarray) -> np.ndarray:
        return self._call(self.module, clips)[0]

    def _run_layers(self, clips: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        if self.forward_layers is None:
            return super()._run_layers(clips, names)
        # uncompiled (``compile`` speeds up the logits): the layers of the model as it is
        return dict(zip((*FEATURE_LAYERS, OUTPUT_NAME), self._call(self.forward_layers, clips)))

    def _call(self, function, clips: np.ndarray) -> list[np.ndarray]:
        """``function`` on the clips at this engine's precision, device and memory format; its output(s) as float32
        arrays."""
        import torch

        with torch.inference_mode(), torch.autocast(self.device, dtype=torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            x = torch.from_numpy(clips).to(self.device, non_blocking=True)
            x = (x.half() if self.half else x).contiguous(memory_format=self.memory_format)
            out = function(x)
            return [t.float().cpu().numpy() for t in (out if isinstance(out, tuple) else (out,))]  # .cpu() waits

    def close(self) -> None:
        self.module = self.forward_layers = None
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()
        super().close()


def _check_precision(plan: Plan) -> None:
    import torch

    why = precision_unavailable(plan)
    if why:
        raise EngineUnavailable(why)
    if plan.device == "cuda" and not torch.cuda.is_available():
        raise EngineUnavailable("torch sees no CUDA GPU here")


def reference_engine(ckpt, model) -> TorchEngine:
    """The eager fp32 model on the CPU: the reference of every equivalence check."""
    return TorchEngine(Plan("torch", "fp32", "cpu", ckpt.path, CHECKPOINT), checkpoint_info_of(ckpt), model)


def load_eager(plan: Plan, **options) -> TorchEngine:
    from ..model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(plan.path)
    info = checkpoint_info_of(ckpt)
    return TorchEngine(plan, info, ckpt.build_model(), **options)


def checkpoint_info_of(ckpt) -> ArtifactInfo:
    from ..core.config import Preprocessing
    from ..core.version import __version__

    n = ckpt.model_config.num_classes
    labels = ckpt.labels if ckpt.labels and len(ckpt.labels) == n else [f"class_{i}" for i in range(n)]
    prep = ckpt.preprocessing or Preprocessing.for_model(ckpt.model_config)
    return ArtifactInfo(labels, prep, ckpt.model_config, "fp32", "checkpoint", None, __version__, ckpt.sha256,
                        str(Path(ckpt.path).resolve()))


def load_torchscript(plan: Plan, **options) -> TorchEngine:
    module, info = open_torchscript(plan.path, plan.device)
    return TorchEngine(plan, info, module, **options)


def load_exported(plan: Plan, **options) -> TorchEngine:
    """torch.export's ExportedProgram, run as a module (eager kernels; ``compile`` is an option as for eager)."""
    module, info = open_pt2(plan.path, "torch-export")
    return TorchEngine(plan, info, module, **options)


class AOTIEngine(Engine):
    """An AOTInductor package: kernels compiled to C++ for this CPU at export; no Python model code runs."""

    def __init__(self, plan: Plan, *, threads: int | None = None, live: bool = False) -> None:
        import torch

        runner, info = open_pt2(plan.path, "aoti")
        super().__init__(plan.path, info)
        self.name, self.precision, self.device = plan.engine, plan.precision, plan.device
        if threads:
            torch.set_num_threads(threads)
        self.runner = runner
        self.detail = "AOTInductor"

    def _run(self, clips: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.runner(torch.from_numpy(clips))
        return (out[0] if isinstance(out, (list, tuple)) else out).float().numpy()

    def close(self) -> None:
        self.runner = None
        super().close()


def load_aoti(plan: Plan, **options) -> AOTIEngine:
    return AOTIEngine(plan, **options)


def open_torchscript(path: str | Path, device: str = "cpu"):
    """(module, metadata) of a TorchScript artifact, from one load, onto ``device``.

    A frozen module keeps its weights as graph constants, which ``module.to(device)`` does not
    move: only ``map_location`` puts them on the GPU.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file. Export one with `c3d-rt export CKPT --out DIR`.")
    extra = {TS_EXTRA_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:
        raise ArtifactError(f"{path}: not a loadable TorchScript file ({describe(exc)}).") from None
    if not extra[TS_EXTRA_FILE]:
        raise ArtifactError(f"{path}: has no {TS_EXTRA_FILE} extra file; export it with `c3d-rt export`.")
    return module, ArtifactInfo.from_metadata(json.loads(extra[TS_EXTRA_FILE]), str(path))


def open_pt2(path: str | Path, kind: str):
    """(runnable, metadata) of a ``.pt2`` artifact: ``kind`` torch-export gives the ExportedProgram's module,
    aoti the AOTInductor package's compiled model.

    A ``.pt2`` is bound to the torch that wrote it (its serialisation schema, AOTInductor's ABI): one
    that does not load names both versions.
    """
    import torch

    from ..core.console import quiet_third_party

    info = read_zip_metadata(path)
    try:
        with quiet_third_party():  # torch.export logs its own traceback first: the message below says it all
            runnable = _load_pt2_runnable(path, kind)
    except Exception as exc:
        written = info.runtime_version or "an unrecorded version"
        hint = (f"export it again here (`c3d-rt export CKPT --formats {kind}`) or install torch=={written}"
                if info.runtime_version and info.runtime_version != torch.__version__ else
                f"export it again (`c3d-rt export CKPT --formats {kind}`)")
        raise ArtifactError(f"{path}: written by torch {written}; torch {torch.__version__} here cannot load it "
                            f"({describe(exc)}). A .pt2 runs only on the torch that wrote it: {hint}.") from None
    return runnable, info


def _load_pt2_runnable(path: Path, kind: str):
    import torch

    if kind == "aoti":
        from torch._inductor import aoti_load_package

        return aoti_load_package(str(path))
    return torch.export.load(str(path)).module()
