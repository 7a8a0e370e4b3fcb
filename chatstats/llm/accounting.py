"""What a call cost and how it ended: one `llm_calls` row per call, never what it said.

Why rows and not counters: usage is easy to drop on some code path (the seeds lost it in a
graph node that returned only the messages), so every call hands its record to the caller,
which writes it in the same transaction as the result it paid for.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec


class CallRecord(msgspec.Struct, kw_only=True):
    """One row of `llm_calls`: what a call cost and how it ended, never what it said."""

    purpose: str
    model: str
    provider: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost: float | None
    latency_ms: float
    outcome: str
    error: str | None
    job_id: int | None = None
    run_id: str | None = None
    conversation_id: int | None = None
    thread_id: int | None = None
    created_ns: int = 0


class CallResult(msgspec.Struct, kw_only=True):
    content: str
    parsed: object | None
    model: str
    provider: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost: float | None
    latency_ms: float
    outcome: str
    error: str | None
    call_id: int | None
    # A streamed answer's tool calls, `{id, name, arguments}` with `arguments` as the model
    # sent it (raw JSON text, possibly malformed: parsing is the caller's business).
    tool_calls: list[dict[str, str]] = []
    finish_reason: str | None = None


# `record` may write at once (async, returns the row id) or stash the record to write it
# later with the result (sync, returns None).
Recorder = Callable[[CallRecord], "Awaitable[int | None] | int | None"]


def record_call(conn: sqlite3.Connection, record: CallRecord) -> int:
    """Insert one accounting row; meant to run inside the caller's write transaction."""
    cur = conn.execute(
        "INSERT INTO llm_calls (purpose, job_id, run_id, conversation_id, thread_id, model,"
        " provider, prompt_tokens, completion_tokens, total_tokens, cost, latency_ms, outcome,"
        " error, created_ns) VALUES (:purpose, :job_id, :run_id, :conversation_id, :thread_id,"
        " :model, :provider, :prompt_tokens, :completion_tokens, :total_tokens, :cost,"
        " :latency_ms, :outcome, :error, :created_ns)",
        {
            "purpose": record.purpose,
            "job_id": record.job_id,
            "run_id": record.run_id,
            "conversation_id": record.conversation_id,
            "thread_id": record.thread_id,
            "model": record.model,
            "provider": record.provider,
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "total_tokens": record.total_tokens,
            "cost": record.cost,
            "latency_ms": record.latency_ms,
            "outcome": record.outcome,
            "error": record.error,
            "created_ns": record.created_ns or time.time_ns(),
        },
    )
    return int(cur.lastrowid or 0)


class LLMAccountant:
    """For callers with nothing else to write: each record in its own write transaction."""

    def __init__(self, db: Any) -> None:
        self._db = db

    async def record(self, record: CallRecord) -> int:
        return int(await self._db.write(record_call, record))


def usage_totals(
    conn: sqlite3.Connection,
    *,
    run_id: str | None = None,
    conversation_id: int | None = None,
    job_id: int | None = None,
) -> dict[str, Any]:
    """Token and cost totals over `llm_calls`, filtered by whichever ids are given.

    `cost` sums known costs only; `unpriced_calls` counts calls that used tokens but have
    no price, so a caller can say the total is a lower bound.
    """
    where, params = [], {}
    for column, value in (
        ("run_id", run_id),
        ("conversation_id", conversation_id),
        ("job_id", job_id),
    ):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    sql = (
        "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
        " coalesce(sum(total_tokens), 0), coalesce(sum(cost), 0.0),"
        " coalesce(sum(cost IS NULL AND (coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)) > 0), 0),"
        " coalesce(sum(outcome != 'ok'), 0)"
        " FROM llm_calls" + (" WHERE " + " AND ".join(where) if where else "")
    )
    calls, prompt, completion, total, cost, unpriced, failed = conn.execute(sql, params).fetchone()
    return {
        "calls": calls,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "cost": float(cost),
        "unpriced_calls": unpriced,
        "failed_calls": failed,
    }
