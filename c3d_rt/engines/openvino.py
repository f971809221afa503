"""OpenVINO on the CPU: f32, bf16 where the CPU has it, int8 from NNCF's IR (or the QDQ ONNX file).

``mode="latency"`` (live use) runs one request with every core on it;
``mode="throughput"`` (batches) lets OpenVINO make several streams and splits a
batch across that many requests. Compiled models are cached under the user
cache folder, so a second start of a full-size model skips compilation.
"""

from __future__ import annotations

import numpy as np

from ..artifacts.formats import read_artifact_info
from ..artifacts.info import OUTPUT_NAME, ArtifactError
from ..core.errors import describe
from ..core.fileio import user_cache_dir
from .base import Engine, EngineError, EngineUnavailable, Plan
from .registry import precision_unavailable

MODES = ("latency", "throughput", "defaults")  # defaults: compile_model(path, "CPU") as a user would, no config


class OpenVinoEngine(Engine):
    name = "openvino"

    def __init__(self, plan: Plan, *, threads: int | None = None, live: bool = False, mode: str = "latency",
                 cache: bool = True) -> None:
        import openvino as ov

        super().__init__(plan.path, read_artifact_info(plan.path))
        if mode not in MODES:
            raise EngineError(f"unknown OpenVINO mode {mode!r}; choose {', '.join(MODES)}")
        self.precision, self.device, self.mode = plan.precision, plan.device, mode
        why = precision_unavailable(plan)
        if why:
            raise EngineUnavailable(why)
        core = ov.Core()
        config = {} if mode == "defaults" else self._config(plan, mode, threads, cache)
        try:
            self.compiled = core.compile_model(str(plan.path), "CPU", config)
        except Exception as exc:
            raise EngineError(f"{plan.path}: OpenVINO could not compile it ({describe(exc)})") from None
        self.outputs = self.info.outputs
        self._check_signature()
        self.indices = self._output_indices()  # outputs by name: a features file has three
        self.request = self.compiled.create_infer_request()
        self.streams = int(self.compiled.get_property("NUM_STREAMS"))
        # throughput: one request a stream, each given a share of the batch (no Python callback: one run on
        # OpenVINO's thread could drop the last reference to the compiled model there, which then joins itself)
        self.parallel = [self.compiled.create_infer_request() for _ in range(self.streams)] \
            if mode == "throughput" else []
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # f32, bf16, f16
        how = "no settings (OpenVINO's defaults)" if mode == "defaults" else f"{mode} hint"
        self.detail = f"{how}, {self.streams} stream(s), inference precision {hint}"
        if mode == "defaults" and plan.precision == "fp32":  # its defaults may lower fp32 to bf16
            self.precision = "bf16" if hint == "bf16" else "fp32"

    def _check_signature(self) -> None:
        """Refuse a file whose graph does not take the clips its metadata describes (before a camera opens)."""
        shape = self.compiled.input(0).get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape][1:]
        if len(self.compiled.inputs) != 1 or dims != list(self.input_shape):
            expected = ", ".join(map(str, self.input_shape))
            raise ArtifactError(f"{self.path}: its metadata says clips of (B, {expected}) but the graph takes "
                                f"{shape}. Re-export the checkpoint.")
        names = [sorted(o.get_names()) for o in self.compiled.outputs]
        if len(names) != len(self.outputs) or any(not any(n in found for found in names) for n in self.outputs):
            raise ArtifactError(f"{self.path}: its metadata names the outputs {list(self.outputs)} but the graph "
                                f"has {names}. Re-export the checkpoint.")

    def _output_indices(self) -> dict[str, int]:
        """Output name -> index (each output may have several names)."""
        return {name: next(i for i, o in enumerate(self.compiled.outputs) if name in o.get_names())
                for name in self.outputs}

    @staticmethod
    def _config(plan: Plan, mode: str, threads: int | None, cache: bool) -> dict:
        # int8 IRs compute their quantised layers in int8 either way; f32 keeps the rest as exported.
        config = {"INFERENCE_PRECISION_HINT": "bf16" if plan.precision == "bf16" else "f32",
                  "PERFORMANCE_HINT": mode.upper()}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        cache_dir = user_cache_dir("openvino") if cache else None
        if cache_dir is not None:
            config["CACHE_DIR"] = str(cache_dir)
        return config

    def _run(self, clips: np.ndarray) -> np.ndarray:
        return self._run_layers(clips, (OUTPUT_NAME,))[OUTPUT_NAME]

    def _run_layers(self, clips: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        indices = [self.indices[name] for name in names]
        if not self.parallel or len(clips) == 1:
            self.request.infer({0: clips})
            return {name: self.request.get_output_tensor(i).data.copy() for name, i in zip(names, indices)}
        chunks = np.array_split(clips, min(len(clips), len(self.parallel)))
        requests = self.parallel[: len(chunks)]
        for request, chunk in zip(requests, chunks):
            request.start_async({0: chunk})
        for request in requests:
            request.wait()
        return {name: np.concatenate([r.get_output_tensor(i).data.copy() for r in requests])
                for name, i in zip(names, indices)}

    def close(self) -> None:
        self.parallel = []
        self.request = self.compiled = None
        super().close()


def load_openvino(plan: Plan, **options) -> OpenVinoEngine:
    return OpenVinoEngine(plan, **options)
