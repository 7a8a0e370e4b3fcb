"""SQL of the analysis domain: jobs, runs, results, commitments, coverage, the consumer cursor.

Every function takes a connection and runs inside the caller's transaction, so the engine
can put a job's completion, its result, its usage record and its events in one commit. Lists
of ids are bound as one JSON array and expanded with `json_each`: constant statements.

Job states: `pending` (waiting, perhaps until `not_before_ns`), `running` (claimed by a
worker), `done`, `dead` (out of attempts or not retryable; listed and retryable by hand).
`pending` and `running` are the live states; at most one live job exists per conversation,
pass and version (a partial unique index), so enqueueing twice is harmless.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

PENDING, RUNNING, DONE, DEAD = "pending", "running", "done", "dead"
LIVE_STATES = (PENDING, RUNNING)
TERMINAL_STATES = (DONE, DEAD)
STATES = (PENDING, RUNNING, DONE, DEAD)

# Jobs from runs and backfills wait behind those triggered by new and sealed conversations.
BULK_PRIORITY_OFFSET = 1000

_json = msgspec.json.Encoder()


def _ids(values: Iterable[Any]) -> str:
    return _json.encode(list(values)).decode()


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    run_id: str | None
    conversation_id: int
    chat_id: int
    pass_name: str
    pass_version: int
    priority: int
    state: str
    attempts: int
    max_attempts: int
    not_before_ns: int
    last_error: str | None
    created_ns: int
    updated_ns: int
    rerun: bool


_JOB_COLUMNS = (
    "id, run_id, conversation_id, chat_id, pass, pass_version, priority, state, attempts,"
    " max_attempts, not_before_ns, last_error, created_ns, updated_ns, rerun"
)


def _job(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0],
        run_id=row[1],
        conversation_id=row[2],
        chat_id=row[3],
        pass_name=row[4],
        pass_version=row[5],
        priority=row[6],
        state=row[7],
        attempts=row[8],
        max_attempts=row[9],
        not_before_ns=row[10],
        last_error=row[11],
        created_ns=row[12],
        updated_ns=row[13],
        rerun=bool(row[14]),
    )


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
        return cur.lastrowid
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
    return conn.execute(sql, _missing_params(p, chat_ids, limit)).fetchone()[0]


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
    return row[0]


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


# ---------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    kind: str
    status: str
    passes: list[str]
    total: int
    success: int
    failed: int
    created_ns: int
    finished_ns: int | None

    @property
    def pending(self) -> int:
        return max(0, self.total - self.success - self.failed)


_RUN_COLUMNS = "id, kind, status, passes, total, success, failed, created_ns, finished_ns"


def _run(row: Sequence[Any]) -> Run:
    return Run(
        id=row[0],
        kind=row[1],
        status=row[2],
        passes=msgspec.json.decode(row[3]),
        total=row[4],
        success=row[5],
        failed=row[6],
        created_ns=row[7],
        finished_ns=row[8],
    )


def insert_run(
    conn: sqlite3.Connection, run_id: str, kind: str, passes: list[str], now_ns: int
) -> None:
    conn.execute(
        "INSERT INTO analysis_runs (id, kind, status, passes, created_ns)"
        " VALUES (:id, :kind, 'running', :passes, :now)",
        {"id": run_id, "kind": kind, "passes": _ids(passes), "now": now_ns},
    )


def set_run_total(conn: sqlite3.Connection, run_id: str, total: int) -> None:
    conn.execute("UPDATE analysis_runs SET total = :t WHERE id = :id", {"t": total, "id": run_id})


def count_outcome(conn: sqlite3.Connection, run_id: str, *, success: int, failed: int) -> Run:
    row = conn.execute(
        "UPDATE analysis_runs SET success = success + :s, failed = max(0, failed + :f)"
        f" WHERE id = :id RETURNING {_RUN_COLUMNS}",
        {"s": success, "f": failed, "id": run_id},
    ).fetchone()
    return _run(row)


def set_run_status(
    conn: sqlite3.Connection, run_id: str, status: str, finished_ns: int | None
) -> None:
    conn.execute(
        "UPDATE analysis_runs SET status = :st, finished_ns = :fin WHERE id = :id",
        {"st": status, "fin": finished_ns, "id": run_id},
    )


def get_run(conn: sqlite3.Connection, run_id: str) -> Run | None:
    row = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM analysis_runs WHERE id = :id", {"id": run_id}
    ).fetchone()
    return None if row is None else _run(row)


def list_runs(conn: sqlite3.Connection, limit: int) -> list[Run]:
    return [
        _run(r)
        for r in conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM analysis_runs ORDER BY created_ns DESC, id LIMIT :lim",
            {"lim": limit},
        )
    ]


def run_running_count(conn: sqlite3.Connection, run_id: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM analysis_jobs WHERE run_id = :id AND state = 'running'",
        {"id": run_id},
    ).fetchone()[0]


# ---------------------------------------------------------------------------------------------
# Results


def upsert_analysis(
    conn: sqlite3.Connection,
    job: Job,
    result_json: str,
    *,
    model: str | None,
    llm_call_id: int | None,
    now_ns: int,
    sealed_pass: bool = False,
) -> int:
    """Store the result: one row per conversation, pass and version, replaced in place (so
    its id, which commitments point at, stays the same).

    A new result is current, except a sealed pass's stored while its conversation is open:
    a late message reopened it while the call ran, so the result is stale at once and the
    pass runs again after the next seal."""
    row = conn.execute(
        "INSERT INTO analyses (conversation_id, chat_id, pass, pass_version, result, model,"
        " llm_call_id, job_id, run_id, created_ns, stale)"
        " VALUES (:cid, :chat, :pass, :ver, :result, :model, :call, :job, :run, :now,"
        "  :sealed_pass AND EXISTS (SELECT 1 FROM conversations WHERE id = :cid AND sealed = 0))"
        " ON CONFLICT (conversation_id, pass, pass_version) DO UPDATE SET"
        " chat_id = excluded.chat_id, result = excluded.result, model = excluded.model,"
        " llm_call_id = excluded.llm_call_id, job_id = excluded.job_id,"
        " run_id = excluded.run_id, created_ns = excluded.created_ns, stale = excluded.stale"
        " RETURNING id",
        {
            "cid": job.conversation_id,
            "chat": job.chat_id,
            "pass": job.pass_name,
            "ver": job.pass_version,
            "result": result_json,
            "model": model,
            "call": llm_call_id,
            "job": job.id,
            "run": job.run_id,
            "now": now_ns,
            "sealed_pass": int(sealed_pass),
        },
    ).fetchone()
    return row[0]


def mark_stale(conn: sqlite3.Connection, conversation_id: int) -> int:
    """The conversation was reopened: every result it has describes fewer messages than it
    now has. Returns how many results were marked."""
    return conn.execute(
        "UPDATE analyses SET stale = 1 WHERE conversation_id = :cid AND stale = 0",
        {"cid": conversation_id},
    ).rowcount


def has_analysis(
    conn: sqlite3.Connection, conversation_id: int, passes: Iterable[tuple[str, int]]
) -> bool:
    """Whether any of these (pass, version) has a result for the conversation."""
    for name, version in passes:
        row = conn.execute(
            "SELECT 1 FROM analyses WHERE conversation_id = :cid AND pass = :p"
            " AND pass_version = :v",
            {"cid": conversation_id, "p": name, "v": version},
        ).fetchone()
        if row is not None:
            return True
    return False


def replace_commitments(
    conn: sqlite3.Connection,
    analysis_id: int,
    job: Job,
    items: Iterable[dict[str, Any]],
    now_ns: int,
) -> int:
    """The conversation's commitments become this result's."""
    conn.execute(
        "DELETE FROM commitments WHERE conversation_id = :cid", {"cid": job.conversation_id}
    )
    rows = [
        {
            "aid": analysis_id,
            "cid": job.conversation_id,
            "chat": job.chat_id,
            "kind": c["kind"],
            "who": c.get("who"),
            "what": c["what"],
            "due": c.get("due"),
            "status": c.get("status") or "unknown",
            "now": now_ns,
        }
        for c in items
    ]
    conn.executemany(
        "INSERT INTO commitments (analysis_id, conversation_id, chat_id, kind, who, what, due,"
        " status, created_ns) VALUES (:aid, :cid, :chat, :kind, :who, :what, :due, :status, :now)",
        rows,
    )
    return len(rows)


def conversation_analyses(conn: sqlite3.Connection, conversation_id: int) -> list[sqlite3.Row]:
    """Results with the usage of the call that made each one."""
    return conn.execute(
        "SELECT a.id, a.pass, a.pass_version, a.result, a.model, a.created_ns,"
        " l.prompt_tokens, l.completion_tokens, l.cost, a.job_id, a.run_id, a.stale"
        " FROM analyses a LEFT JOIN llm_calls l ON l.id = a.llm_call_id"
        " WHERE a.conversation_id = :cid ORDER BY a.pass, a.pass_version DESC",
        {"cid": conversation_id},
    ).fetchall()


def list_commitments(
    conn: sqlite3.Connection,
    *,
    chat_id: int | None,
    status: str | None,
    limit: int,
    before_id: int | None,
) -> list[sqlite3.Row]:
    """Newest first."""
    sql = (
        "SELECT m.id, m.analysis_id, m.conversation_id, m.chat_id, m.kind, m.who, m.what,"
        " m.due, m.status, m.created_ns, a.pass FROM commitments m"
        " JOIN analyses a ON a.id = m.analysis_id WHERE m.id < :before"
    )
    if chat_id is not None:
        sql += " AND m.chat_id = :chat"
    if status is not None:
        sql += " AND m.status = :status"
    sql += " ORDER BY m.id DESC LIMIT :lim"
    return conn.execute(
        sql,
        {"before": before_id or 2**63 - 1, "chat": chat_id, "status": status, "lim": limit},
    ).fetchall()


def conversation_exists(conn: sqlite3.Connection, conversation_id: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM conversations WHERE id = :id", {"id": conversation_id}
    ).fetchone()
    return row is not None


def chat_exists(conn: sqlite3.Connection, chat_id: int) -> bool:
    return (
        conn.execute("SELECT 1 FROM chats WHERE id = :id", {"id": chat_id}).fetchone() is not None
    )


def open_conversations_of_messages(
    conn: sqlite3.Connection, message_ids: Iterable[int]
) -> list[tuple[int, int]]:
    """(conversation_id, chat_id) of the still-open conversations holding these messages."""
    return conn.execute(
        "SELECT DISTINCT c.id, c.chat_id FROM messages m JOIN conversations c"
        " ON c.id = m.conversation_id"
        " WHERE m.id IN (SELECT value FROM json_each(:ids)) AND c.sealed = 0",
        {"ids": _ids(message_ids)},
    ).fetchall()


def conversation_chat(conn: sqlite3.Connection, conversation_id: int) -> int | None:
    row = conn.execute(
        "SELECT chat_id FROM conversations WHERE id = :id", {"id": conversation_id}
    ).fetchone()
    return None if row is None else row[0]


# ---------------------------------------------------------------------------------------------
# Coverage


def coverage(conn: sqlite3.Connection, p: PassRef, chat_id: int | None) -> dict[str, int]:
    """For one pass: conversations it applies to, how many have its current result (a stale
    one, left from before a reopen, is not current), and the state of the jobs of those
    that do not."""
    sealed = 1 if p.trigger == "sealed" else 0
    chat_clause = "" if chat_id is None else " AND c.chat_id = :chat"
    params = {"sealed": sealed, "pass": p.name, "ver": p.version, "chat": chat_id}
    eligible = conn.execute(
        f"SELECT count(*) FROM conversations c WHERE c.sealed = :sealed{chat_clause}", params
    ).fetchone()[0]
    analysed, stale = conn.execute(
        "SELECT count(*) FILTER (WHERE NOT a.stale), count(*) FILTER (WHERE a.stale)"
        " FROM analyses a JOIN conversations c ON c.id = a.conversation_id"
        f" WHERE a.pass = :pass AND a.pass_version = :ver AND c.sealed = :sealed{chat_clause}",
        params,
    ).fetchone()
    jobs = dict.fromkeys(STATES, 0)
    for state, n in conn.execute(
        "SELECT j.state, count(DISTINCT j.conversation_id) FROM analysis_jobs j"
        " JOIN conversations c ON c.id = j.conversation_id"
        f" WHERE j.pass = :pass AND j.pass_version = :ver AND c.sealed = :sealed{chat_clause}"
        " AND j.state IN ('pending', 'running', 'dead')"
        " AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.conversation_id = j.conversation_id"
        "  AND a.pass = j.pass AND a.pass_version = j.pass_version AND a.stale = 0)"
        " GROUP BY j.state",
        params,
    ):
        jobs[state] = n
    older = conn.execute(
        "SELECT count(DISTINCT a.conversation_id) FROM analyses a"
        " JOIN conversations c ON c.id = a.conversation_id"
        f" WHERE a.pass = :pass AND a.pass_version < :ver AND c.sealed = :sealed{chat_clause}"
        " AND NOT EXISTS (SELECT 1 FROM analyses b WHERE b.conversation_id = a.conversation_id"
        "  AND b.pass = a.pass AND b.pass_version = :ver)",
        params,
    ).fetchone()[0]
    return {
        "conversations": eligible,
        "analysed": analysed,
        "missing": max(0, eligible - analysed),
        "stale": stale,
        "queued": jobs[PENDING] + jobs[RUNNING],
        "dead": jobs[DEAD],
        "older_version_only": older,
    }


def missing(
    conn: sqlite3.Connection, p: PassRef, chat_id: int | None, limit: int
) -> list[sqlite3.Row]:
    """Conversations the pass applies to that lack its current result (or have a stale one),
    newest first, with the state of their newest job for it (None: never queued)."""
    chat_clause = "" if chat_id is None else " AND c.chat_id = :chat"
    return conn.execute(
        "SELECT c.id, c.chat_id, c.start_ns, c.end_ns, c.message_count,"
        " (SELECT j.state FROM analysis_jobs j WHERE j.conversation_id = c.id"
        "  AND j.pass = :pass AND j.pass_version = :ver ORDER BY j.id DESC LIMIT 1) AS job_state"
        f" FROM conversations c WHERE c.sealed = :sealed{chat_clause}"
        " AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.conversation_id = c.id"
        "  AND a.pass = :pass AND a.pass_version = :ver AND a.stale = 0)"
        " ORDER BY c.start_ns DESC, c.id DESC LIMIT :lim",
        {
            "sealed": 1 if p.trigger == "sealed" else 0,
            "pass": p.name,
            "ver": p.version,
            "chat": chat_id,
            "lim": limit,
        },
    ).fetchall()


# ---------------------------------------------------------------------------------------------
# Event-log consumer cursor


def get_cursor(conn: sqlite3.Connection, name: str) -> int | None:
    row = conn.execute("SELECT last_id FROM event_cursors WHERE name = :n", {"n": name}).fetchone()
    return None if row is None else row[0]


def set_cursor(conn: sqlite3.Connection, name: str, last_id: int) -> None:
    conn.execute(
        "INSERT INTO event_cursors (name, last_id) VALUES (:n, :id)"
        " ON CONFLICT (name) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
        {"n": name, "id": last_id},
    )
