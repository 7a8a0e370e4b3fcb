"""What a call cost and how it ended: one `llm_calls` row per call, never what it said.

Why rows and not counters: usage is easy to drop on some code path (the seeds lost it in a
graph node that returned only the messages), so every call hands its record to the caller,
which writes it in the same transaction as the result it paid for.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
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
    # "completion" (chat completions and streams) or "embedding"; `inputs` (texts sent) and
    # `attempt` (1 for a batch's first try, 2.. for its retries) are the embedder's.
    operation: str = "completion"
    inputs: int | None = None
    attempt: int | None = None


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


_INSERT = (
    "INSERT INTO llm_calls (purpose, job_id, run_id, conversation_id, thread_id, model,"
    " provider, prompt_tokens, completion_tokens, total_tokens, cost, latency_ms, outcome,"
    " error, created_ns, operation, inputs, attempt) VALUES (:purpose, :job_id, :run_id,"
    " :conversation_id, :thread_id, :model, :provider, :prompt_tokens, :completion_tokens,"
    " :total_tokens, :cost, :latency_ms, :outcome, :error, :created_ns, :operation, :inputs,"
    " :attempt)"
)


def _params(record: CallRecord) -> dict[str, Any]:
    return {
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
        "operation": record.operation,
        "inputs": record.inputs,
        "attempt": record.attempt,
    }


def record_call(conn: sqlite3.Connection, record: CallRecord) -> int:
    """Insert one accounting row; meant to run inside the caller's write transaction."""
    cur = conn.execute(_INSERT, _params(record))
    return int(cur.lastrowid or 0)


def record_calls(conn: sqlite3.Connection, records: list[CallRecord]) -> int:
    """Insert many rows in the caller's transaction (a CallBuffer's flush); returns how many."""
    conn.executemany(_INSERT, [_params(r) for r in records])
    return len(records)


class CallBuffer:
    """Records made in worker threads (embedding calls), written in batches by one task.

    Why not a write per call: embeddings are made in the index's worker threads, which
    have no writer (the one writer connection lives on the loop side), and a search query
    embeds once per request: a write transaction each would queue behind ingest's on the
    writer for a few hundred bytes. `add` is thread-safe and never blocks on the database;
    `run` flushes every `every_s` seconds and a last time when cancelled, so a clean stop
    keeps every record and a kill -9 loses at most the last second's. Bounded: past
    `limit` unwritten records (a database that cannot be written) the oldest are dropped
    and counted in `dropped`.
    """

    def __init__(self, *, every_s: float = 1.0, limit: int = 100_000) -> None:
        self.every_s = every_s
        self.limit = limit
        self.dropped = 0
        self._records: list[CallRecord] = []
        self._lock = threading.Lock()

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)
            if len(self._records) > self.limit:
                extra = len(self._records) - self.limit
                del self._records[:extra]
                self.dropped += extra

    def pending(self) -> int:
        with self._lock:
            return len(self._records)

    async def flush(self, db: Any) -> int:
        """Write what is waiting, in one transaction; on failure the records stay queued."""
        with self._lock:
            batch, self._records = self._records, []
        if not batch:
            return 0
        try:
            return int(await db.write(record_calls, batch))
        except BaseException:
            with self._lock:
                self._records[:0] = batch
            raise

    async def run(self, db: Any) -> None:
        """Flush every `every_s` until cancelled, then once more (shielded)."""
        try:
            while True:
                await anyio.sleep(self.every_s)
                if self.pending():
                    await self.flush(db)
        finally:
            with anyio.CancelScope(shield=True):
                await self.flush(db)


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
    operation: str | None = None,
) -> dict[str, Any]:
    """Token and cost totals over `llm_calls`, filtered by whichever ids are given
    (`operation`: "completion" or "embedding"; None: both).

    `cost` sums known costs only; `unpriced_calls` counts calls that used tokens but have
    no price, so a caller can say the total is a lower bound.
    """
    where, params = [], {}
    for column, value in (
        ("run_id", run_id),
        ("conversation_id", conversation_id),
        ("job_id", job_id),
        ("operation", operation),
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


def embedding_usage(conn: sqlite3.Connection, model: str | None = None) -> dict[str, Any]:
    """What the embedding calls cost, for the index status: calls, tokens, cost (None when
    some calls used tokens and none had a price), latency and failures, optionally of one
    model."""
    where = "operation = 'embedding'" + (" AND model = :model" if model is not None else "")
    calls, tokens, cost, priced, latency, failed = conn.execute(
        "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(cost), 0.0),"
        " count(cost), coalesce(sum(latency_ms), 0.0), coalesce(sum(outcome != 'ok'), 0)"
        " FROM llm_calls WHERE " + where,
        {"model": model},
    ).fetchone()
    return {
        "calls": calls,
        "prompt_tokens": tokens,
        "cost": float(cost) if priced or not tokens else None,
        "latency_ms": round(float(latency), 3),
        "failed_calls": failed,
    }
