"""The engine's settings and run-time state, declared once for every part of the engine.

Each part (scheduling, the call, retries, transactions) is a mixin over `EngineState`.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from chatstats import log
from chatstats.analysis import runs
from chatstats.analysis.passes import PassSet
from chatstats.db import Database
from chatstats.events.bus import EventBus

logger = log.get("chatstats.analysis.queue")  # one logger name for the whole engine


CallFn = Callable[..., Awaitable[Any]]


RecordFn = Callable[[sqlite3.Connection, Any], int]


# Seconds a live pass waits after new messages, so a burst of messages costs one call.
LIVE_DEBOUNCE_SECONDS = 20.0


class EngineState:
    """What the engine was configured with and what it is doing now."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        passes: PassSet,
        config: Any,
        *,
        call: CallFn | None = None,
        record_call: RecordFn | None = None,
        concurrency: int = 4,
        workers: int = 0,
        queue_size: int = 0,
        refill_seconds: float = 2.0,
        backoff_base_s: float = 2.0,
        backoff_cap_s: float = 300.0,
        live_debounce_s: float = LIVE_DEBOUNCE_SECONDS,
        max_attempts: int = 5,
        grace_seconds: float = 1.0,
        clock: Callable[[], int] = time.time_ns,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._db = db
        self._bus = bus
        self.passes = passes
        self.config = config
        self._call = call
        self._record_call = record_call
        self.concurrency = max(1, concurrency)
        self.workers = workers if workers > 0 else 2 * self.concurrency
        self.queue_size = queue_size if queue_size > 0 else max(16, 2 * self.workers)
        self._refill_seconds = refill_seconds
        self._backoff = (backoff_base_s, backoff_cap_s)
        self.live_debounce_s = live_debounce_s
        self.max_attempts = max(1, max_attempts)
        self._grace = grace_seconds
        self._clock = clock
        self._rng = rng
        self.throttle = runs.Throttle()
        self._queue: asyncio.PriorityQueue[tuple[int, int, int]] | None = None
        self._dispatched: set[int] = set()  # in the queue or in a worker's hands
        self._wake: anyio.Event | None = None
        self._limiter: anyio.Semaphore | None = None
        self._paused_until = 0.0  # monotonic; set by Retry-After
        self._stopping = False
        self.running = False
        self.busy = 0
        self.in_flight = 0
        self.counters = {"completed": 0, "retried": 0, "dead": 0, "calls": 0, "recovered": 0}

    def wake(self) -> None:
        """Refill the dispatcher now: declared here for the parts that ask for it, defined by
        the Engine."""
        raise NotImplementedError
