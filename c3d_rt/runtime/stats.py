"""Latency percentiles in bounded memory.

A live run can last for days, so the runtime never keeps one sample per
prediction: each stage has a histogram with logarithmic bins 1% wide, from
1 µs to about 3 hours, which gives every percentile to within 1%.
"""

from __future__ import annotations

import math

import numpy as np

_MIN_MS = 1e-3  # 1 µs: the first bin's lower edge
_GROWTH = 1.01  # each bin is 1% wider than the last
_BINS = 2400  # 1.01 ** 2400 * 1 µs is about 3 hours


class LatencyHistogram:
    """Count of samples per 1%-wide bin; percentiles are read from the bin centres."""

    def __init__(self) -> None:
        self.counts = np.zeros(_BINS + 1, np.int64)  # the last bin holds everything above the range
        self.count = 0
        self.total_ms = 0.0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        ms = max(float(ms), 0.0)
        index = 0 if ms <= _MIN_MS else min(_BINS, int(math.log(ms / _MIN_MS, _GROWTH)) + 1)
        self.counts[index] += 1
        self.count += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)

    def merge(self, other: "LatencyHistogram") -> None:
        """Add ``other``'s samples to these (one histogram over many streams)."""
        self.counts += other.counts
        self.count += other.count
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) in milliseconds, or None without samples."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        if index == 0:
            return _MIN_MS
        centre = _MIN_MS * _GROWTH ** (index - 0.5)
        return min(centre, self.max_ms)

    @property
    def mean_ms(self) -> float | None:
        return self.total_ms / self.count if self.count else None

    def summary(self) -> dict[str, float | int | None]:
        return {"p50_ms": self.percentile(50), "p95_ms": self.percentile(95), "p99_ms": self.percentile(99),
                "mean_ms": self.mean_ms, "max_ms": self.max_ms if self.count else None, "count": self.count}


def percentiles(samples_ms: list[float] | np.ndarray) -> dict[str, float | None]:
    """p50/p95/p99/mean of a short list of samples (the benchmark's timed iterations)."""
    if len(samples_ms) == 0:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None}
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(values.mean())}
