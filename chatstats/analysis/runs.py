"""Runs: a batch of analysis jobs with an id, counters, and progress on the event log.

The seeds' Redis counters become columns of `analysis_runs`, updated in the same transaction
as the job outcome they count, so a run's counters can never disagree with its jobs, even
across a crash. Progress goes on the event log (the seeds' catalogue):

- `run_starting` and `run_seeded` when the run is created (one transaction: a run is never
  half seeded), on scope `global`, or `historic` for historic runs;
- `analysis_completed` as jobs finish, throttled to a few per second per run (the final
  state always goes out as `run_complete`);
- `run_complete` once every job is done or dead.

Task lifecycle events (`status`, `progress`, `completed`, `failed`, `retry`) go on scope
`task:{job_id}`. Everything here runs inside the caller's write transaction.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

from chatstats.analysis import store
from chatstats.events import bus, catalogue

KINDS = ("global", "historic", "backfill")
# At most this many `analysis_completed` events per second per run.
PROGRESS_PER_SECOND = 4.0


def new_run_id() -> str:
    return secrets.token_hex(8)


def scope_of(kind: str) -> str:
    return "historic" if kind == "historic" else "global"


def percentage(run: store.Run) -> float:
    if run.total <= 0:
        return 100.0
    return round(100.0 * (run.success + run.failed) / run.total, 1)


class Throttle:
    """Whether a run may announce progress now. Calls come from the single writer thread, but
    the lock keeps it correct if that ever changes."""

    def __init__(self, per_second: float = PROGRESS_PER_SECOND) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, run_id: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(run_id)
            if last is not None and now - last < self._interval:
                return False
            self._last[run_id] = now
            if len(self._last) > 1000:  # finished runs are forgotten eventually
                self._last = dict(list(self._last.items())[-100:])
            return True

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._last.pop(run_id, None)


def create(
    conn: sqlite3.Connection,
    *,
    run_id: str,
    kind: str,
    passes: Sequence[store.PassRef],
    now_ns: int,
    max_attempts: int,
    chat_ids: list[int] | None = None,
    limit: int | None = None,
    force: bool = False,
) -> store.Run:
    """Create the run and queue its jobs: each pass over the conversations lacking it."""
    scope = scope_of(kind)
    names = [p.name for p in passes]
    store.insert_run(conn, run_id, kind, names, now_ns)
    bus.append(conn, catalogue.RunStarting(run_id=run_id, kind=kind, passes=names), scope=scope)
    total = 0
    per_pass: dict[str, int] = {}
    for p in passes:
        n = store.enqueue_missing(
            conn,
            p,
            run_id=run_id,
            now_ns=now_ns,
            max_attempts=max_attempts,
            chat_ids=chat_ids,
            limit=limit,
            force=force,
        )
        per_pass[p.name] = n
        total += n
    store.set_run_total(conn, run_id, total)
    bus.append(
        conn,
        catalogue.RunSeeded(
            run_id=run_id,
            total=total,
            pending=total,
            per_pass=per_pass,
            percentage=0 if total else 100,
        ),
        scope=scope,
    )
    run = store.get_run(conn, run_id)
    assert run is not None
    if total == 0:
        _complete(conn, run, now_ns)
        run = store.get_run(conn, run_id)
        assert run is not None
    return run


def job_finished(
    conn: sqlite3.Connection,
    job: store.Job,
    *,
    status: Literal["success", "failed"],
    now_ns: int,
    throttle: Throttle | None,
    analysis_id: int | None = None,
    latency_ms: float | None = None,
) -> store.Run | None:
    """A job stored its analysis or died: count it in its run and announce it.

    One `analysis_completed` shape for both audiences: the chat's scope hears every job, the
    run's scope hears the same event (throttled) with the run's counters, and the run's last
    job announces `run_complete` instead.
    """
    run = None
    announce_run = False
    if job.run_id is not None:
        ok = status == "success"
        run = store.count_outcome(conn, job.run_id, success=int(ok), failed=int(not ok))
        if run.status == "running" and run.success + run.failed >= run.total:
            _complete(conn, run, now_ns)
            if throttle is not None:
                throttle.forget(run.id)
            completed = store.get_run(conn, run.id)
            assert completed is not None
            run = completed
        elif throttle is None or throttle.allow(run.id):
            announce_run = True
    event = catalogue.AnalysisCompleted(
        chat_id=job.chat_id,
        conversation_id=job.conversation_id,
        pass_=job.pass_name,
        pass_version=job.pass_version,
        status=status,
        analysis_id=analysis_id,
        run_id=job.run_id,
        timings=None if latency_ms is None else catalogue.Timings(latency_ms=round(latency_ms, 1)),
    )
    if run is not None:
        event.total, event.success, event.failed = run.total, run.success, run.failed
        event.pending = run.pending
        event.processing = store.run_running_count(conn, run.id)
        event.percentage = percentage(run)
    bus.append(conn, event, scope=f"chat:{job.chat_id}", run_id=job.run_id)
    if run is not None and announce_run:
        bus.append(conn, event, scope=scope_of(run.kind), run_id=run.id)
    return run


def reopen(conn: sqlite3.Connection, run_id: str) -> None:
    """A dead job of the run is being retried: it is no longer failed, and the run runs."""
    run = store.count_outcome(conn, run_id, success=0, failed=-1)
    if run.status != "running" and run.success + run.failed < run.total:
        store.set_run_status(conn, run_id, "running", None)


def _complete(conn: sqlite3.Connection, run: store.Run, now_ns: int) -> None:
    store.set_run_status(conn, run.id, "complete", now_ns)
    bus.append(
        conn,
        catalogue.RunComplete(
            run_id=run.id, total=run.total, success=run.success, failed=run.failed
        ),
        scope=scope_of(run.kind),
    )


TaskEvent = type[
    catalogue.TaskStatus
    | catalogue.TaskProgress
    | catalogue.TaskCompleted
    | catalogue.TaskRetry
    | catalogue.TaskFailed
]


def task_event(conn: sqlite3.Connection, job: store.Job, kind: TaskEvent, **fields: Any) -> int:
    """One lifecycle event of a job on `task:{id}` (ids, counts and error classes only)."""
    event = kind(
        task_id=job.id,
        conversation_id=job.conversation_id,
        chat_id=job.chat_id,
        pass_=job.pass_name,
        **fields,
    )
    return bus.append(conn, event, scope=f"task:{job.id}", run_id=job.run_id)
