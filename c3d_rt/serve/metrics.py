"""``/metrics``: the server's Prometheus metrics, in a registry of its own (``prometheus_client``).

Per-stream counters are read from the streams when Prometheus scrapes (a custom
collector), so the pipeline's hot path only updates plain integers and a stream
removed over HTTP disappears from the output. Latency and batch-size histograms
are ``prometheus_client`` histograms, observed by the batcher thread.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..runtime.prediction import STAGES
from .streams import STATES, Stream

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

STREAM_COUNTERS = {  # metric name -> (StreamCounters field, help)
    "c3d_rt_stream_frames": ("frames", "Frames read from the source"),
    "c3d_rt_stream_frames_dropped": ("frames_dropped", "Frames the source lost because reading fell behind"),
    "c3d_rt_stream_windows_dropped": ("windows_dropped", "Due windows superseded before the batcher took them"),
    "c3d_rt_stream_predictions": ("predictions", "Predictions published"),
    "c3d_rt_stream_reconnects": ("reconnects", "Times the source could not be opened or stopped delivering"),
    "c3d_rt_stream_label_changes": ("label_changes", "Predictions whose label differs from the one before"),
}


class StreamCollector:
    def __init__(self, streams: Callable[[], Iterable[Stream]]) -> None:
        self.streams = streams

    def collect(self):
        streams = list(self.streams())
        families = {name: CounterMetricFamily(name, doc, labels=["stream"])
                    for name, (_field, doc) in STREAM_COUNTERS.items()}
        state = GaugeMetricFamily("c3d_rt_stream_state", "1 for the stream's current state", labels=["stream", "state"])
        fps = GaugeMetricFamily("c3d_rt_stream_fps", "Capture frame rate over the last frames", labels=["stream"])
        for stream in streams:
            totals = stream.totals()
            for name, (field, _doc) in STREAM_COUNTERS.items():
                families[name].add_metric([stream.name], getattr(totals, field))
            for s in STATES:
                state.add_metric([stream.name, s], 1.0 if stream.state == s else 0.0)
            fps.add_metric([stream.name], stream.clock.fps)
        yield from families.values()
        yield state
        yield fps


class ServerMetrics:
    def __init__(self, streams: Callable[[], Iterable[Stream]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StreamCollector(streams))
        self.stage_latency = Histogram("c3d_rt_stage_latency_seconds", "Per-stage latency of each prediction",
                                       ["stage"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.batch_size = Histogram("c3d_rt_batch_size", "Windows per engine call", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.batch_seconds = Histogram("c3d_rt_batch_inference_seconds", "Engine time per batch",
                                       buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.webhook = Counter("c3d_rt_webhook_events", "Webhook deliveries by outcome", ["outcome"],
                               registry=self.registry)
        self.engine = Info("c3d_rt_engine", "The engine serving every stream", registry=self.registry)

    def observe_prediction(self, latency_ms: dict[str, float]) -> None:
        for stage in STAGES:
            if stage in latency_ms:
                self.stage_latency.labels(stage).observe(max(latency_ms[stage], 0.0) / 1e3)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
