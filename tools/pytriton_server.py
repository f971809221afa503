"""Serve c3d-rt Triton model folders from a real Triton server on a machine without Docker or a GPU.

PyTriton (``nvidia-pytriton``) ships a ``tritonserver`` binary with the Python backend only,
not the ONNX Runtime backend, so this binds each model folder's ``1/model.onnx`` to a Python
function that runs it with ONNX Runtime, under the name, input, output, max_batch_size,
dynamic batching and parameters of its ``config.pbtxt`` (parsed with Triton's schema). To a
client it is the server that ``tritonserver --model-repository`` would be, over real HTTP and
gRPC. The tests use it (tests/test_triton.py); run it by hand with::

    tools/pytriton-venv.sh                         # once: .venv-triton with nvidia-pytriton (numpy<2)
    .venv-triton/bin/python tools/pytriton_server.py c3d=export/triton/c3d

``NAME=FOLDER`` serves FOLDER as model NAME (repeat for more); ``--scale NAME=F`` multiplies that
model's logits by F (a model that computes something else, for the tests). Ctrl-C stops it.
It runs in its own virtual environment because PyTriton 0.7 pins numpy<2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def _libpython_on_path() -> None:
    """The Python backend's stub must load this interpreter's libpython, not the system's (it fails in
    multiprocessing otherwise): re-run once with its folder on LD_LIBRARY_PATH."""
    import sysconfig

    libdir = sysconfig.get_config_var("LIBDIR") or ""
    if libdir and libdir not in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        os.environ["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)
        os.execv(sys.executable, [sys.executable, *sys.argv])


def read_config(folder: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def bind(triton, name: str, folder: Path, scale: float) -> None:
    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    config = read_config(folder)
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (out,) = config.input, config.output

    @batch
    def infer(**inputs):
        logits = session.run([out.name], {inp.name: inputs[inp.name]})[0]
        return {out.name: (logits * np.float32(scale)).astype(np.float32)}

    batching = config.dynamic_batching
    _PARAMETERS[name] = {k: v.string_value for k, v in config.parameters.items()}
    triton.bind(model_name=name, infer_func=infer,
                inputs=[Tensor(name=inp.name, dtype=np.float32, shape=tuple(inp.dims))],
                outputs=[Tensor(name=out.name, dtype=np.float32, shape=tuple(out.dims))],
                config=ModelConfig(max_batch_size=config.max_batch_size, batcher=DynamicBatcher(
                    max_queue_delay_microseconds=batching.max_queue_delay_microseconds,
                    preferred_batch_size=list(batching.preferred_batch_size) or None)), strict=True)


_PARAMETERS: dict[str, dict[str, str]] = {}


def _with_config_parameters() -> None:
    """PyTriton writes its own config.pbtxt; give it the folder's parameters too (c3d-rt's metadata)."""
    from pytriton.models.model import Model

    original = Model._get_triton_model_config

    def config(self):
        result = original(self)
        result.backend_parameters.update(_PARAMETERS.get(self.model_name, {}))
        return result

    Model._get_triton_model_config = config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="NAME=FOLDER: a c3d-rt Triton model folder served as NAME")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--scale", action="append", default=[], help="NAME=F: multiply NAME's logits by F")
    args = parser.parse_args()
    _libpython_on_path()
    from pytriton.triton import Triton, TritonConfig

    scales = {k: float(v) for k, v in (s.split("=", 1) for s in args.scale)}
    _with_config_parameters()
    config = TritonConfig(http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                          http_address="127.0.0.1", grpc_address="127.0.0.1")
    with Triton(config=config) as triton:
        for spec in args.models:
            name, folder = spec.split("=", 1)
            bind(triton, name, Path(folder), scales.get(name, 1.0))
        print("serving", ", ".join(m.split("=", 1)[0] for m in args.models), flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
