"""The analysis queue: durable job rows, an in-memory dispatcher, N workers, two stages.

Replaces Celery and Redis. A job is a row of `analysis_jobs`; the bounded
`asyncio.PriorityQueue` only holds the ids of the next few due jobs, refilled from the table a
page at a time (periodically, when workers run it low, and at once when code in this process
enqueues). So memory stays flat however many jobs are pending, and a crash loses nothing: the
table is the queue.

A worker takes an id and claims the job with one `UPDATE … WHERE state = 'pending' RETURNING`
(a job is never run twice at once). Then the seeds' two stages:

1. call the model, holding no database connection or transaction, under a limit on LLM
   calls in flight (workers outnumber that limit, so claiming and persisting overlap calls);
2. in one write transaction: the call's accounting record, the result (an upsert on
   conversation, pass and version, so a replayed job never stores a result twice), the job's
   completion, the run's counters and the events.

A failed attempt's accounting record is written in the transaction that schedules its retry
or marks the job dead, so no usage is ever dropped. Retries back off exponentially with
jitter and honour Retry-After (which also pauses new calls, since the provider asked every
caller to wait). Jobs left `running` by a crash go back to `pending` at startup.

Shutdown is two-phase: stop dispatching, give calls in flight a grace period, then cancel;
a cancelled job is handed back (its attempt refunded) before the task ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import sqlite3
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec

from chatstats import log
from chatstats.analysis import runs, store
from chatstats.analysis import transcript as transcripts
from chatstats.analysis.passes import Pass, PassSet, commitments_of
from chatstats.db import Database
from chatstats.events import bus as events
from chatstats.events import catalogue
from chatstats.events.bus import EventBus

logger = log.get(__name__)

MAX_RETRY_AFTER_S = 600.0  # the longest Retry-After we wait for

CallFn = Callable[..., Awaitable[Any]]
RecordFn = Callable[[sqlite3.Connection, Any], int]

# Seconds a live pass waits after new messages, so a burst of messages costs one call.
LIVE_DEBOUNCE_SECONDS = 20.0


class InvalidAnswer(Exception):
    """The model answered, but not with what the pass's schema describes."""

    outcome = "invalid_output"
    retryable = True
    retry_after_s = None

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class _Unrunnable(Exception):
    """The job cannot run as queued (its pass or conversation is gone): retrying won't help."""

    outcome = "error"
    retryable = False
    retry_after_s = None


def _schema_path(exc: Exception) -> str:
    """Where the answer broke the schema (`$.commitments[0].kind`), never the values."""
    m = re.search(r"at `([^`]*)`", str(exc))
    return m.group(1) if m else "$"


def _where(exc: BaseException) -> list[str]:
    frames = traceback.extract_tb(exc.__traceback__)[-5:]
    return [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in frames]


def _with_output_limit(config: Any, max_tokens: int | None) -> Any:
    if max_tokens is None or config is None or not hasattr(config, "max_output_tokens"):
        return config
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.replace(config, max_output_tokens=max_tokens)
    if isinstance(config, msgspec.Struct):
        return msgspec.structs.replace(config, max_output_tokens=max_tokens)
    return config


class Engine:
    """Dispatcher and workers over the jobs table. One per database, owned by the daemon."""

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

    # -- control ------------------------------------------------------------------------------

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

    # -- dispatcher ---------------------------------------------------------------------------

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

    # -- workers ------------------------------------------------------------------------------

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
                    where=_where(exc),
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
                where=_where(exc),
            )
            await self._failed(job, None, exc, records)
            stored = True
        finally:
            if not stored:
                # Cancelled (shutdown) between claim and outcome: hand the job back, with
                # any accounting record the call produced.
                with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                    await self._bus.write(self._release_tx, job, records, self._clock())

    async def _attempt(self, job: store.Job, records: list[Any]) -> bool:
        """One attempt at a claimed job. True once its outcome is committed."""
        p = self.passes.get(job.pass_name)
        if p is None or p.version != job.pass_version:
            await self._failed(job, p, _Unrunnable("pass_unavailable"), records)
            return True
        text = await self._db.read(transcripts.build, job.conversation_id, p.max_transcript_tokens)
        if text is None:
            await self._failed(job, p, _Unrunnable("conversation_missing"), records)
            return True
        messages = p.render(
            text.text or "(no messages with text)",
            message_count=text.message_count,
            start_time=transcripts.iso_minute(text.start_ns),
            end_time=transcripts.iso_minute(text.end_ns),
        )
        assert self._limiter is not None and self._call is not None
        began = time.monotonic()
        try:
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await anyio.sleep(pause)
            async with self._limiter:
                self.in_flight += 1
                self.counters["calls"] += 1
                try:
                    result = await self._call(
                        _with_output_limit(self.config, p.max_output_tokens),
                        messages,
                        json_schema=p.schema,
                        schema_name=p.name,
                        purpose="analysis",
                        record=records.append,
                        job_id=job.id,
                        run_id=job.run_id,
                        conversation_id=job.conversation_id,
                    )
                finally:
                    self.in_flight -= 1
        except Exception as exc:
            if getattr(exc, "outcome", None) is None:
                logger.error(
                    "analysis_call_crashed",
                    job_id=job.id,
                    error_type=type(exc).__name__,
                    where=_where(exc),
                )
            await self._failed(job, p, exc, records)
            return True
        latency_ms = (time.monotonic() - began) * 1000
        try:
            parsed = getattr(result, "parsed", None)
            normalised = p.normalised(parsed if parsed is not None else result.content)
        except (msgspec.ValidationError, msgspec.DecodeError, TypeError) as exc:
            await self._failed(job, p, InvalidAnswer(_schema_path(exc)), records)
            return True
        rerun = await self._bus.write(
            self._complete_tx, job, p, normalised, result, records, latency_ms, self._clock()
        )
        self.counters["completed"] += 1
        logger.info(
            "analysis_job_done",
            job_id=job.id,
            pass_name=job.pass_name,
            conversation_id=job.conversation_id,
            attempt=job.attempts,
            ms=round(latency_ms),
        )
        if rerun:
            self.wake()
        return True

    def _backoff_s(self, attempt: int, retry_after: float | None) -> float:
        base, cap = self._backoff
        delay = min(cap, base * 2 ** max(0, attempt - 1))
        delay = delay / 2 + self._rng() * delay / 2  # "equal jitter": never less than half
        if retry_after is not None and retry_after > 0:
            delay = max(delay, float(retry_after) * (1 + 0.1 * self._rng()))
        return delay

    async def _failed(
        self, job: store.Job, p: Pass | None, exc: Exception, records: list[Any]
    ) -> None:
        outcome = getattr(exc, "outcome", None) or "error"
        retryable = bool(getattr(exc, "retryable", False))
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            # A provider's Retry-After is honoured, within reason: an HTTP-date years away
            # (or a bogus header) must not stall analysis for good.
            retry_after = min(float(retry_after), MAX_RETRY_AFTER_S)
        if outcome == "not_configured":
            await self._bus.write(self._release_tx, job, records, self._clock())
            self._paused_until = time.monotonic() + 30.0
            return
        error = f"{outcome}: {exc.where}" if isinstance(exc, InvalidAnswer) else outcome
        if not isinstance(exc, InvalidAnswer) and not isinstance(exc, _Unrunnable):
            error = f"{outcome}: {type(exc).__name__}"
        elif isinstance(exc, _Unrunnable):
            error = str(exc)
        now_ns = self._clock()
        if retryable and job.attempts < job.max_attempts:
            delay = self._backoff_s(job.attempts, retry_after)
            if outcome == "rate_limited" and retry_after:
                self._paused_until = max(self._paused_until, time.monotonic() + float(retry_after))
            not_before = now_ns + int(delay * 1e9)
            await self._bus.write(self._retry_tx, job, records, exc, error, not_before, now_ns)
            self.counters["retried"] += 1
            self.wake()  # the dispatcher re-reads when the earliest backoff ends
            logger.info(
                "analysis_job_retry",
                job_id=job.id,
                outcome=outcome,
                attempt=job.attempts,
                retry_in_s=round(delay, 2),
            )
        else:
            await self._bus.write(self._dead_tx, job, records, exc, error, now_ns)
            self.counters["dead"] += 1
            logger.warning(
                "analysis_job_dead",
                job_id=job.id,
                pass_name=job.pass_name,
                outcome=outcome,
                attempts=job.attempts,
            )

    # -- transactions (run on the writer connection) ------------------------------------------

    def _write_records(
        self, conn: sqlite3.Connection, records: list[Any], *, invalid: str | None = None
    ) -> int | None:
        """Insert the attempt's accounting records; the last one's id."""
        assert self._record_call is not None
        call_id = None
        for rec in records:
            call_id = self._record_call(conn, rec)
        if invalid is not None and call_id is not None:
            # The call itself succeeded, but its answer failed the pass's schema.
            conn.execute(
                "UPDATE llm_calls SET outcome = 'invalid_output', error = :err WHERE id = :id",
                {"err": invalid, "id": call_id},
            )
        return call_id

    def _claim_tx(self, conn: sqlite3.Connection, job_id: int, now_ns: int) -> store.Job | None:
        job = store.claim(conn, job_id, now_ns)
        if job is not None and job.attempts > job.max_attempts:
            # Its earlier attempts never finished (the process died each time): a job that
            # takes the daemon down must not do so forever.
            self._dead_tx(conn, job, [], _Unrunnable("interrupted"), "interrupted", now_ns)
            return None
        if job is not None:
            runs.task_event(conn, job, catalogue.TaskStatus, status="running", attempt=job.attempts)
            runs.task_event(
                conn,
                job,
                catalogue.TaskProgress,
                progress=0.0,
                status="running",
                message="calling the model",
            )
        return job

    def _complete_tx(
        self,
        conn: sqlite3.Connection,
        job: store.Job,
        p: Pass,
        normalised: Any,
        result: Any,
        records: list[Any],
        latency_ms: float,
        now_ns: int,
    ) -> bool:
        call_id = self._write_records(conn, records)
        rerun = store.finish(conn, job, now_ns)
        if rerun is None:
            # No longer this worker's claim (recovered by a restart elsewhere): the usage is
            # kept above, the job's new owner stores the result.
            return False
        result_json = msgspec.json.encode(normalised).decode()
        analysis_id = store.upsert_analysis(
            conn,
            job,
            result_json,
            model=getattr(result, "model", None),
            llm_call_id=call_id if call_id is not None else getattr(result, "call_id", None),
            now_ns=now_ns,
            sealed_pass=p.trigger == "sealed",
        )
        if p.stores == "commitments":
            self._store_commitments(conn, job, p, analysis_id, normalised, now_ns)
        runs.task_event(conn, job, catalogue.TaskProgress, progress=1.0, status="done")
        runs.task_event(
            conn,
            job,
            catalogue.TaskCompleted,
            message="analysis stored",
            result={"analysis_id": analysis_id},
        )
        runs.job_finished(
            conn,
            job,
            status="success",
            analysis_id=analysis_id,
            now_ns=now_ns,
            throttle=self.throttle,
            latency_ms=latency_ms,
        )
        if rerun:
            store.enqueue(
                conn,
                job.conversation_id,
                job.chat_id,
                store.PassRef(p.name, p.version, p.priority, p.trigger),
                now_ns=now_ns,
                max_attempts=self.max_attempts,
                not_before_ns=now_ns + int(self.live_debounce_s * 1e9),
            )
        return rerun

    def _store_commitments(
        self,
        conn: sqlite3.Connection,
        job: store.Job,
        p: Pass,
        analysis_id: int,
        normalised: Any,
        now_ns: int,
    ) -> None:
        """A sealed pass's commitments replace the conversation's; a live pass's only stand in
        until the conversation has a sealed pass's result."""
        if p.trigger == "live":
            sealed = [
                (q.name, q.version)
                for q in self.passes.passes.values()
                if q.stores == "commitments" and q.trigger == "sealed"
            ]
            if store.has_analysis(conn, job.conversation_id, sealed):
                return
        items = msgspec.to_builtins(commitments_of(normalised))
        n = store.replace_commitments(conn, analysis_id, job, items, now_ns)
        updated = catalogue.CommitmentsUpdated(
            chat_id=job.chat_id,
            conversation_id=job.conversation_id,
            analysis_id=analysis_id,
            pass_=p.name,
            count=n,
            open=sum(1 for c in items if c.get("status") == "open"),
        )
        events.append(conn, updated, scope=f"commitments:{job.chat_id}")

    def _retry_tx(
        self,
        conn: sqlite3.Connection,
        job: store.Job,
        records: list[Any],
        exc: Exception,
        error: str,
        not_before_ns: int,
        now_ns: int,
    ) -> None:
        invalid = error if isinstance(exc, InvalidAnswer) else None
        self._write_records(conn, records, invalid=invalid)
        if store.reschedule(conn, job, not_before_ns=not_before_ns, error=error, now_ns=now_ns):
            runs.task_event(
                conn,
                job,
                catalogue.TaskRetry,
                error=error,
                retry_count=job.attempts,
                max_retries=job.max_attempts - 1,
                retry_in_s=round((not_before_ns - now_ns) / 1e9, 3),
            )

    def _dead_tx(
        self,
        conn: sqlite3.Connection,
        job: store.Job,
        records: list[Any],
        exc: Exception,
        error: str,
        now_ns: int,
    ) -> None:
        invalid = error if isinstance(exc, InvalidAnswer) else None
        self._write_records(conn, records, invalid=invalid)
        if not store.bury(conn, job, error=error, now_ns=now_ns):
            return
        runs.task_event(
            conn, job, catalogue.TaskFailed, error=error, permanent=True, attempts=job.attempts
        )
        runs.task_event(conn, job, catalogue.TaskStatus, status="dead", error=error)
        runs.job_finished(conn, job, status="failed", now_ns=now_ns, throttle=self.throttle)

    def _release_tx(
        self, conn: sqlite3.Connection, job: store.Job, records: list[Any], now_ns: int
    ) -> None:
        self._write_records(conn, records)
        if store.release(conn, job, now_ns):
            runs.task_event(conn, job, catalogue.TaskStatus, status="pending")
