"""A Triton Inference Server model repository for the proven ONNX model (the ``triton`` export format).

``c3d-rt export --formats triton`` writes, inside the export folder::

    triton/c3d/config.pbtxt      Triton's ONNX Runtime backend: named input/output with dims, max_batch_size,
                                 dynamic batching, instance groups, the artifact's metadata as parameters
    triton/c3d/labels.txt        one class name per output (Triton's classification extension reads it)
    triton/c3d/1/model.onnx      the proven c3d.onnx, byte for byte (the exporter proves it like c3d.onnx)

The config is written as text (readable, with comments) and then parsed with Triton's own
model-config protobuf schema (``tritonclient.grpc.model_config_pb2``), so a field Triton would
reject fails the export, not the server's start. Torch-free: the runtime may import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import C3DError, describe
from .info import INPUT_NAME, OUTPUT_NAME, ArtifactInfo

MODEL_NAME = "c3d"  # the name a client asks the server for
REPOSITORY = "triton"  # the repository folder inside an export folder
MODEL_FILE = f"{REPOSITORY}/{MODEL_NAME}/1/model.onnx"  # the format's file (the registry's FORMATS entry)
CONFIG_FILE, LABELS_FILE = "config.pbtxt", "labels.txt"
KINDS = ("cpu", "gpu", "tensorrt")  # instance groups: KIND_CPU, KIND_GPU, KIND_GPU with the TensorRT accelerator
INSTALL = "pip install 'c3d-rt[triton]'"


class TritonConfigError(C3DError):
    """A Triton model configuration that Triton's schema rejects, or options that cannot make one."""


@dataclass(frozen=True)
class TritonOptions:
    """How the server should run the model: batch limits, batching delay, where its instances live."""

    kind: str = "cpu"  # cpu, gpu, tensorrt (see KINDS)
    max_batch_size: int = 8  # the largest batch the dynamic batcher forms (and a client may send)
    queue_delay_us: int = 2000  # how long a request may wait for others to join its batch
    instances: int = 1  # model instances per group (per GPU for KIND_GPU)

    def preferred_batch_sizes(self) -> list[int]:
        """Powers of two above 1 up to the maximum, the maximum included (2, 4, 8 for 8): the batcher prefers them."""
        sizes = [b for b in (1, 2, 4, 8, 16, 32, 64, 128) if b < self.max_batch_size]
        return [b for b in sizes if b > 1] + [self.max_batch_size]

    def check(self) -> None:
        if self.kind not in KINDS:
            raise TritonConfigError(f"Triton instance kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if not 1 <= self.max_batch_size <= 4096:
            raise TritonConfigError(f"Triton max_batch_size {self.max_batch_size}: expected 1 to 4096 (the ONNX "
                                    "model's batch axis goes up to 4096)")
        if self.queue_delay_us < 0 or self.instances < 1:
            raise TritonConfigError(f"Triton queue delay {self.queue_delay_us} us and {self.instances} instance(s): "
                                    "expected a delay >= 0 and at least one instance")


def model_dir(path: Path) -> Path:
    """The model folder (``.../c3d``) of the repository's ``.../c3d/1/model.onnx``."""
    return Path(path).parent.parent


def is_repository_model(path: Path) -> bool:
    """Whether ``path`` is the ONNX file of a c3d-rt Triton repository (``.../triton/c3d/1/model.onnx``)."""
    return Path(path).as_posix().endswith(MODEL_FILE)


def companion_files(path: Path) -> list[Path]:
    """The files of the repository artifact, the ONNX model first: model.onnx, config.pbtxt, labels.txt."""
    folder = model_dir(path)
    return [Path(path), folder / CONFIG_FILE, folder / LABELS_FILE]


def _quoted(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def config_text(info: ArtifactInfo, options: TritonOptions) -> str:
    """The config.pbtxt of a model described by ``info`` (its metadata go in as parameters)."""
    options.check()
    shape = info.model_config.input_shape(1)[1:]  # (3, T, H, W): Triton adds the batch axis itself
    kind = "KIND_CPU" if options.kind == "cpu" else "KIND_GPU"
    lines = [
        f"# Written by c3d-rt {info.exporter_version}: 1/model.onnx is proven equivalent to its checkpoint (see the",
        f"# export's report.json; source checkpoint SHA-256 {info.source_sha256[:16]}...). Serve with",
        "#   tritonserver --model-repository=<this export>/triton",
        f"name: {_quoted(MODEL_NAME)}",
        'backend: "onnxruntime"',
        f"max_batch_size: {options.max_batch_size}",
        "input [",
        f"  {{ name: {_quoted(INPUT_NAME)} data_type: TYPE_FP32 dims: [ {', '.join(map(str, shape))} ] }}",
        "]",
        "output [",
        f"  {{ name: {_quoted(OUTPUT_NAME)} data_type: TYPE_FP32 dims: [ {len(info.labels)} ] "
        f"label_filename: {_quoted(LABELS_FILE)} }}",
        "]",
        "# Requests that arrive together are batched: a request waits at most the queue delay for others.",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {', '.join(map(str, options.preferred_batch_sizes()))} ]",
        f"  max_queue_delay_microseconds: {options.queue_delay_us}",
        "}",
        f"instance_group [ {{ count: {options.instances} kind: {kind} }} ]",
        "version_policy: { latest: { num_versions: 1 } }",
    ]
    if options.kind == "tensorrt":
        lines += [
            "# TensorRT builds its engine at the server's first load (minutes); FP32 is what c3d-rt proved.",
            "optimization { execution_accelerators { gpu_execution_accelerator: [ {",
            '  name: "tensorrt"',
            '  parameters { key: "precision_mode" value: "FP32" }',
            '  parameters { key: "max_workspace_size_bytes" value: "4294967296" }',
            "} ] } }",
        ]
    lines.append("# The artifact's self-description (c3d-rt metadata, JSON values): clients check them.")
    for key, value in info.to_metadata().items():
        lines.append(f"parameters {{ key: {_quoted(key)} value: {{ string_value: {_quoted(value)} }} }}")
    return "\n".join(lines) + "\n"


def parse_config(text: str, where: str = CONFIG_FILE):
    """Parse config text with Triton's own schema (``ModelConfig`` from tritonclient); the message, or an error."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise TritonConfigError(f"checking {where} needs Triton's model-config schema from tritonclient: "
                                f"{INSTALL}") from None
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise TritonConfigError(f"{where}: Triton's model-config schema rejects it ({describe(exc)})") from None


def check_config(text: str, info: ArtifactInfo, options: TritonOptions) -> None:
    """Parse the written text with Triton's schema and check that it says what was meant."""
    config = parse_config(text)
    expected = {"name": MODEL_NAME, "max_batch_size": options.max_batch_size,
                "input": (INPUT_NAME, list(info.model_config.input_shape(1)[1:])),
                "output": (OUTPUT_NAME, [len(info.labels)]), "labels": json.dumps(info.labels)}
    found = {"name": config.name, "max_batch_size": config.max_batch_size,
             "input": (config.input[0].name, list(config.input[0].dims)),
             "output": (config.output[0].name, list(config.output[0].dims)),
             "labels": config.parameters["labels"].string_value}
    if found != expected:
        raise TritonConfigError(f"{CONFIG_FILE}: parsed as {found}, expected {expected} (a bug in c3d-rt's writer)")


def write_repository(onnx_path: Path, info: ArtifactInfo, target: Path, options: TritonOptions) -> None:
    """Write the repository's model folder around ``target`` (``.../c3d/1/model.onnx``), the ONNX copied in."""
    import shutil

    text = config_text(info, options)
    check_config(text, info, options)
    folder = model_dir(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, target)
    (folder / CONFIG_FILE).write_text(text)
    (folder / LABELS_FILE).write_text("".join(f"{label}\n" for label in info.labels))
