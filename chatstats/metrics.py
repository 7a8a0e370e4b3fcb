"""Runtime metrics kept in memory: counters, gauges and recent latencies.

They replace the seeds' Redis counters for things worth watching live (ingest batch latency,
queue depth, SSE clients) and are lost on restart by design; durable numbers (run counters,
usage) live in SQLite. Cheap enough to call on hot paths: an `observe` is a deque append.

Components use the process-wide registry through the module functions
(`metrics.observe("ingest.batch", seconds)`); tests and embedders may make their own
`Metrics`. Names and values are ids and counts only, never message content.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

DEFAULT_WINDOW_SECONDS = 300.0
DEFAULT_MAX_SAMPLES = 2048


class _Latency:
    __slots__ = ("samples", "total", "total_seconds")

    def __init__(self, max_samples: int) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self.total = 0
        self.total_seconds = 0.0


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest rank: an observed value, never an interpolation between two."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class Metrics:
    """One registry. Gauges may be callables, read at snapshot time (a broken one reads None)."""

    def __init__(
        self,
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_seconds = window_seconds
        self.max_samples = max_samples
        self._clock = clock
        self._started = clock()
        self._counters: dict[str, int | float] = {}
        self._gauges: dict[str, Any] = {}
        self._latencies: dict[str, _Latency] = {}

    def incr(self, name: str, n: int | float = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + n

    def gauge(self, name: str, value: Any | Callable[[], Any]) -> None:
        """Set a value, or register a callable read at each snapshot (None removes it)."""
        if value is None:
            self._gauges.pop(name, None)
        else:
            self._gauges[name] = value

    def observe(self, name: str, seconds: float) -> None:
        lat = self._latencies.get(name)
        if lat is None:
            lat = self._latencies[name] = _Latency(self.max_samples)
        lat.samples.append((self._clock(), seconds))
        lat.total += 1
        lat.total_seconds += seconds

    @contextlib.contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Observe how long the block took (also when it raises)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.observe(name, time.perf_counter() - began)

    def counter(self, name: str) -> int | float:
        return self._counters.get(name, 0)

    def reset(self) -> None:
        self._counters.clear()
        self._gauges.clear()
        self._latencies.clear()

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        gauges: dict[str, Any] = {}
        for name, value in self._gauges.items():
            if callable(value):
                try:
                    value = value()
                except Exception:
                    value = None
            gauges[name] = value
        latencies: dict[str, Any] = {}
        horizon = now - self.window_seconds
        for name, lat in self._latencies.items():
            while lat.samples and lat.samples[0][0] < horizon:
                lat.samples.popleft()
            recent = sorted(s for _, s in lat.samples)
            latencies[name] = {
                "count": len(recent),
                "total": lat.total,
                "lifetime_mean_ms": _ms(lat.total_seconds / lat.total) if lat.total else None,
                "p50_ms": _ms(_percentile(recent, 0.50)) if recent else None,
                "p95_ms": _ms(_percentile(recent, 0.95)) if recent else None,
                "max_ms": _ms(recent[-1]) if recent else None,
            }
        return {
            "uptime_s": round(now - self._started, 3),
            "window_s": self.window_seconds,
            "counters": dict(self._counters),
            "gauges": gauges,
            "latencies": latencies,
        }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# The process-wide registry and shortcuts to it.
REGISTRY = Metrics()


def incr(name: str, n: int | float = 1) -> None:
    REGISTRY.incr(name, n)


def gauge(name: str, value: Any | Callable[[], Any]) -> None:
    REGISTRY.gauge(name, value)


def observe(name: str, seconds: float) -> None:
    REGISTRY.observe(name, seconds)


def timer(name: str) -> contextlib.AbstractContextManager[None]:
    return REGISTRY.timer(name)


def snapshot() -> dict[str, Any]:
    return REGISTRY.snapshot()
