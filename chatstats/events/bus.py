"""The EventBus: an append-only `events` table standing in for the seeds' Redis Streams.

An event is appended inside the writer's own transaction, so it commits (or rolls back)
together with the data it describes: a reader can never see "analysis_completed" for a result
that is not there. The table's AUTOINCREMENT id is the stream id. There is one writer
connection and SQLite serialises writers across processes, so ids become visible in commit
order: a reader that resumes "after id N" can neither skip an event nor see one twice.

Readers block on an in-process wake-up that the writer side sets after it commits
(`notify`). A slow fallback poll also catches commits made by other processes (a CLI
command appending events while the daemon runs), which no in-process signal can see.

The log is trimmed to its newest MAX_EVENTS, so a reader that resumes after an id it was
given long ago may find that the events after it are gone. `EventBus.follow` never skips
such a hole silently: it yields a `Reset` (the position asked for and where the log now
starts) and carries on from the start of what is kept.

Events hold ids and counts only, never message text or names, so they are safe to keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, TypeVar

import anyio
import msgspec

from chatstats.db import Database
from chatstats.events import catalogue
from chatstats.events.catalogue import Payload

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

    @property
    def payload(self) -> catalogue.EventPayload | None:
        """The typed payload (None for a type outside the catalogue): consumers `match` on
        it instead of reading keys out of `data`."""
        return catalogue.decode(self.type, self.data)


class Reset(msgspec.Struct, frozen=True, kw_only=True):
    """The events after `requested_id` are no longer in the log (trimmed, or the position
    was never one of this log's: a replaced data directory); it now starts at `first_id`."""

    requested_id: int
    first_id: int


# ---------------------------------------------------------------------------------------------
# Synchronous side: runs on a connection inside someone's transaction.


def append(
    conn: sqlite3.Connection,
    payload: Payload | None = None,
    *,
    scope: str,
    type: str | None = None,
    data: Mapping[str, Any] | None = None,
    run_id: str | int | None = None,
    stream: str = DEFAULT_STREAM,
) -> int:
    """Add one event in the caller's transaction and return its id.

    The daemon's own emitters pass a catalogued `payload` (chatstats.events.catalogue); the
    `type`/`data` form stays for the log's generic uses, and a catalogued type given that way
    is still checked against its shape. The caller must call `EventBus.notify()` once the
    transaction commits, or readers only see the event at their next fallback poll. When
    `run_id` is not given but the data carries one (the seeds' habit), it is used, so
    `?run_id=` filtering works for such events too.
    """
    if payload is not None:
        if type is not None or data is not None:
            raise TypeError("give a payload or type and data, not both")
        type, data = catalogue.type_of(payload), catalogue.data_of(payload)
    if not scope or not type:
        raise ValueError("an event needs a scope and a type")
    if not isinstance(data, Mapping):
        raise TypeError("event data must be a mapping")
    data = catalogue.check(type, data)
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


def lost_position(conn: sqlite3.Connection, after_id: int) -> Reset | None:
    """Whether a reader resuming after `after_id` has lost events: those after it were
    trimmed, or `after_id` is past every id this log ever gave. 0 ("all that is kept") never
    loses anything. Two index lookups: the oldest rowid and the AUTOINCREMENT counter."""
    if after_id <= 0:
        return None
    row = conn.execute(
        "SELECT (SELECT min(id) FROM events),"
        " (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'events')"
    ).fetchone()
    oldest, assigned = row[0], int(row[1])
    first = int(oldest) if oldest is not None else assigned + 1
    if after_id < first - 1 or after_id > assigned:
        return Reset(requested_id=after_id, first_id=first)
    return None


def select_events(
    conn: sqlite3.Connection,
    after_id: int,
    stream: str | None,
    scopes: list[str] | None,
    run_id: str | None,
    limit: int,
    check_position: bool = False,
) -> tuple[list[Event], int, Reset | None]:
    """Matching events after `after_id`, the newest id in the same snapshot, and (when asked)
    whether the events after `after_id` are gone, in which case nothing is read.

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
    conn.execute("BEGIN")  # one read snapshot for every statement
    try:
        reset = lost_position(conn, after_id) if check_position else None
        if reset is not None:
            return [], after_id, reset
        rows = conn.execute(sql, params).fetchall()
        horizon = last_event_id(conn) if not rows else rows[-1][0]
    finally:
        conn.execute("COMMIT")
    return [_event(r) for r in rows], horizon, None


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
        type: str | Payload,
        data: Mapping[str, Any] | None = None,
        run_id: str | int | None = None,
        stream: str = DEFAULT_STREAM,
    ) -> int:
        """Append one event (a catalogued payload, or a type and its data) in its own
        transaction, for callers that have none open."""
        if isinstance(type, Payload):
            payload = type

            def call(conn: sqlite3.Connection) -> int:
                return append(conn, payload, scope=scope, run_id=run_id, stream=stream)
        else:
            call = functools.partial(
                append, scope=scope, type=type, data=data, run_id=run_id, stream=stream
            )
        return await self.write(call)

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
        events, _reset = await self._read(after_id, stream, scopes, run_id, limit, timeout, False)
        return events

    async def follow(
        self,
        after_id: int,
        *,
        stream: str | None = None,
        scopes: str | Iterable[str] | None = None,
        run_id: str | int | None = None,
        limit: int = 500,
    ) -> AsyncIterator[Event | Reset]:
        """Every matching event after `after_id`, forever, in id order; a `Reset` whenever the
        events after the position asked for (or reached: a reader can fall behind a trim)
        are gone, after which it goes on from the oldest event kept."""
        cursor = after_id
        while True:
            events, reset = await self._read(cursor, stream, scopes, run_id, limit, None, True)
            if reset is not None:
                yield reset
                cursor = reset.first_id - 1
                continue
            for e in events:
                yield e
            if events:
                cursor = events[-1].id

    async def _read(
        self,
        after_id: int,
        stream: str | None,
        scopes: str | Iterable[str] | None,
        run_id: str | int | None,
        limit: int,
        timeout: float | None,
        check_position: bool,
    ) -> tuple[list[Event], Reset | None]:
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
            events, horizon, reset = await self._db.read(
                select_events, cursor, stream, scope_list, run, limit, check_position
            )
            if events or reset is not None:
                return events, reset
            cursor = max(cursor, horizon)
            wait = self._poll_seconds
            if deadline is not None:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    return [], None
                wait = remaining if wait is None else min(wait, remaining)
            with anyio.move_on_after(wait):
                await changed.wait()
