"""Analysis jobs: enqueueing (idempotent per conversation, pass and version) and the queue's
claim, finish, retry, bury and release, each inside the caller's transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chatstats.analysis.store.base import (
    _JOB_COLUMNS,
    BULK_PRIORITY_OFFSET,
    STATES,
    Job,
    _ids,
    _job,
)
from chatstats.db import inserted_id

# ---------------------------------------------------------------------------------------------
# Enqueueing


@dataclass(frozen=True, slots=True)
class PassRef:
    """What the SQL needs of a pass."""

    name: str
    version: int
    priority: int
    trigger: str  # live | sealed


def enqueue(
    conn: sqlite3.Connection,
    conversation_id: int,
    chat_id: int,
    p: PassRef,
    *,
    now_ns: int,
    max_attempts: int,
    run_id: str | None = None,
    not_before_ns: int = 0,
    skip_if_analysed: bool = False,
) -> int | None:
    """Queue one job; its id, or None when a live job already covers it.

    A live job that is already running gets `rerun` set instead: it read the conversation
    before the newest messages, so it is queued again when it finishes. With
    `skip_if_analysed` a current (not stale) result is enough and nothing is queued; a
    running job without one is still asked to rerun, as it may have read the conversation
    before a late message reopened it.
    """
    cur = conn.execute(
        "INSERT INTO analysis_jobs (run_id, conversation_id, chat_id, pass, pass_version,"
        " priority, state, attempts, max_attempts, not_before_ns, created_ns, updated_ns)"
        " SELECT :run, :cid, :chat, :pass, :ver, :prio, 'pending', 0, :max, :nb, :now, :now"
        " WHERE NOT :skip OR NOT EXISTS (SELECT 1 FROM analyses WHERE conversation_id = :cid"
        "  AND pass = :pass AND pass_version = :ver AND stale = 0)"
        " ON CONFLICT DO NOTHING",
        {
            "run": run_id,
            "cid": conversation_id,
            "chat": chat_id,
            "pass": p.name,
            "ver": p.version,
            "prio": p.priority,
            "max": max_attempts,
            "nb": not_before_ns,
            "now": now_ns,
            "skip": int(skip_if_analysed),
        },
    )
    if cur.rowcount:
        return inserted_id(cur)
    conn.execute(
        "UPDATE analysis_jobs SET rerun = 1, updated_ns = :now WHERE conversation_id = :cid"
        " AND pass = :pass AND pass_version = :ver AND state = 'running' AND (NOT :skip"
        " OR NOT EXISTS (SELECT 1 FROM analyses WHERE conversation_id = :cid"
        "  AND pass = :pass AND pass_version = :ver AND stale = 0))",
        {
            "cid": conversation_id,
            "pass": p.name,
            "ver": p.version,
            "now": now_ns,
            "skip": int(skip_if_analysed),
        },
    )
    return None


def _missing_where(trigger: str, chat_ids: list[int] | None, force: bool) -> str:
    """Conversations a pass could run on, lacking its current result (unless `force`; a
    stale one counts as lacking), without a live or dead job. Dead jobs are left for
    `retry`, so a backfill never piles up duplicates."""
    where = ["c.sealed = :sealed"]
    if chat_ids is not None:
        where.append("c.chat_id IN (SELECT value FROM json_each(:chats))")
    if not force:
        where.append(
            "NOT EXISTS (SELECT 1 FROM analyses a WHERE a.conversation_id = c.id"
            " AND a.pass = :pass AND a.pass_version = :ver AND a.stale = 0)"
        )
    where.append(
        "NOT EXISTS (SELECT 1 FROM analysis_jobs j WHERE j.conversation_id = c.id"
        " AND j.pass = :pass AND j.pass_version = :ver AND j.state IN ('pending', 'running'"
        + ("" if force else ", 'dead'")
        + "))"
    )
    return " AND ".join(where)


def _missing_params(
    p: PassRef, chat_ids: list[int] | None, limit: int | None, **extra: Any
) -> dict[str, Any]:
    return {
        "sealed": 1 if p.trigger == "sealed" else 0,
        "chats": None if chat_ids is None else _ids(chat_ids),
        "pass": p.name,
        "ver": p.version,
        "lim": -1 if limit is None else limit,
        **extra,
    }


def count_missing(
    conn: sqlite3.Connection,
    p: PassRef,
    *,
    chat_ids: list[int] | None = None,
    limit: int | None = None,
    force: bool = False,
) -> int:
    """How many jobs `enqueue_missing` would queue (a dry run)."""
    sql = (
        "SELECT count(*) FROM (SELECT c.id FROM conversations c"
        f" WHERE {_missing_where(p.trigger, chat_ids, force)} LIMIT :lim)"
    )
    count: int = conn.execute(sql, _missing_params(p, chat_ids, limit)).fetchone()[0]
    return count


def enqueue_missing(
    conn: sqlite3.Connection,
    p: PassRef,
    *,
    run_id: str | None,
    now_ns: int,
    max_attempts: int,
    chat_ids: list[int] | None = None,
    limit: int | None = None,
    force: bool = False,
) -> int:
    """Queue the pass over every conversation lacking it (newest first, at most `limit`),
    in one statement however many there are; returns how many were queued."""
    sql = (
        "INSERT INTO analysis_jobs (run_id, conversation_id, chat_id, pass, pass_version,"
        " priority, state, attempts, max_attempts, not_before_ns, created_ns, updated_ns)"
        " SELECT :run, c.id, c.chat_id, :pass, :ver, :prio, 'pending', 0, :max, 0, :now, :now"
        f" FROM conversations c WHERE {_missing_where(p.trigger, chat_ids, force)}"
        " ORDER BY c.start_ns DESC, c.id DESC LIMIT :lim"
        " ON CONFLICT DO NOTHING"
    )
    params = _missing_params(
        p,
        chat_ids,
        limit,
        run=run_id,
        prio=p.priority + BULK_PRIORITY_OFFSET,
        max=max_attempts,
        now=now_ns,
    )
    return conn.execute(sql, params).rowcount


# ---------------------------------------------------------------------------------------------
# The queue


def recover(conn: sqlite3.Connection, now_ns: int) -> int:
    """Jobs left `running` by a process that died go back to `pending` (the attempt they
    used stays counted, so a job that kills the process every time still ends dead)."""
    return conn.execute(
        "UPDATE analysis_jobs SET state = 'pending', updated_ns = :now WHERE state = 'running'",
        {"now": now_ns},
    ).rowcount


def ready_page(
    conn: sqlite3.Connection, now_ns: int, exclude: Iterable[int], limit: int
) -> list[tuple[int, int, int]]:
    """(priority, not_before_ns, id) of the next pending jobs that are due, in the order of
    the `analysis_jobs_ready` index (no sort), skipping those already dispatched."""
    return conn.execute(
        "SELECT priority, not_before_ns, id FROM analysis_jobs"
        " WHERE state = 'pending' AND not_before_ns <= :now"
        " AND id NOT IN (SELECT value FROM json_each(:exclude))"
        " ORDER BY priority, not_before_ns, id LIMIT :lim",
        {"now": now_ns, "exclude": _ids(exclude), "lim": limit},
    ).fetchall()


def next_due_ns(conn: sqlite3.Connection, now_ns: int) -> int | None:
    """When the earliest job waiting on a backoff becomes due."""
    row = conn.execute(
        "SELECT min(not_before_ns) FROM analysis_jobs"
        " WHERE state = 'pending' AND not_before_ns > :now",
        {"now": now_ns},
    ).fetchone()
    due: int | None = row[0]
    return due


def claim(conn: sqlite3.Connection, job_id: int, now_ns: int) -> Job | None:
    """Take one pending job atomically; None if it is no longer pending."""
    row = conn.execute(
        "UPDATE analysis_jobs SET state = 'running', attempts = attempts + 1, rerun = 0,"
        " updated_ns = :now WHERE id = :id AND state = 'pending'"
        f" RETURNING {_JOB_COLUMNS}",
        {"id": job_id, "now": now_ns},
    ).fetchone()
    return None if row is None else _job(row)


def finish(conn: sqlite3.Connection, job: Job, now_ns: int) -> bool | None:
    """Mark a claimed job done. Returns whether it must run again (`rerun`), or None when it
    is no longer the claim this worker holds (then nothing changes)."""
    row = conn.execute(
        "UPDATE analysis_jobs SET state = 'done', last_error = NULL, updated_ns = :now"
        " WHERE id = :id AND state = 'running' AND attempts = :attempts RETURNING rerun",
        {"id": job.id, "attempts": job.attempts, "now": now_ns},
    ).fetchone()
    return None if row is None else bool(row[0])


def reschedule(
    conn: sqlite3.Connection, job: Job, *, not_before_ns: int, error: str, now_ns: int
) -> bool:
    """A failed attempt with attempts left: pending again after its backoff."""
    return bool(
        conn.execute(
            "UPDATE analysis_jobs SET state = 'pending', not_before_ns = :nb, last_error = :err,"
            " updated_ns = :now WHERE id = :id AND state = 'running' AND attempts = :attempts",
            {
                "id": job.id,
                "attempts": job.attempts,
                "nb": not_before_ns,
                "err": error,
                "now": now_ns,
            },
        ).rowcount
    )


def bury(conn: sqlite3.Connection, job: Job, *, error: str, now_ns: int) -> bool:
    """Out of attempts, or a failure that retrying cannot fix: dead until retried by hand."""
    return bool(
        conn.execute(
            "UPDATE analysis_jobs SET state = 'dead', last_error = :err, updated_ns = :now"
            " WHERE id = :id AND state = 'running' AND attempts = :attempts",
            {"id": job.id, "attempts": job.attempts, "err": error, "now": now_ns},
        ).rowcount
    )


def release(conn: sqlite3.Connection, job: Job, now_ns: int, *, refund: bool = True) -> bool:
    """Give a claimed job back untouched (shutdown, no model): pending, attempt refunded."""
    return bool(
        conn.execute(
            "UPDATE analysis_jobs SET state = 'pending',"
            " attempts = max(0, attempts - :refund), updated_ns = :now"
            " WHERE id = :id AND state = 'running' AND attempts = :attempts",
            {"id": job.id, "attempts": job.attempts, "refund": int(refund), "now": now_ns},
        ).rowcount
    )


def revive(conn: sqlite3.Connection, job_id: int, now_ns: int) -> Job | None:
    """A dead job back to pending with fresh attempts; None if it is not dead."""
    row = conn.execute(
        "UPDATE analysis_jobs SET state = 'pending', attempts = 0, not_before_ns = 0,"
        " updated_ns = :now WHERE id = :id AND state = 'dead'"
        f" RETURNING {_JOB_COLUMNS}",
        {"id": job_id, "now": now_ns},
    ).fetchone()
    return None if row is None else _job(row)


def dead_ids(conn: sqlite3.Connection, limit: int) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT id FROM analysis_jobs WHERE state = 'dead' ORDER BY id LIMIT :lim",
            {"lim": limit},
        )
    ]


def get_job(conn: sqlite3.Connection, job_id: int) -> Job | None:
    row = conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM analysis_jobs WHERE id = :id", {"id": job_id}
    ).fetchone()
    return None if row is None else _job(row)


def list_jobs(
    conn: sqlite3.Connection, state: str | None, limit: int, before_id: int | None
) -> list[Job]:
    """Newest first."""
    sql = f"SELECT {_JOB_COLUMNS} FROM analysis_jobs WHERE id < :before"
    if state is not None:
        sql += " AND state = :state"
    sql += " ORDER BY id DESC LIMIT :lim"
    params = {"before": before_id or 2**63 - 1, "state": state, "lim": limit}
    return [_job(r) for r in conn.execute(sql, params)]


def job_counts(conn: sqlite3.Connection) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for state, n in conn.execute("SELECT state, count(*) FROM analysis_jobs GROUP BY state"):
        counts[state] = n
    return counts


def forget_conversation(
    conn: sqlite3.Connection, conversation_id: int, now_ns: int
) -> tuple[int, list[Job]]:
    """A fresh split merged the conversation into another: its results and commitments
    describe a conversation that no longer exists, and its pending jobs would analyse one.
    Returns (results dropped, jobs cancelled); a job running now is dropped when it finishes
    (its completion finds no conversation)."""
    conn.execute("DELETE FROM commitments WHERE conversation_id = :cid", {"cid": conversation_id})
    dropped = conn.execute(
        "DELETE FROM analyses WHERE conversation_id = :cid", {"cid": conversation_id}
    ).rowcount
    rows = conn.execute(
        "UPDATE analysis_jobs SET state = 'dead', last_error = 'conversation_removed',"
        " updated_ns = :now WHERE conversation_id = :cid AND state = 'pending'"
        f" RETURNING {_JOB_COLUMNS}",
        {"cid": conversation_id, "now": now_ns},
    ).fetchall()
    return dropped, [_job(r) for r in rows]
