"""Conversation sealing: a conversation is finished once 90 minutes pass after its last message.

The seeds kept a Redis sorted set of "check at" times and a Celery Beat task that polled it
every minute. Here the set is the `seal_timers` table (one row per open conversation, so a
restart loses nothing) and one task, `Sealer`, sleeps until the earliest timer is due.

Timing follows the splitter (`conversations.split`): a message exactly 90 minutes after the
previous one still joins its conversation, and the importer only creates a conversation
sealed when `end < now - GAP`. So a timer's `due_ns` is `end_ns + GAP_NS`, the last instant
the conversation can still grow, and it is sealed once `now_ns > due_ns`. Times are the
messages' own dates, never the time a check ran, so a reply 89 minutes later keeps the
conversation open however late ingest sees it.

Sealing one conversation is a single transaction: mark it sealed, drop its timer, append
`conversation_sealed`, finalise its stats from its messages (the seeds' "ETL runs again"),
append `conversation_ready_for_analysis`. A crash leaves all of that or none of it, and a
sealed conversation is not sealed again (unless reopened, below), so every step is safe to
retry.

A message can still arrive after the seal dated within 90 minutes of the end (a phone that
was offline, another device syncing late). Ingest decides by message times, as a fresh split
would, so it joins the conversation, which is reopened (`reopen`): unsealed, its timer set
again from its new end, and `conversation_reopened` appended. The analysis side marks the
conversation's results stale on that event; the next seal announces
`conversation_ready_for_analysis` again and the sealed passes run again.

All three events go on scope `chat:{chat_id}` only, stream `task_events:analysis` (the seeds'
catalogue puts per-chat facts there; `global` carries run progress). The analysis engine
consumes `conversation_ready_for_analysis` by type; a second copy on `global` would make
every consumer de-duplicate.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel
import msgspec

from chatstats import log
from chatstats.errors import NotFound
from chatstats.events import bus as events
from chatstats.events import catalogue
from chatstats.ingest.conversations import GAP_NS

logger = log.get(__name__)

SEALED = "conversation_sealed"
READY = "conversation_ready_for_analysis"
REOPENED = "conversation_reopened"

_EPOCH = datetime(1970, 1, 1)


class Sealed(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation sealed in this transaction, with its finalised stats."""

    conversation_id: int
    chat_id: int
    start_ns: int
    end_ns: int
    message_count: int
    sealed_at_ns: int
    sealed_event_id: int
    ready_event_id: int


class OpenConversation(msgspec.Struct, frozen=True, kw_only=True):
    """`scheduled` is False when no timer exists yet; `due_ns` is then the one it would get."""

    chat_id: int
    conversation_id: int
    start_ns: int
    last_message_ns: int
    message_count: int
    due_ns: int
    scheduled: bool
    seconds_left: float  # negative once overdue


def iso_time(ns: int) -> str:
    """Same shape as the API's times (`2024-10-15T12:34:56.789012Z`), integer arithmetic."""
    return (_EPOCH + timedelta(microseconds=ns // 1000)).isoformat(timespec="microseconds") + "Z"


# ---------------------------------------------------------------------------------------------
# Synchronous steps: each runs inside the caller's write transaction.


def schedule(
    conn: sqlite3.Connection,
    conversation_id: int,
    chat_id: int,
    end_ns: int,
    *,
    gap_ns: int = GAP_NS,
) -> int:
    """Set the conversation's timer from its last message; returns the new due time.

    Overwrites rather than keeping the later time: a timer that comes out too early is
    corrected when it fires (`seal_due` re-checks the real end), one too late would not be.
    A conversation already sealed gets no timer, so a stray call cannot resurrect one.
    """
    due_ns = end_ns + gap_ns
    conn.execute(
        "INSERT INTO seal_timers (conversation_id, chat_id, due_ns)"
        " SELECT :cid, :chat, :due WHERE NOT EXISTS"
        " (SELECT 1 FROM conversations WHERE id = :cid AND sealed = 1)"
        " ON CONFLICT (conversation_id) DO UPDATE SET chat_id = excluded.chat_id,"
        " due_ns = excluded.due_ns",
        {"cid": conversation_id, "chat": chat_id, "due": due_ns},
    )
    return due_ns


def reopen(conn: sqlite3.Connection, conversation_id: int, chat_id: int) -> int | None:
    """Unseal a conversation a late message joined; returns the `conversation_reopened`
    event's id, or None when it was not sealed. The caller has already written the new
    span and count, and sets the timer (`schedule`) from the new end."""
    row = conn.execute(
        "UPDATE conversations SET sealed = 0, sealed_at_ns = NULL WHERE id = :id AND sealed = 1"
        " RETURNING end_ns, message_count",
        {"id": conversation_id},
    ).fetchone()
    if row is None:
        return None
    end_ns, count = row
    reopened = catalogue.ConversationReopened(
        chat_id=chat_id,
        conversation_id=conversation_id,
        last_message_time=iso_time(end_ns),
        message_count=count,
    )
    event = events.append(conn, reopened, scope=f"chat:{chat_id}")
    logger.info(
        "conversation_reopened",
        chat_id=chat_id,
        conversation_id=conversation_id,
        message_count=count,
    )
    return event


def ensure_timers(conn: sqlite3.Connection, *, gap_ns: int = GAP_NS) -> int:
    """Give every open conversation without a timer one; returns how many were added.

    Databases written before timers existed, or by a path that forgot to schedule, would
    otherwise keep conversations open forever. Cheap enough to run at every startup.
    """
    cur = conn.execute(
        "INSERT INTO seal_timers (conversation_id, chat_id, due_ns)"
        " SELECT c.id, c.chat_id, c.end_ns + :gap FROM conversations c"
        " WHERE c.sealed = 0 AND NOT EXISTS"
        " (SELECT 1 FROM seal_timers t WHERE t.conversation_id = c.id)",
        {"gap": gap_ns},
    )
    return cur.rowcount


def next_due(conn: sqlite3.Connection) -> int | None:
    due: int | None = conn.execute("SELECT min(due_ns) FROM seal_timers").fetchone()[0]
    return due


def seal_due(
    conn: sqlite3.Connection,
    now_ns: int,
    *,
    gap_ns: int = GAP_NS,
    limit: int | None = None,
) -> list[Sealed]:
    """Seal every conversation whose timer has passed (`due_ns < now_ns`), oldest first.

    `limit` bounds the transaction after a long time off; the caller repeats while timers
    are still due. Timers whose conversation grew meanwhile are moved, not sealed.
    """
    rows = conn.execute(
        "SELECT conversation_id FROM seal_timers WHERE due_ns < :now"
        " ORDER BY due_ns, conversation_id LIMIT :lim",
        {"now": now_ns, "lim": -1 if limit is None else limit},
    ).fetchall()
    out = []
    for (cid,) in rows:
        sealed = _seal(conn, cid, now_ns, gap_ns)
        if sealed is not None:
            out.append(sealed)
    return out


def force_seal(conn: sqlite3.Connection, chat_id: int, now_ns: int) -> Sealed | None:
    """Seal the chat's open conversation now, whatever its due time (testing, the CLI).

    Raises NotFound for an unknown chat; None means the chat has no open conversation.
    Only the newest open conversation is sealed; older open ones keep their timers.
    """
    if conn.execute("SELECT 1 FROM chats WHERE id = :c", {"c": chat_id}).fetchone() is None:
        raise NotFound(f"chat {chat_id} does not exist")
    row = conn.execute(
        "SELECT id FROM conversations WHERE chat_id = :c AND sealed = 0"
        " ORDER BY end_ns DESC, id DESC LIMIT 1",
        {"c": chat_id},
    ).fetchone()
    if row is None:
        return None
    return _seal(conn, row[0], now_ns, None)


def finalize(conn: sqlite3.Connection, conversation_id: int) -> tuple[int, int, int] | None:
    """Recompute start, end and count from the messages themselves (system events inside
    the span are not messages of it); None when it has none.

    Incremental appends keep these up to date as they go; this is the seeds' second ETL
    pass, which makes the sealed record exact whatever happened in between.
    """
    start_ns, end_ns, count = conn.execute(
        "SELECT min(date_ns), max(date_ns), count(*) FROM messages"
        " WHERE conversation_id = :id AND kind = 'message'",
        {"id": conversation_id},
    ).fetchone()
    if not count:
        return None
    conn.execute(
        "UPDATE conversations SET start_ns = :s, end_ns = :e, message_count = :n WHERE id = :id",
        {"s": start_ns, "e": end_ns, "n": count, "id": conversation_id},
    )
    return start_ns, end_ns, count


def _seal(
    conn: sqlite3.Connection, conversation_id: int, now_ns: int, gap_ns: int | None
) -> Sealed | None:
    """Seal one conversation; `gap_ns` None forces it regardless of its last message."""
    row = conn.execute(
        "SELECT chat_id, sealed FROM conversations WHERE id = :id", {"id": conversation_id}
    ).fetchone()
    if row is None or row[1]:
        # Re-split away or already sealed (by another process, or a replayed round).
        conn.execute("DELETE FROM seal_timers WHERE conversation_id = :id", {"id": conversation_id})
        return None
    chat_id = row[0]
    first_ns, last_ns, count = conn.execute(
        "SELECT min(date_ns), max(date_ns), count(*) FROM messages"
        " WHERE conversation_id = :id AND kind = 'message'",
        {"id": conversation_id},
    ).fetchone()
    if not count:
        # No messages left in it: nothing to analyse. Close it quietly so it stops showing
        # as open and cannot be extended, and announce nothing.
        conn.execute(
            "UPDATE conversations SET sealed = 1, sealed_at_ns = :t WHERE id = :id",
            {"t": now_ns, "id": conversation_id},
        )
        conn.execute("DELETE FROM seal_timers WHERE conversation_id = :id", {"id": conversation_id})
        logger.warning("empty_conversation_closed", conversation_id=conversation_id)
        return None
    if gap_ns is not None and last_ns + gap_ns >= now_ns:
        # A message arrived after the timer was set: the conversation is still going.
        schedule(conn, conversation_id, chat_id, last_ns, gap_ns=gap_ns)
        return None

    conn.execute(
        "UPDATE conversations SET sealed = 1, sealed_at_ns = :t WHERE id = :id",
        {"t": now_ns, "id": conversation_id},
    )
    conn.execute("DELETE FROM seal_timers WHERE conversation_id = :id", {"id": conversation_id})
    scope = f"chat:{chat_id}"
    sealed = catalogue.ConversationSealed(
        chat_id=chat_id,
        conversation_id=conversation_id,
        last_message_time=iso_time(last_ns),
        message_count=count,
    )
    sealed_event = events.append(conn, sealed, scope=scope)
    start_ns, end_ns, count = finalize(conn, conversation_id) or (first_ns, last_ns, count)
    ready = catalogue.ConversationReady(
        chat_id=chat_id,
        conversation_id=conversation_id,
        start_time=iso_time(start_ns),
        end_time=iso_time(end_ns),
        message_count=count,
    )
    ready_event = events.append(conn, ready, scope=scope)
    logger.info(
        "conversation_sealed",
        chat_id=chat_id,
        conversation_id=conversation_id,
        message_count=count,
        forced=gap_ns is None,
    )
    return Sealed(
        conversation_id=conversation_id,
        chat_id=chat_id,
        start_ns=start_ns,
        end_ns=end_ns,
        message_count=count,
        sealed_at_ns=now_ns,
        sealed_event_id=sealed_event,
        ready_event_id=ready_event,
    )


def status(
    conn: sqlite3.Connection, now_ns: int, *, gap_ns: int = GAP_NS
) -> list[OpenConversation]:
    """Every open conversation, soonest to seal first."""
    rows = conn.execute(
        "SELECT c.chat_id, c.id, c.start_ns, c.end_ns, c.message_count, t.due_ns"
        " FROM conversations c LEFT JOIN seal_timers t ON t.conversation_id = c.id"
        " WHERE c.sealed = 0"
        " ORDER BY coalesce(t.due_ns, c.end_ns + :gap), c.id",
        {"gap": gap_ns},
    ).fetchall()
    out = []
    for chat_id, cid, start_ns, end_ns, count, due_ns in rows:
        due = end_ns + gap_ns if due_ns is None else due_ns
        out.append(
            OpenConversation(
                chat_id=chat_id,
                conversation_id=cid,
                start_ns=start_ns,
                last_message_ns=end_ns,
                message_count=count,
                due_ns=due,
                scheduled=due_ns is not None,
                seconds_left=(due - now_ns) / 1e9,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# The background task.


class _Database(Protocol):
    async def write(self, fn: Callable[..., Any], *args: Any) -> Any: ...


class _Notifier(Protocol):
    def notify(self) -> None: ...


class Sealer:
    """The one task that seals conversations, sleeping until the earliest timer is due.

    The sleep is capped at `max_sleep` seconds while timers exist: the event loop's clock is
    monotonic and stands still while a laptop sleeps, so a timer computed before the lid
    closed would otherwise fire hours late. With no timers it sleeps until `wake()`.
    """

    def __init__(
        self,
        db: _Database,
        bus: _Notifier,
        *,
        gap_ns: int = GAP_NS,
        clock: Callable[[], int] = time.time_ns,
        batch: int = 500,
        max_sleep: float = 300.0,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        self._db = db
        self._bus = bus
        self._gap_ns = gap_ns
        self._clock = clock
        self._batch = batch
        self._max_sleep = max_sleep
        self._backoff = backoff
        self._event: anyio.Event | None = None
        self._token: Any = None
        self._loop_thread = 0
        self.next_due_ns: int | None = None  # what the task is sleeping towards, for status
        self.rounds = 0
        self.sealed_total = 0

    def wake(self) -> None:
        """Re-read the timers now. Call from the event loop after committing an earlier timer."""
        if self._event is not None:
            self._event.set()

    def wake_threadsafe(self) -> None:
        """`wake()` from any thread (a bulk import's worker); a no-op once the loop is gone."""
        token = self._token
        if token is None:
            return
        if threading.get_ident() == self._loop_thread:
            self.wake()
            return
        with contextlib.suppress(RuntimeError):
            anyio.from_thread.run_sync(self.wake, token=token)

    async def run(self, shutdown: anyio.Event) -> None:
        """Seal until `shutdown` is set. Never raises on a failed round: logs and backs off."""
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        try:
            async with anyio.create_task_group() as tg:

                async def stop() -> None:
                    await shutdown.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(stop)
                await self._loop()
        finally:
            self._token = None
            self._event = None

    async def _loop(self) -> None:
        first = True
        delay = self._backoff[0]
        while True:
            # A fresh event before reading the timers: a wake() from here on is never lost.
            self._event = anyio.Event()
            try:
                sealed, due = await self._db.write(self._round, self._clock(), first)
            except Exception as exc:
                logger.error(
                    "seal_round_failed",
                    error_type=type(exc).__name__,
                    error=str(exc) if isinstance(exc, sqlite3.Error) else None,
                    retry_in=delay,
                )
                await anyio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            first = False
            delay = self._backoff[0]
            self.rounds += 1
            if sealed:
                self.sealed_total += len(sealed)
                self._bus.notify()
                logger.info("seal_round", sealed=len(sealed))
            self.next_due_ns = due
            if due is None:
                timeout = None
            else:
                # Sealed once now > due: aim one nanosecond past it.
                timeout = min(max(0.0, (due + 1 - self._clock()) / 1e9), self._max_sleep)
                if timeout == 0.0:
                    await anyio.lowlevel.checkpoint()
                    continue
            with anyio.move_on_after(timeout):
                await self._event.wait()

    def _round(
        self, conn: sqlite3.Connection, now_ns: int, startup: bool
    ) -> tuple[list[Sealed], int | None]:
        if startup:
            added = ensure_timers(conn, gap_ns=self._gap_ns)
            if added:
                logger.info("seal_timers_backfilled", count=added)
        sealed = seal_due(conn, now_ns, gap_ns=self._gap_ns, limit=self._batch)
        return sealed, next_due(conn)
