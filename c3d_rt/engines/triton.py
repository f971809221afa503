"""A Triton Inference Server as an engine: clips go to the server over HTTP or gRPC, logits come back.

The plan's file (the export's c3d.onnx, or its Triton repository's model.onnx) is the
reference: it says what the server must serve. At start the engine refuses a server that is
down, that has no ready model of that name, whose model takes other clips or gives other
outputs, or whose config names other labels (c3d-rt writes its metadata into config.pbtxt as
parameters), and then runs a few clips both on the server and on the local file with ONNX
Runtime and judges them with the shared equivalence rules: a server that serves another model
with the same shapes is refused too.

``tritonclient``'s HTTP client is built on gevent, whose connections belong to the thread that
made them; the live recognizer calls the engine from its own thread, so each thread gets its
own client.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import urlsplit

import numpy as np

from ..artifacts.info import INPUT_NAME, OUTPUT_NAME, read_onnx_info
from ..artifacts.triton import INSTALL, MODEL_NAME
from ..core.errors import describe
from .base import Engine, EngineError, EngineUnavailable, Plan
from .equivalence import judge

DEFAULT_PORTS = {"http": 8000, "https": 8000, "grpc": 8001}
KIND_DEVICES = {"KIND_GPU": "cuda", "KIND_CPU": "cpu"}
CHECK_SEED = 4321


class ServerMismatch(EngineError):
    """The server answers but serves something other than the local model."""


def parse_url(url: str) -> tuple[str, str]:
    """(protocol, host:port) of ``http://host:8000``, ``grpc://host:8001`` or ``host:port`` (HTTP)."""
    text = url.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        raise EngineError(f"--triton-url {url!r}: expected http://HOST:PORT, https://HOST:PORT or grpc://HOST:PORT "
                          "(Triton listens on 8000 for HTTP and 8001 for gRPC)")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise EngineError(f"--triton-url {url!r}: the port is not a number") from None
    return parts.scheme, f"{parts.hostname}:{port}"


def _client_module(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as exc:
        raise EngineUnavailable(f"the triton engine needs tritonclient ({describe(exc)}): {INSTALL}") from None
    return module


class TritonEngine(Engine):
    """A model served by Triton, checked against the local ONNX file it should be."""

    name = "triton"

    def __init__(self, plan: Plan, *, url: str | None = None, model_name: str = MODEL_NAME,
                 threads: int | None = None, live: bool = False, timeout_s: float = 60.0) -> None:
        super().__init__(plan.path, read_onnx_info(plan.path))
        if not url:
            raise EngineUnavailable("the triton engine needs a server: pass --triton-url http://HOST:8000 or "
                                    "grpc://HOST:8001 (or set C3D_RT_TRITON_URL)")
        self.url, self.model_name, self.timeout_s = url, model_name, timeout_s
        self.protocol, self.address = parse_url(url)
        self.module = _client_module(self.protocol)
        self.device = plan.device
        self._local = threading.local()
        self._clients: list = []
        try:
            self._check_server()
            config = self._check_model()
            self.max_batch = int(config.get("max_batch_size") or 0)
            kinds = {g.get("kind", "KIND_AUTO") for g in config.get("instance_group", [])}
            if len(kinds) == 1 and next(iter(kinds)) in KIND_DEVICES:
                self.device = KIND_DEVICES[next(iter(kinds))]
            self.detail = (f"{self.protocol.upper()} {self.address}, model {model_name}, max batch "
                           f"{self.max_batch}, {'/'.join(sorted(kinds)) or 'instances unknown'}")
            self._check_agreement()
        except BaseException:
            self.close()
            raise

    # --- talking to the server -----------------------------------------------------------------

    def client(self):
        """This thread's client (gevent connections must not cross threads)."""
        client = getattr(self._local, "client", None)
        if client is None:
            kwargs = {"ssl": self.protocol == "https"} if self.protocol != "grpc" else {}
            if self.protocol != "grpc":
                kwargs.update(connection_timeout=self.timeout_s, network_timeout=self.timeout_s)
            client = self.module.InferenceServerClient(url=self.address, **kwargs)
            self._local.client = client
            self._clients.append(client)
        return client

    def _ask(self, what: str, call, *args, **kwargs):
        """One request; any failure names the server and what was asked."""
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            raise EngineUnavailable(f"the Triton server at {self.url} did not answer {what} ({describe(exc)}). "
                                    "Is it running and is this its address? (README: Triton)") from None

    def _json(self, method: str, *args):
        call = getattr(self.client(), method)
        return self._ask(method, call, *args, **({"as_json": True} if self.protocol == "grpc" else {}))

    def _check_server(self) -> None:
        try:
            live = self.client().is_server_live()
        except Exception as exc:
            raise EngineUnavailable(f"no Triton server answers at {self.url} ({describe(exc)}). Start it (README: "
                                    "Triton) or pass the --triton-url it listens on.") from None
        if not live:
            raise EngineUnavailable(f"the Triton server at {self.url} says it is not live (still starting, or "
                                    "shutting down); try again when it is")

    def _served_models(self) -> str:
        try:
            index = self._json("get_model_repository_index")
        except EngineUnavailable:  # servers may keep their repository API to themselves
            return "(the server does not list its models to clients)"
        models = index.get("models", []) if isinstance(index, dict) else index
        names = [f"{m.get('name')} ({m.get('state', 'not loaded') or 'not loaded'})" for m in models]
        return ", ".join(names) or "nothing"

    def _check_model(self) -> dict:
        """The server's model has the local model's input, outputs and labels; its config (as JSON)."""
        if not self._ask(f"whether model {self.model_name} is ready", self.client().is_model_ready, self.model_name):
            raise ServerMismatch(f"the Triton server at {self.url} has no ready model '{self.model_name}' "
                                 f"(models there: {self._served_models()}). Serve this export's triton/ repository there "
                                 "(`c3d-rt export CKPT --formats triton`, README: Triton).")
        meta = self._json("get_model_metadata", self.model_name)
        config = self._json("get_model_config", self.model_name)
        config = config.get("config", config)
        expected = self._signature(INPUT_NAME, list(self.input_shape)), self._signature(OUTPUT_NAME,
                                                                                         [len(self.labels)])
        served = tuple(", ".join(self._signature(t.get("name"), [int(d) for d in t.get("shape", [])][1:],
                                                 t.get("datatype")) for t in meta.get(side, []))
                       for side in ("inputs", "outputs"))
        if served != expected:
            raise ServerMismatch(f"the Triton server at {self.url} serves '{self.model_name}' with input "
                                 f"{served[0] or 'none'} and output {served[1] or 'none'}; {self.path.name} expects "
                                 f"input {expected[0]} and output {expected[1]} (B = batch). It serves another "
                                 "model: point --triton-url at the server of this export, or deploy its triton/ "
                                 "repository there.")
        self._check_labels(config)
        return config

    @staticmethod
    def _signature(name, dims: list[int], datatype: str = "FP32") -> str:
        return f"{name} {datatype} (B, {', '.join(map(str, dims))})"

    def _check_labels(self, config: dict) -> None:
        served = config.get("parameters", {}).get("labels", {}).get("string_value")
        if served is None:
            return  # not a c3d-rt config: the agreement check below still compares what it computes
        try:
            labels = json.loads(served)
        except ValueError:
            labels = served
        if labels != self.labels:
            raise ServerMismatch(f"the Triton server at {self.url} serves '{self.model_name}' with labels "
                                 f"{_short(labels)}; {self.path.name} has {_short(self.labels)}. It serves another "
                                 "model: deploy this export's triton/ repository there.")

    def _check_agreement(self) -> None:
        """A few clips on the server and on the local file must agree by the shared rules."""
        from .registry import load_plan

        rng = np.random.default_rng(CHECK_SEED)
        clips = rng.uniform(-100, 155, size=(2, *self.input_shape)).astype(np.float32)
        with load_plan(Plan("ort", "fp32", "cpu", self.path, "onnx")) as local:
            reference = np.concatenate([local(clips[:1]), local(clips)])
        served = np.concatenate([self(clips[:1]), self(clips)])
        agreement = judge(reference, served, "fp32", what="random clips")
        if not agreement.ok:
            raise ServerMismatch(f"the Triton server at {self.url} serves a '{self.model_name}' that does not compute "
                                 f"what {self.path} computes: {agreement.reason}. It serves another model (or "
                                 "another version): deploy this export's triton/ repository there.")

    # --- running -------------------------------------------------------------------------------

    def _run(self, clips: np.ndarray) -> np.ndarray:
        step = self.max_batch or len(clips)  # the server takes at most max_batch_size clips a request
        return np.concatenate([self._infer(clips[i : i + step]) for i in range(0, len(clips), step)])

    def _infer(self, clips: np.ndarray) -> np.ndarray:
        clip = self.module.InferInput(INPUT_NAME, list(clips.shape), "FP32")
        clip.set_data_from_numpy(clips)
        wanted = self.module.InferRequestedOutput(OUTPUT_NAME)
        try:
            result = self.client().infer(self.model_name, [clip], outputs=[wanted])
        except Exception as exc:
            raise EngineError(f"the Triton server at {self.url} failed on a batch of {len(clips)} "
                              f"({describe(exc)})") from None
        return np.asarray(result.as_numpy(OUTPUT_NAME), np.float32)

    def close(self) -> None:
        for client in self._clients:
            try:
                client.close()
            except Exception:  # a client of another thread, or a server already gone: nothing to free here
                pass
        self._clients.clear()
        super().close()


def _short(labels) -> str:
    if not isinstance(labels, list):
        return repr(labels)
    return f"{len(labels)} [{', '.join(map(str, labels[:4]))}{', ...' if len(labels) > 4 else ''}]"


def load_triton(plan: Plan, **options) -> TritonEngine:
    return TritonEngine(plan, **options)
