"""The one interface every runtime implements: ``engine(clips) -> logits``, and ``engine.layers(clips)`` for
the outputs a file has beyond them (fc6, fc7: see ``Engine.outputs``).

An engine is built once from an exported artifact (or, for eager PyTorch, a
checkpoint), says what it is (name, precision, device, the artifact's metadata),
and maps float32 clips ``(B, 3, T, H, W)`` to float32 logits ``(B, classes)``.
A call returns only when the device has finished, so timing a call times the
work. The live recognizer, the benchmark, the exporter's proof and ``auto`` all
go through this interface, so each runtime is loaded and called one way.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts.formats import CHECKPOINT, FORMATS
from ..artifacts.info import FEATURE_LAYERS, OUTPUT_NAME, ArtifactInfo
from ..core.errors import C3DError, describe


class EngineError(C3DError):
    """An engine that cannot do what was asked: bad input, a device that failed, a model it cannot read."""


class EngineUnavailable(EngineError):
    """This engine, precision or device cannot run on this machine; the message says why and what to install."""


class Engine(ABC):
    """A loaded model: call it on clips, get logits. Subclasses implement ``_run`` (and ``close`` if needed).

    Every loader takes ``threads`` (CPU threads; None: every core) and ``live`` (True in the live
    recognizer: batch-1 latency, and idle threads sleep instead of spinning, since the capture thread
    needs a core), plus options of its own.
    """

    name: str = ""  # the registry's engine name: torch, torchscript, ort, tensorrt, openvino
    precision: str = "fp32"  # what it computes in: fp32, fp16, bf16, int8
    device: str = "cpu"  # cpu or cuda
    detail: str = ""  # how: provider, hints, I/O binding...
    outputs: tuple[str, ...] = (OUTPUT_NAME,)  # what ``layers`` gives: a features file adds fc6 and fc7

    def __init__(self, path: Path, info: ArtifactInfo) -> None:
        self.path, self.info = Path(path), info

    # --- what it is ------------------------------------------------------------------------------

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(3, T, H, W) of one clip, from the artifact's own metadata."""
        return self.info.model_config.input_shape(1)[1:]

    @property
    def labels(self) -> list[str]:
        return self.info.labels

    @property
    def key(self) -> str:
        """``engine/precision/device``: how the bench, ``auto`` and the live summary name this engine."""
        return f"{self.name}/{self.precision}/{self.device}"

    def describe(self) -> str:
        info, prep = self.info, self.info.preprocessing
        how = f" ({self.detail})" if self.detail else ""
        return (f"{self.path.name}: {self.name} {self.precision} on {self.device}{how}; {len(info.labels)} classes, "
                f"clips of {prep.clip_len} x {prep.crop_size}x{prep.crop_size}, every {prep.frame_interval} frame(s)")

    # --- running ---------------------------------------------------------------------------------

    closed = False

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        """Logits ``(B, classes)`` float32 for clips ``(B, 3, T, H, W)``; returns after the device has finished."""
        if self.closed:
            raise EngineError(f"{self.key} on {self.path.name} was closed; load it again to run it")
        return self._run(self.check_input(clips))

    def layers(self, clips: np.ndarray,
               names: str | tuple[str, ...] | list[str] | None = None) -> dict[str, np.ndarray]:
        """Outputs by name (``names``: some of ``outputs``; None: all of them), each float32 ``(B, dims)``, for clips
        ``(B, 3, T, H, W)``; fc6 and fc7 are taken after their ReLU. A name the file lacks is EngineUnavailable."""
        if self.closed:
            raise EngineError(f"{self.key} on {self.path.name} was closed; load it again to run it")
        wanted = self.check_layers(names)
        got = self._run_layers(self.check_input(clips), wanted)
        return {name: np.asarray(got[name], np.float32) for name in wanted}

    def check_layers(self, names: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
        """The names asked for, each one this engine gives (else why not, and which file has it)."""
        wanted = self.outputs if names is None else (names,) if isinstance(names, str) else tuple(names)
        known = (*FEATURE_LAYERS, OUTPUT_NAME)
        unknown = [n for n in wanted if n not in known]
        if unknown or not wanted:
            raise EngineError(f"unknown layer {', '.join(map(repr, unknown)) or 'list (empty)'}; choose from "
                              f"{', '.join(known)}")
        missing = [n for n in wanted if n not in self.outputs]
        if missing:
            raise EngineUnavailable(f"{self.path.name} ({self.key}) gives {', '.join(self.outputs)}, not "
                                    f"{', '.join(missing)}. {layer_hint(missing[0])}")
        return wanted

    def _run_layers(self, clips: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The named outputs for validated clips; an engine that gives more than the logits overrides it."""
        return {OUTPUT_NAME: self._run(clips)}

    def check_input(self, clips: np.ndarray) -> np.ndarray:
        shape = tuple(getattr(clips, "shape", ()))
        if not isinstance(clips, np.ndarray) or len(shape) != 5 or shape[1:] != self.input_shape or shape[0] < 1:
            expected = ", ".join(map(str, self.input_shape))
            raise EngineError(f"{self.path.name}: expected clips as a float32 array (B, {expected}) with B >= 1, "
                              f"got {type(clips).__name__} of shape {shape}. Preprocess frames with "
                              "c3d_rt.core.transforms.preprocess_clip and add a batch axis.")
        if clips.dtype != np.float32:
            raise EngineError(f"{self.path.name}: expected float32 clips (mean-subtracted pixels), got {clips.dtype}. "
                              "Preprocess frames with c3d_rt.core.transforms.preprocess_clip (float32).")
        return np.ascontiguousarray(clips)

    @abstractmethod
    def _run(self, clips: np.ndarray) -> np.ndarray:
        """Logits for validated, contiguous float32 clips."""

    def warmup(self, batch: int = 1, iters: int = 2) -> None:
        """First calls allocate, compile and tune; make them before anything is timed or a camera opens.

        A model whose graph does not take the clips its metadata describes fails here, before a camera opens.
        """
        clips = np.zeros((batch, *self.input_shape), np.float32)
        try:
            for _ in range(iters):
                self(clips)
        except EngineError:
            raise
        except Exception as exc:
            expected = ", ".join(map(str, self.input_shape))
            raise EngineError(f"{self.path}: {self.key} cannot run the clips its metadata describes (B, {expected}) "
                              f"({describe(exc)}). The file and its metadata "
                              "disagree: export the checkpoint again.") from None

    def close(self) -> None:
        """Free the runtime's memory (sessions, compiled models, device buffers); subclasses call this last."""
        self.closed = True

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def time_calls(engine, clips: np.ndarray, warmup: int, iters: int) -> list[float]:
    """Milliseconds of ``iters`` calls after ``warmup`` untimed ones: the one timer of bench and ``auto``.

    Each call is synchronised with its device (see :class:`Engine`), so these are real latencies.
    """
    for _ in range(warmup):
        engine(clips)
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        engine(clips)
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def layer_hint(layer: str) -> str:
    """Where ``layer`` comes from, for a file or a folder that lacks it."""
    features = FORMATS["onnx-features"].file
    return (f"{layer} is an output of {features} (`c3d-rt export CKPT --formats onnx-features` writes it, run by "
            f"ort or openvino) and of the eager model (--engine torch on the training checkpoint).")


PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Plan:
    """One concrete way to run a model: which engine reads which file at which precision on which device."""

    engine: str
    precision: str
    device: str
    path: Path
    fmt: str  # a FORMATS name, or CHECKPOINT

    @property
    def key(self) -> str:
        return f"{self.engine}/{self.precision}/{self.device}"

    @property
    def lowered(self) -> bool:
        """Whether the runtime lowers the stored precision itself (OpenVINO bf16, TensorRT fp16, autocast)."""
        stored = "fp32" if self.fmt == CHECKPOINT else FORMATS[self.fmt].precision
        return stored != self.precision
