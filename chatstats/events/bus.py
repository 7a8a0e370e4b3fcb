"""The EventBus: an append-only `events` table standing in for the seeds' Redis Streams.

An event is appended inside the writer's own transaction, so it commits (or rolls back)
together with the data it describes: a reader can never see "analysis_completed" for a result
that is not there. The table's AUTOINCREMENT id is the stream id. There is one writer
connection and SQLite serialises writers across processes, so ids become visible in commit
order: a reader that resumes "after id N" can neither skip an event nor see one twice.

Readers block on an in-process wake-up that the writer side sets after it commits
(`notify`). A slow fallback poll also catches commits made by other processes (a CLI
command appending events while the daemon runs), which no in-process signal can see.

Events hold ids and counts only, never message text or names, so they are safe to keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import anyio
import msgspec

from chatstats.db import Database

T = TypeVar("T")

DEFAULT_STREAM = "task_events:analysis"
# Redis kept ~200k entries (MAXLEN ~); the log keeps as many, newest first.
MAX_EVENTS = 200_000
# `append` trims whenever an id is a multiple of this: amortised, and no state to keep.
TRIM_EVERY = 1_000
MAX_READ_LIMIT = 10_000

_encode = msgspec.json.Encoder().encode
_decode_data = msgspec.json.Decoder(dict[str, Any]).decode


class Event(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    stream: str
    scope: str
    type: str
    run_id: str | None
    data: dict[str, Any]
    created_ns: int


# ---------------------------------------------------------------------------------------------
# Synchronous side: runs on a connection inside someone's transaction.


def append(
    conn: sqlite3.Connection,
    *,
    scope: str,
    type: str,
    data: Mapping[str, Any],
    run_id: str | int | None = None,
    stream: str = DEFAULT_STREAM,
) -> int:
    """Add one event in the caller's transaction and return its id.

    The caller must call `EventBus.notify()` once the transaction commits, or readers only see
    the event at their next fallback poll. When `run_id` is not given but `data` carries one
    (the seeds' habit), it is used, so `?run_id=` filtering works for such events too.
    """
    if not scope or not type:
        raise ValueError("an event needs a scope and a type")
    if not isinstance(data, Mapping):
        raise TypeError("event data must be a mapping")
    if run_id is None:
        candidate = data.get("run_id")
        if isinstance(candidate, str | int) and not isinstance(candidate, bool):
            run_id = candidate
    cursor = conn.execute(
        "INSERT INTO events (stream, scope, type, run_id, data, created_ns)"
        " VALUES (:stream, :scope, :type, :run_id, :data, :created_ns)",
        {
            "stream": stream,
            "scope": scope,
            "type": type,
            "run_id": None if run_id is None else str(run_id),
            "data": _encode(data).decode(),
            "created_ns": time.time_ns(),
        },
    )
    event_id = cursor.lastrowid
    assert event_id is not None
    if event_id % TRIM_EVERY == 0:
        trim(conn)
    return event_id


def trim(conn: sqlite3.Connection, keep: int | None = None) -> int:
    """Delete all but the newest `keep` (default MAX_EVENTS) events; returns how many went.

    Ids are dense (AUTOINCREMENT, and trimming only ever removes the oldest), so "older than
    the newest id minus keep" is a rowid range: no count, no scan of what stays.
    """
    if keep is None:
        keep = MAX_EVENTS
    if keep < 0:
        raise ValueError("keep must be >= 0")
    cursor = conn.execute(
        "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - :keep", {"keep": keep}
    )
    return cursor.rowcount


def last_event_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    return int(row[0])


def first_event_id(conn: sqlite3.Connection) -> int:
    """The oldest id still kept (0 when the log is empty)."""
    row = conn.execute("SELECT coalesce(min(id), 0) FROM events").fetchone()
    return int(row[0])


@functools.cache
def _select_sql(by_stream: bool, by_scope: bool, by_run: bool) -> str:
    """One constant statement per filter combination, so each can use its own index."""
    where = ["id > :after"]
    if by_stream:
        where.append("stream = :stream")
    if by_scope:
        where.append("scope IN (SELECT value FROM json_each(:scopes))")
    if by_run:
        where.append("run_id = :run_id")
    return (
        "SELECT id, stream, scope, type, run_id, data, created_ns FROM events"
        f" WHERE {' AND '.join(where)} ORDER BY id LIMIT :limit"
    )


def select_events(
    conn: sqlite3.Connection,
    after_id: int,
    stream: str | None,
    scopes: list[str] | None,
    run_id: str | None,
    limit: int,
) -> tuple[list[Event], int]:
    """Matching events after `after_id`, and the newest id in the same snapshot.

    The second value lets a filtered reader that found nothing move its cursor past events
    that did not match, instead of scanning them again at every wake-up.
    """
    sql = _select_sql(stream is not None, scopes is not None, run_id is not None)
    params = {
        "after": after_id,
        "stream": stream,
        "scopes": None if scopes is None else _encode(scopes).decode(),
        "run_id": run_id,
        "limit": limit,
    }
    conn.execute("BEGIN")  # one read snapshot for both statements
    try:
        rows = conn.execute(sql, params).fetchall()
        horizon = last_event_id(conn) if not rows else rows[-1][0]
    finally:
        conn.execute("COMMIT")
    return [_event(r) for r in rows], horizon


def _event(row: sqlite3.Row) -> Event:
    try:
        data = _decode_data(row[5])
    except msgspec.DecodeError:
        data = {}
    return Event(
        id=row[0],
        stream=row[1],
        scope=row[2],
        type=row[3],
        run_id=row[4],
        data=data,
        created_ns=row[6],
    )


# ---------------------------------------------------------------------------------------------
# Asynchronous side: the daemon's one bus.


class EventBus:
    """Blocking reads over the event log, woken by `notify` after a commit."""

    def __init__(self, db: Database, *, poll_seconds: float | None = 1.0) -> None:
        self._db = db
        self._poll_seconds = poll_seconds
        self._changed: anyio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.notifications = 0

    # -- waking readers ---------------------------------------------------------------------

    def notify(self) -> None:
        """Wake every blocked reader. Call on the event loop after a commit that appended."""
        self.notifications += 1
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    def notify_threadsafe(self) -> None:
        """`notify` for a commit made in a worker thread (e.g. a bulk import's own connection).

        Never blocks the calling thread. Before any reader has run there is nobody to wake,
        so doing nothing is right.
        """
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(self.notify)

    def _waiter(self) -> anyio.Event:
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    # -- writing ----------------------------------------------------------------------------

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """`Database.write` then `notify`: for transactions that call `append` among others."""
        result = await self._db.write(fn, *args)
        self.notify()
        return result

    async def publish(
        self,
        scope: str,
        type: str,
        data: Mapping[str, Any],
        run_id: str | int | None = None,
        stream: str = DEFAULT_STREAM,
    ) -> int:
        """Append one event in its own transaction, for callers that have none open."""
        return await self.write(
            functools.partial(
                append, scope=scope, type=type, data=data, run_id=run_id, stream=stream
            )
        )

    # -- reading ----------------------------------------------------------------------------

    async def last_id(self) -> int:
        return await self._db.read(last_event_id)

    async def first_id(self) -> int:
        return await self._db.read(first_event_id)

    async def read(
        self,
        after_id: int,
        *,
        stream: str | None = None,
        scopes: str | Iterable[str] | None = None,
        run_id: str | int | None = None,
        limit: int = 500,
        timeout: float | None = None,
    ) -> list[Event]:
        """Events after `after_id` matching every filter given, oldest first, at most `limit`.

        Returns at once when there are some; otherwise waits until a commit adds some, or
        returns [] after `timeout` seconds. `scopes` match exactly; several are OR-ed; an
        empty collection means no scope filter.
        """
        self._loop = asyncio.get_running_loop()
        if isinstance(scopes, str):
            scope_list: list[str] | None = [scopes]
        else:
            scope_list = sorted(set(scopes)) if scopes is not None else None
        if not scope_list:
            scope_list = None
        run = None if run_id is None else str(run_id)
        limit = max(1, min(limit, MAX_READ_LIMIT))
        cursor = max(0, after_id)
        deadline = None if timeout is None else anyio.current_time() + timeout
        while True:
            changed = self._waiter()  # taken before the query, so no commit is missed
            # The query itself is never cut short by `timeout`: events it found are returned.
            events, horizon = await self._db.read(
                select_events, cursor, stream, scope_list, run, limit
            )
            if events:
                return events
            cursor = max(cursor, horizon)
            wait = self._poll_seconds
            if deadline is not None:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    return []
                wait = remaining if wait is None else min(wait, remaining)
            with anyio.move_on_after(wait):
                await changed.wait()
