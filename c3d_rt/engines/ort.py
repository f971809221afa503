"""ONNX Runtime: CPU; CUDA with I/O binding and CUDA graphs; TensorRT through its provider.

``onnxruntime-gpu`` lists the CUDA and TensorRT providers even on machines
without a GPU and silently falls back to the CPU when they fail to load, so the
provider in use is read back from the session, never assumed. On CUDA, every
batch size gets device buffers allocated once and bound to the session (I/O
binding); with CUDA graphs the first call at a size captures the whole model
and later calls replay it, which removes per-kernel launch cost (what limits
batch 1 on a big GPU).
"""

from __future__ import annotations

import numpy as np

from ..artifacts.info import FEATURE_LAYERS, INPUT_NAME, OUTPUT_NAME, ArtifactError, read_onnx_info
from ..core.errors import describe
from ..core.fileio import user_cache_dir
from .base import Engine, EngineError, EngineUnavailable, Plan

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def _preload_cuda_libraries() -> None:
    """Let ORT find CUDA and cuDNN inside the nvidia-* wheels that a CUDA build of torch brings."""
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception:  # nothing to preload: ORT then looks in the system paths as usual
            pass


def provider_chain(engine: str, precision: str, device: str, cuda_graph: bool) -> list:
    """ORT's providers for a plan: the wanted one first, then the CPU (ORT needs it for a few ops)."""
    if device == "cpu":
        return [CPU]
    cuda_options = {"device_id": "0", "use_tf32": "0" if precision == "fp32" else "1"}  # fp32 means fp32
    if cuda_graph:
        cuda_options["enable_cuda_graph"] = "1"
    chain: list = [(CUDA, cuda_options), CPU]
    if engine == "tensorrt":
        cache = user_cache_dir("tensorrt")
        trt_options = {"trt_fp16_enable": "1" if precision == "fp16" else "0"}
        if cache is not None:  # engines take minutes to build: keep them
            trt_options.update({"trt_engine_cache_enable": "1", "trt_engine_cache_path": str(cache),
                                "trt_timing_cache_enable": "1", "trt_timing_cache_path": str(cache)})
        chain.insert(0, (TRT, trt_options))
    return chain


def _name(entry) -> str:
    return entry[0] if isinstance(entry, tuple) else entry


class OrtEngine(Engine):
    """One ONNX Runtime session on an exported c3d-rt ONNX file."""

    def __init__(self, plan: Plan, *, threads: int | None = None, live: bool = False,
                 cuda_graph: bool | None = None) -> None:
        import onnxruntime as ort

        super().__init__(plan.path, read_onnx_info(plan.path))
        self.name, self.precision, self.device = plan.engine, plan.precision, plan.device
        cuda_graph = plan.device == "cuda" and plan.engine == "ort" if cuda_graph is None else cuda_graph
        self.session = self._session(ort, threads, not live, cuda_graph)
        self.provider = self.session.get_providers()[0]
        self._check_provider(plan)
        self.outputs = self.info.outputs
        self._check_signature()
        self.on_device = self.provider in (CUDA, TRT)
        self.cuda_graph = self.on_device and self.session.get_provider_options().get(CUDA, {}).get(
            "enable_cuda_graph") == "1"  # read back: the session may have been made without them
        self._bindings: dict[int, tuple] = {}
        self.detail = self.provider.replace("ExecutionProvider", "") + (
            ", I/O binding" if self.on_device else "") + (", CUDA graphs" if self.cuda_graph else "")

    def _session(self, ort, threads: int | None, spin: bool, cuda_graph: bool):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        if not spin:  # leave idle cores to the capture thread instead of spinning between kernels
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        chain = provider_chain(self.name, self.precision, self.device, cuda_graph)
        if self.device == "cuda":
            _preload_cuda_libraries()
        try:
            return ort.InferenceSession(str(self.path), options, providers=chain)
        except Exception as exc:
            if cuda_graph:  # some node stays on the CPU: CUDA graphs cannot capture it
                return self._session(ort, threads, spin, False)
            raise EngineError(f"{self.path}: ONNX Runtime could not create a session "
                              f"({describe(exc)})") from None

    def _check_provider(self, plan: Plan) -> None:
        wanted = {"cpu": CPU, "cuda": CUDA}[plan.device] if plan.engine == "ort" else TRT
        if self.provider != wanted:
            raise EngineUnavailable(f"{wanted} was requested but did not load (ONNX Runtime fell back to "
                                    f"{self.provider}); it needs an NVIDIA GPU with CUDA 13 and cuDNN 9 libraries"
                                    + (" and TensorRT" if wanted == TRT else "") + ". Use --device cpu.")

    def _check_signature(self) -> None:
        """One input; the outputs its metadata names (logits; fc6, fc7 and logits for a features file)."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        expected = list(self.outputs)
        if (OUTPUT_NAME not in expected or not set(expected) <= {OUTPUT_NAME, *FEATURE_LAYERS}
                or [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != expected):
            raise ArtifactError(f"{self.path}: expected one input '{INPUT_NAME}' and the outputs {expected} its "
                                f"metadata names (logits; {', '.join(FEATURE_LAYERS)} and logits for a features "
                                f"file), found inputs {[i.name for i in inputs]} and outputs "
                                f"{[o.name for o in outputs]}. Re-export the checkpoint.")
        shape = inputs[0].shape[1:]
        expected = list(self.input_shape)
        if [d if isinstance(d, int) else None for d in shape] != expected:
            raise ArtifactError(f"{self.path}: its metadata says clips of (B, {', '.join(map(str, expected))}) but "
                                f"the graph takes (B, {', '.join(map(str, shape))}). Re-export the checkpoint.")

    def _run(self, clips: np.ndarray) -> np.ndarray:
        return self._run_layers(clips, (OUTPUT_NAME,))[OUTPUT_NAME]

    def _run_layers(self, clips: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        if not self.on_device:
            return dict(zip(names, self.session.run(list(names), {INPUT_NAME: clips})))
        binding, device_in, device_out, run_options = self._binding(clips.shape[0])
        device_in.update_inplace(clips)
        self.session.run_with_iobinding(binding, run_options)  # every output is bound: one graph a batch size
        return {name: device_out[name].numpy() for name in names}  # copies to the host: after the GPU finished

    def _output_dims(self) -> dict[str, int]:
        """Each output's width, from the session's output shapes (the metadata's where a dimension is symbolic)."""
        config = self.info.model_config
        fallback = {OUTPUT_NAME: len(self.labels), **{name: config.fc_width for name in FEATURE_LAYERS}}
        return {o.name: o.shape[-1] if isinstance(o.shape[-1], int) else fallback[o.name]
                for o in self.session.get_outputs()}

    def _binding(self, batch: int):
        """Device buffers for a batch size (the input and every output), allocated once and reused by every call
        at that size.

        With CUDA graphs each size is its own graph (``gpu_graph_id``), captured on its first run.
        """
        import onnxruntime as ort

        if batch not in self._bindings:
            device_in = ort.OrtValue.ortvalue_from_shape_and_type((batch, *self.input_shape), np.float32, "cuda", 0)
            device_out = {name: ort.OrtValue.ortvalue_from_shape_and_type((batch, dim), np.float32, "cuda", 0)
                          for name, dim in self._output_dims().items()}
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(INPUT_NAME, device_in)
            for name, value in device_out.items():
                binding.bind_ortvalue_output(name, value)
            run_options = ort.RunOptions()
            if self.cuda_graph:
                run_options.add_run_config_entry("gpu_graph_id", str(len(self._bindings) + 1))
            self._bindings[batch] = (binding, device_in, device_out, run_options)
        return self._bindings[batch]

    @property
    def buffers_allocated(self) -> int:
        """How many batch sizes have device buffers (a test checks that a repeated size allocates nothing)."""
        return len(self._bindings)

    def close(self) -> None:
        self._bindings.clear()
        self.session = None
        super().close()


def load_ort(plan: Plan, **options) -> OrtEngine:
    return OrtEngine(plan, **options)


def load_tensorrt(plan: Plan, **options) -> OrtEngine:
    return load_ort(plan, **options)
