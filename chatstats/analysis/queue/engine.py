"""Scheduling: the dispatcher that refills the bounded in-memory queue from the jobs table,
the workers that claim and run jobs, and the two-phase shutdown.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import anyio

from chatstats.analysis import store
from chatstats.analysis.queue.attempt import CallStage
from chatstats.analysis.queue.errors import frames_of
from chatstats.analysis.queue.state import logger


class Engine(CallStage):
    """Dispatcher and workers over the jobs table. One per database, owned by the daemon."""

    def wake(self) -> None:
        """Refill the dispatcher now (call on the event loop after enqueueing)."""
        if self._wake is not None:
            self._wake.set()

    def queued(self) -> int:
        return 0 if self._queue is None else self._queue.qsize()

    async def run(self, shutdown: anyio.Event) -> None:
        """Work until `shutdown` is set; then stop in two phases (grace, then cancel)."""
        recovered = await self._db.write(store.recover, self._clock())
        self.counters["recovered"] += recovered
        if recovered:
            logger.info("analysis_jobs_recovered", count=recovered)
        if self.config is None:
            logger.warning("analysis_waiting", reason="no_model_configured")
            await shutdown.wait()
            return
        if self._call is None or self._record_call is None:
            from chatstats import llm

            self._call = self._call or llm.complete
            self._record_call = self._record_call or llm.record_call
        self._queue = asyncio.PriorityQueue(self.queue_size)
        self._limiter = anyio.Semaphore(self.concurrency)
        self._stopping = False
        self.running = True
        logger.info(
            "analysis_engine_started",
            workers=self.workers,
            concurrency=self.concurrency,
            passes=len(self.passes.passes),
        )
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._dispatcher)
                for _ in range(self.workers):
                    tg.start_soon(self._worker)
                await shutdown.wait()
                # Phase 1: nothing new starts; calls in flight get the grace period.
                self._stopping = True
                self._drain_queue()
                with anyio.move_on_after(self._grace):
                    while self.busy:
                        await anyio.sleep(0.01)
                # Phase 2: cancel what is left; workers hand their jobs back.
                tg.cancel_scope.cancel()
        finally:
            self.running = False
            self._dispatched.clear()
            logger.info("analysis_engine_stopped")

    def _drain_queue(self) -> None:
        assert self._queue is not None
        while not self._queue.empty():
            _, _, job_id = self._queue.get_nowait()
            self._dispatched.discard(job_id)

    async def _dispatcher(self) -> None:
        assert self._queue is not None
        delay = 1.0
        while not self._stopping:
            self._wake = anyio.Event()  # before reading: a wake() from here on is kept
            now_ns = self._clock()
            room = self.queue_size - self._queue.qsize()
            try:
                rows = []
                if room > 0:
                    rows = await self._db.read(store.ready_page, now_ns, self._dispatched, room)
                    for priority, not_before, job_id in rows:
                        if self._stopping:
                            break
                        self._dispatched.add(job_id)
                        self._queue.put_nowait((priority, not_before, job_id))
                # Only when nothing more is due does the next backoff's end matter (a full
                # queue is refilled when workers run it low), so skip that scan otherwise.
                due = None
                if len(rows) < room:
                    due = await self._db.read(store.next_due_ns, now_ns)
                delay = 1.0
            except sqlite3.Error as exc:
                logger.error("analysis_refill_failed", error_type=type(exc).__name__)
                await anyio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            timeout = self._refill_seconds
            if due is not None:
                timeout = min(timeout, max(0.0, (due - self._clock()) / 1e9) + 0.001)
            with anyio.move_on_after(timeout):
                await self._wake.wait()

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            _, _, job_id = await self._queue.get()
            if self._queue.qsize() <= self.queue_size // 2:
                self.wake()
            if self._stopping:
                self._dispatched.discard(job_id)
                continue
            self.busy += 1
            try:
                await self._process(job_id)
            except Exception as exc:  # a bug or a database error: keep the worker alive
                logger.error(
                    "analysis_job_crashed",
                    job_id=job_id,
                    error_type=type(exc).__name__,
                    where=frames_of(exc),
                )
                await anyio.sleep(1.0)
            finally:
                self.busy -= 1
                self._dispatched.discard(job_id)

    async def _process(self, job_id: int) -> None:
        job = await self._bus.write(self._claim_tx, job_id, self._clock())
        if job is None:
            return  # someone else has it, or it is no longer pending
        records: list[Any] = []
        stored = False
        try:
            stored = await self._attempt(job, records)
        except Exception as exc:
            # A bug or a database error around the call: the job is dead (listed, retryable)
            # rather than retried forever.
            logger.error(
                "analysis_job_crashed",
                job_id=job.id,
                error_type=type(exc).__name__,
                where=frames_of(exc),
            )
            await self._failed(job, None, exc, records)
            stored = True
        finally:
            if not stored:
                # Cancelled (shutdown) between claim and outcome: hand the job back, with
                # any accounting record the call produced.
                with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                    await self._bus.write(self._release_tx, job, records, self._clock())
