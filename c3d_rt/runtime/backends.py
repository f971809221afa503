"""ONNX Runtime sessions for exported C3D models: created once, on the best provider that really loads.

``onnxruntime-gpu`` lists the CUDA and TensorRT providers even on machines
without a GPU and silently falls back to the CPU when they fail to load, so the
provider in use is read back from the session, never assumed. On CUDA, inputs
and outputs are bound to preallocated device buffers (I/O binding), which is
also what CUDA graphs need.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np

from ..artifacts import INPUT_NAME, OUTPUT_NAME, ArtifactError, ArtifactInfo, read_onnx_info
from ..errors import C3DError

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


class BackendError(C3DError):
    """A runtime or provider that cannot be used on this machine."""


def cuda_driver_present() -> bool:
    """Whether an NVIDIA driver is installed (without it, asking ORT for CUDA only prints load errors)."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.dylib"]
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def provider_chain(provider: str) -> list:
    """ORT's provider list for ``provider`` (auto, cpu, cuda, tensorrt), the CPU always last as the fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider == "auto":
        provider = "cuda" if "CUDAExecutionProvider" in available and cuda_driver_present() else "cpu"
    if provider not in PROVIDER_NAMES:
        raise BackendError(f"unknown provider {provider!r}; choose auto, cuda, tensorrt or cpu")
    if PROVIDER_NAMES[provider] not in available:
        raise BackendError(f"ONNX Runtime {ort.__version__} here has no {PROVIDER_NAMES[provider]} (it has "
                           f"{', '.join(available)}). Install onnxruntime-gpu for cuda/tensorrt, or pass --provider cpu.")
    chain: list = []
    if provider == "tensorrt":
        trt_options = {"trt_fp16_enable": "1", "trt_engine_cache_enable": "1",
                       "trt_engine_cache_path": str(Path.home() / ".cache" / "c3d-rt" / "trt")}
        chain.append(("TensorrtExecutionProvider", trt_options))
    if provider in ("cuda", "tensorrt"):
        chain.append("CUDAExecutionProvider")
    return chain + ["CPUExecutionProvider"]


def _preload_cuda_libraries() -> None:
    """Let ORT find CUDA and cuDNN inside the nvidia-* wheels that a CUDA build of torch brings."""
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception:  # nothing to preload: ORT then looks in the system paths as usual
            pass


class OrtModel:
    """One ONNX Runtime session on an exported c3d-rt model: ``model(clips) -> logits``.

    ``clips`` is float32 ``(B, 3, T, c, c)``; the metadata in the file says what T and c are.
    """

    def __init__(self, path: str | Path, provider: str = "auto", *, threads: int | None = None,
                 spin: bool = True) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.info: ArtifactInfo = read_onnx_info(self.path)
        chain = provider_chain(provider)
        if any(name != "CPUExecutionProvider" for name in map(_name, chain)):
            _preload_cuda_libraries()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        if not spin:  # leave idle cores to the capture thread instead of spinning between kernels
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=chain)
        except Exception as exc:
            raise BackendError(f"{self.path}: ONNX Runtime could not create a session "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None
        self.provider = self.session.get_providers()[0]
        wanted = _name(chain[0])
        if provider != "auto" and self.provider != wanted:
            raise BackendError(f"{wanted} was requested but did not load (ONNX Runtime fell back to {self.provider}); "
                               "it needs an NVIDIA GPU with CUDA 13 and cuDNN 9 libraries. Pass --provider cpu "
                               "to run on the CPU.")
        self._check_signature()
        self.on_device = self.provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        self._bindings: dict[int, tuple] = {}

    def _check_signature(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        expected = list(self.info.model_config.input_shape(1))[1:]
        if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
            raise ArtifactError(f"{self.path}: expected one input '{INPUT_NAME}' and one output '{OUTPUT_NAME}', "
                                f"found inputs {[i.name for i in inputs]} and outputs {[o.name for o in outputs]}")
        shape = inputs[0].shape[1:]
        if [d if isinstance(d, int) else None for d in shape] != expected:
            raise ArtifactError(f"{self.path}: its metadata says clips of (B, {', '.join(map(str, expected))}) but "
                                f"the graph takes (B, {', '.join(map(str, shape))}). Re-export the checkpoint.")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.info.model_config.input_shape(1)[1:]

    @property
    def num_classes(self) -> int:
        return len(self.info.labels)

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        clips = np.ascontiguousarray(clips, dtype=np.float32)
        if not self.on_device:
            return self.session.run([OUTPUT_NAME], {INPUT_NAME: clips})[0]
        binding, device_in, device_out = self._binding(clips.shape[0])
        device_in.update_inplace(clips)
        self.session.run_with_iobinding(binding)
        return device_out.numpy()

    def _binding(self, batch: int):
        """Device buffers for a batch size, allocated once and reused by every call at that size."""
        import onnxruntime as ort

        if batch not in self._bindings:
            device_in = ort.OrtValue.ortvalue_from_shape_and_type((batch, *self.input_shape), np.float32, "cuda", 0)
            device_out = ort.OrtValue.ortvalue_from_shape_and_type((batch, self.num_classes), np.float32, "cuda", 0)
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(INPUT_NAME, device_in)
            binding.bind_ortvalue_output(OUTPUT_NAME, device_out)
            self._bindings[batch] = (binding, device_in, device_out)
        return self._bindings[batch]


def _name(entry) -> str:
    return entry[0] if isinstance(entry, tuple) else entry


