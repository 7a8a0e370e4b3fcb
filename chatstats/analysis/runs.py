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
from typing import Any

from chatstats.analysis import store
from chatstats.events import bus

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
    bus.append(
        conn,
        scope=scope,
        type="run_starting",
        run_id=run_id,
        data={
            "run_id": run_id,
            "kind": kind,
            "passes": names,
            "message": "queueing analysis",
            "percentage": 0,
            "status": "starting",
            "running": True,
        },
    )
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
        scope=scope,
        type="run_seeded",
        run_id=run_id,
        data={
            "run_id": run_id,
            "total": total,
            "pending": total,
            "per_pass": per_pass,
            "percentage": 0 if total else 100,
        },
    )
    run = store.get_run(conn, run_id)
    assert run is not None
    if total == 0:
        _complete(conn, run, now_ns)
        run = store.get_run(conn, run_id)
        assert run is not None
    return run


def count(
    conn: sqlite3.Connection,
    run_id: str,
    *,
    success: int = 0,
    failed: int = 0,
    now_ns: int,
    throttle: Throttle | None,
    latency_ms: float | None = None,
) -> store.Run:
    """Count one job outcome; announce progress (throttled) or the run's completion."""
    run = store.count_outcome(conn, run_id, success=success, failed=failed)
    if run.status == "running" and run.success + run.failed >= run.total:
        _complete(conn, run, now_ns)
        if throttle is not None:
            throttle.forget(run_id)
    elif throttle is None or throttle.allow(run_id):
        data: dict[str, Any] = {
            "run_id": run_id,
            "total": run.total,
            "success": run.success,
            "failed": run.failed,
            "pending": run.pending,
            "processing": store.run_running_count(conn, run_id),
            "percentage": percentage(run),
        }
        if latency_ms is not None:
            data["timings"] = {"latency_ms": round(latency_ms, 1)}
        bus.append(
            conn, scope=scope_of(run.kind), type="analysis_completed", run_id=run_id, data=data
        )
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
        scope=scope_of(run.kind),
        type="run_complete",
        run_id=run.id,
        data={
            "run_id": run.id,
            "total": run.total,
            "success": run.success,
            "failed": run.failed,
            "percentage": 100,
            "is_complete": True,
        },
    )


def task_event(conn: sqlite3.Connection, job: store.Job, type: str, **data: Any) -> int:
    """One lifecycle event of a job on `task:{id}` (ids, counts and error classes only)."""
    return bus.append(
        conn,
        scope=f"task:{job.id}",
        type=type,
        run_id=job.run_id,
        data={
            "task_id": job.id,
            "conversation_id": job.conversation_id,
            "chat_id": job.chat_id,
            "pass": job.pass_name,
            **data,
        },
    )
