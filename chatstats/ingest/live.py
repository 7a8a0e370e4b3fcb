"""The live tail: every new or changed row of chat.db into the app database, within a blink.

A change is noticed through a file-system event on the Messages folder (watchfiles:
inotify / FSEvents), filtered to chat.db and its WAL: milliseconds after a commit, and no
CPU while nothing happens. Paths are watched through their folder and stat-ed by name,
never bound to an inode, so a chat.db or WAL that Messages.app recreates is still seen
(inode-bound watchers have gone deaf for days in other tools). Events are a trigger, not
the truth: every `poll_interval` (WATCHED_POLL_SECONDS while a watcher works) the stat
fingerprints (inode, size, mtime) of both files are compared anyway, and every few seconds
SQLite itself is asked (`PRAGMA data_version`), which catches commits that leave size and
mtime unchanged (a WAL rewritten from its start after a checkpoint, coarse mtimes). See
scripts/bench_live.py for what this costs.

Each sync is ONE write transaction holding the new rows, the rows Messages.app changed in
place (edits, unsends, receipts, the `is_from_me` corrections it writes milliseconds after
an insert) and the source's new watermarks, so a crash can neither lose nor duplicate a
message. Only after the commit does it tell anyone: the event log is woken, the sealer is
woken, and message_hub subscribers get the new and changed messages (lossy by design; a
slow client never slows ingest).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from chatstats import log
from chatstats.db import Database
from chatstats.imessage import chatdb
from chatstats.imessage.chatdb import ChatDBError, M
from chatstats.imessage.dates import unix_ns_to_apple
from chatstats.ingest import watermark
from chatstats.ingest.batch import Counters, Ingest, Outcome
from chatstats.stats import maintain as stats_maintain

logger = log.get(__name__)

# Rows whose receipts/edits are re-checked on every change (the date index keeps it cheap);
# older rows are covered by the full scan at start and every FULL_SCAN_SECONDS.
RECENT_WINDOW_NS = 14 * 24 * 3600 * 1_000_000_000
FULL_SCAN_SECONDS = 300.0
FALLBACK_CHECK_SECONDS = 2.0
# While a file-system watcher feeds wake-ups and the last sync succeeded, the stat and
# `data_version` checks only catch an event the watcher dropped: they can be slow (idle CPU).
# Starting, waiting (a locked or missing chat.db writes nothing to watch) or unwatched, the
# short `poll_interval` and FALLBACK_CHECK_SECONDS apply.
# 1 s, not 5: a file event the watcher drops (seen intermittently in the browser test) must
# still reach clients within a second; two stat() calls a second cost nothing measurable.
WATCHED_POLL_SECONDS = 1.0
WATCHED_FALLBACK_SECONDS = 30.0
# A writer appends its WAL frames (size and mtime change, the watcher fires) a moment before
# its commit is visible in the WAL index (-shm, not watched: our own reads write it). A sync
# in that gap reads nothing, and the fingerprint it leaves already matches the committed
# files, so no later stat check would notice. For SETTLE_SECONDS after a change the loop
# wakes every SETTLE_POLL_SECONDS and asks `data_version`, which does see the commit.
SETTLE_SECONDS = 0.5
SETTLE_POLL_SECONDS = 0.02
# Messages.app corrects fields (is_from_me, is_sent…) a few ms after inserting, without
# moving any date a cursor could follow. The correction is a commit, so it triggers a sync;
# each sync re-reads the rows it ingested in the last few seconds to find it.
CORRECTION_WINDOW_SECONDS = 3.0
_FUTURE_SLACK_NS = 24 * 3600 * 1_000_000_000

Fingerprint = tuple[tuple[int, int, int] | None, ...]
Publisher = Callable[[Outcome], Awaitable[None]]


def fingerprint(path: Path | tuple[str, str]) -> Fingerprint:
    """(inode, size, mtime) of chat.db and its WAL; None for a file that is not there."""
    paths = (str(path), f"{path}-wal") if isinstance(path, Path) else path
    out: list[tuple[int, int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class TailStatus(msgspec.Struct):
    state: str = "starting"  # starting | ok | waiting
    error: str | None = None
    watcher: bool = False  # a file-system watcher feeds wake-ups (else: polling only)
    batches: int = 0
    messages: int = 0
    changed: int = 0
    last_sync_ns: int | None = None


class LiveTail:
    """Owns the read-only chat.db connection and the per-source cursors."""

    def __init__(
        self,
        db: Database,
        source: Path,
        *,
        publish: Publisher | None = None,
        poll_interval: float = 0.25,
        debounce: float = 0.002,
        watch_debounce_ms: int = 5,
        kind: str = "chatdb",
    ) -> None:
        self.db = db
        self.source = source
        self.publish = publish
        self.poll_interval = poll_interval
        self.debounce = debounce
        self.watch_debounce_ms = watch_debounce_ms
        self.watching = False  # True while a file-system watcher feeds wake-ups
        self.kind = kind
        self.status = TailStatus()
        self._reader: chatdb.Reader | None = None
        self._inode: int | None = None
        self._maps: tuple[dict[int, int], dict[int, int]] | None = None
        self._recent: dict[int, float] = {}  # chat.db ROWID → re-check until (monotonic)
        # chat.db ROWID → its change columns as a windowed sync applied them, since the last
        # full scan (which alone advances the stored marks, so every windowed scan finds
        # again each row changed since): a row found again unchanged is skipped. Without
        # it each sync re-decoded every row received since the full scan, and commit->SSE
        # grew by ~10 ms a minute of steady traffic (scripts/bench_index_live.py, 300k).
        self._applied: dict[int, tuple[int, ...]] = {}
        self._data_version: int | None = None
        self._sync_lock = anyio.Lock()
        self.on_batch: Callable[[Outcome, Counters], None] | None = None

    # -- the source connection ------------------------------------------------------------

    def _open(self) -> chatdb.Reader:
        st = os.stat(self.source)
        if self._reader is not None and self._inode == st.st_ino:
            return self._reader
        self._close()
        conn = chatdb.open_source(self.source)
        conn.execute("PRAGMA busy_timeout=250")  # a locked chat.db: give up fast, retry soon
        self._reader = chatdb.Reader(conn)
        self._inode = st.st_ino
        self._maps = None
        self._data_version = None
        return self._reader

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.conn.close()
        self._reader = None

    def _version_changed(self) -> bool:
        if self._reader is None:
            return True
        try:
            version: int = self._reader.conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return True
        changed = version != self._data_version
        self._data_version = version
        return changed

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, stop: anyio.Event) -> None:
        """Follow chat.db until `stop`; every failure is reported and retried, never fatal.

        Wakes on a file-system event for chat.db or its WAL (inotify / FSEvents on the
        folder, so a recreated file is still seen), and otherwise every `poll_interval`
        seconds to compare stat fingerprints; `PRAGMA data_version` is asked every few
        seconds as a last resort. While the watcher is healthy and the tail is `ok`, both
        checks slow down (WATCHED_POLL_SECONDS, WATCHED_FALLBACK_SECONDS: idle CPU) while a
        commit still reaches the UI in milliseconds; `waiting` retries on its short backoff.
        """
        watched = (str(self.source), f"{self.source}-wal")
        fp = fingerprint(watched)
        kick = asyncio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(self._watch, kick, stop)
            await self._sync_safely(full=True)
            last_full = last_fallback = time.monotonic()
            backoff = self.poll_interval
            settle_until = 0.0
            while not stop.is_set():
                quiet = self.watching and self.status.state == "ok"
                settling = time.monotonic() < settle_until
                if self.status.state == "waiting":
                    delay = backoff
                elif settling:
                    delay = SETTLE_POLL_SECONDS
                else:
                    delay = max(self.poll_interval, WATCHED_POLL_SECONDS if quiet else 0.0)
                with contextlib.suppress(TimeoutError):  # asyncio: keep each wake-up cheap
                    await asyncio.wait_for(kick.wait(), delay)
                kicked = kick.is_set()
                kick.clear()
                if stop.is_set():
                    break
                now = time.monotonic()
                new_fp = fingerprint(watched)
                full = now - last_full >= FULL_SCAN_SECONDS
                due = new_fp != fp or full or self.status.state == "waiting"
                if not due and (kicked or settling):
                    due = self._version_changed()  # a commit that became visible after its write
                if new_fp != fp:
                    settle_until = now + SETTLE_SECONDS
                every = WATCHED_FALLBACK_SECONDS if quiet else FALLBACK_CHECK_SECONDS
                if not due and now - last_fallback >= every:
                    last_fallback = now
                    due = self._version_changed()
                if not due:
                    continue
                if new_fp != fp and self.debounce:
                    await anyio.sleep(self.debounce)  # let a burst of commits land together
                    new_fp = fingerprint(watched)
                fp = new_fp
                ok = await self._sync_safely(full=full)
                if full and ok:
                    last_full = now
                backoff = self.poll_interval if ok else min(max(backoff * 2, 0.25), 5.0)
            tg.cancel_scope.cancel()
        self._close()

    async def _watch(self, kick: asyncio.Event, stop: anyio.Event, *, task_status) -> None:  # type: ignore[no-untyped-def]
        """Set `kick` on every change to chat.db or its WAL (not -shm: our own reads touch
        it). A watcher that cannot start or fails is retried; polling covers meanwhile."""
        from chatstats.ingest.watch import watch

        names = {self.source.name, f"{self.source.name}-wal"}
        task_status.started(True)
        while not stop.is_set():
            try:
                if self.source.parent.is_dir():
                    kind = await watch(
                        self.source.parent, names, kick.set, stop, started=self._watching
                    )
                    self._watching("")
                    kick.set()  # unwatched now: the loop goes back to its short checks
                    if kind:
                        continue
            except Exception as exc:  # never fatal: polling covers for it
                self.watching = self.status.watcher = False
                kick.set()
                logger.warning("live_watch_failed", error_type=type(exc).__name__)
            with anyio.move_on_after(5.0):
                await stop.wait()

    def _watching(self, kind: str) -> None:
        self.watching = self.status.watcher = bool(kind)

    async def _sync_safely(self, *, full: bool = False) -> bool:
        try:
            await self.sync(full=full)
        except ChatDBError as exc:
            self._report_waiting(exc.message)
            return False
        except (OSError, sqlite3.Error) as exc:
            self._report_waiting(f"{type(exc).__name__}: {exc}")
            return False
        except Exception as exc:  # a bug or an unforeseen row: the batch rolled back; retry
            frames = traceback.extract_tb(exc.__traceback__)[-4:]
            logger.error(
                "live_sync_failed",
                error_type=type(exc).__name__,
                where=[f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in frames],
            )
            self._report_waiting(f"internal error ({type(exc).__name__}); retrying")
            return False
        return True

    def _report_waiting(self, reason: str) -> None:
        if self.status.state != "waiting" or self.status.error != reason:
            logger.warning("live_sync_waiting", reason=reason)
        self.status.state = "waiting"
        self.status.error = reason
        self._maps = None  # a rolled-back batch may have cached ids that no longer exist
        self._close()

    async def sync(self, *, full: bool = False) -> Outcome:
        """One transaction: new rows, changed rows, watermarks. Then publish."""
        async with self._sync_lock:
            if not self.source.exists():
                raise ChatDBError(f"Messages database not found: {self.source}")
            reader = self._open()
            self._version_changed()
            counters = Counters()
            started = time.perf_counter()
            try:
                outcome = await self.db.write(self._sync_tx, reader, counters, full)
            except BaseException:
                self._applied = {}  # rolled back: what it noted as applied was not
                raise
            self.status.state, self.status.error = "ok", None
            self.status.batches += 1
            self.status.messages += len(outcome.new_message_ids)
            self.status.changed += len(outcome.changed_message_ids)
            self.status.last_sync_ns = time.time_ns()
            if outcome.new_message_ids or outcome.changed_message_ids:
                logger.info(
                    "live_sync_batch",
                    new=len(outcome.new_message_ids),
                    changed=len(outcome.changed_message_ids),
                    reactions=counters.reactions_added,
                    chats=len(outcome.chat_ids),
                    ms=round((time.perf_counter() - started) * 1000, 1),
                )
            if self.on_batch is not None:
                self.on_batch(outcome, counters)
            if self.publish is not None:
                try:
                    await self.publish(outcome)
                except Exception as exc:  # the rows are committed; only the UI misses a beat
                    logger.error("live_publish_failed", error_type=type(exc).__name__)
            return outcome

    def _sync_tx(
        self, conn: sqlite3.Connection, reader: chatdb.Reader, counters: Counters, full: bool
    ) -> Outcome:
        path = str(self.source.resolve())
        source_id, msg_wm, att_wm, marks = watermark.load(conn, path, self.kind)
        if reader.max_message_rowid() < msg_wm:
            logger.warning("source_rowids_restarted", watermark=msg_wm)
            msg_wm = att_wm = 0
            self._maps = None
        ingest = Ingest(conn, reader, counters, maps=self._maps)

        new_rowids: list[int] = []
        max_rowid = msg_wm
        for chunk in reader.message_chunks(msg_wm, limit=2000):
            max_rowid = chunk[-1][0]
            new_rowids.extend(r[0] for r in chunk)
            ingest.add_messages(ingest.skip_known(chunk))
        max_att = att_wm
        for chunk in reader.attachment_chunks(att_wm, limit=2000, message_upto=max_rowid):
            max_att = chunk[-1][0]
            ingest.add_attachments(chunk)

        # Rows changed in place: recent ones on every sync, all of them on a full scan.
        now_apple = unix_ns_to_apple(time.time_ns())
        since = None if full else now_apple - RECENT_WINDOW_NS
        changed = reader.changed_rows(marks, msg_wm, since)
        if full:
            self._applied = {}
        else:
            changed = [r for r in changed if self._applied.get(r[0]) != _change_key(r)]
        clock = time.monotonic()
        recheck = [r for r, until in self._recent.items() if until > clock and r <= msg_wm]
        changed_rowids = {r[0] for r in changed}
        changed += [r for r in reader.rows_by_rowid(recheck) if r[0] not in changed_rowids]
        if changed:
            ingest.update_messages(changed)
            if not full:
                self._applied.update((r[0], _change_key(r)) for r in changed)
        if full:
            # Only a full scan may advance the marks: a windowed one skips older rows.
            limit = now_apple + _FUTURE_SLACK_NS
            for r in changed:
                for col in chatdb.CHANGE_COLUMNS:
                    value = r[M[col]] or 0
                    if marks[col] < value <= limit:
                        marks[col] = value

        outcome = ingest.finish()
        watermark.advance(
            conn, source_id, message_rowid=max_rowid, attachment_rowid=max_att, marks=marks
        )
        self._append_events(conn, ingest, outcome)
        stats_maintain.drain(conn)  # the batch's words into the statistics, before the commit
        self._maps = ingest.maps
        self._recent = {r: until for r, until in self._recent.items() if until > clock}
        for rowid in new_rowids:
            self._recent[rowid] = clock + CORRECTION_WINDOW_SECONDS
        return outcome

    @staticmethod
    def _append_events(conn: sqlite3.Connection, ingest: Ingest, outcome: Outcome) -> None:
        """`messages_synced` per chat on the event log, in the same transaction as the rows:
        live analysis passes consume it and can never miss a batch."""
        if not (outcome.new_message_ids or outcome.changed_message_ids):
            return
        from chatstats.events import bus, catalogue

        per_chat: dict[int, dict[str, list[int]]] = {}
        ids = outcome.new_message_ids + outcome.changed_message_ids
        for mid, chat_id, conversation_id in conn.execute(
            "SELECT id, chat_id, conversation_id FROM messages"
            " WHERE id IN (SELECT value FROM json_each(:ids)) AND chat_id IS NOT NULL",
            {"ids": msgspec.json.encode(ids).decode()},
        ):
            entry = per_chat.setdefault(chat_id, {"new": [], "changed": [], "conversations": []})
            entry["new" if mid >= ingest.first_new_id else "changed"].append(mid)
            if conversation_id is not None and conversation_id not in entry["conversations"]:
                entry["conversations"].append(conversation_id)
        for chat_id, entry in per_chat.items():
            synced = catalogue.MessagesSynced(
                chat_id=chat_id,
                new_message_ids=entry["new"],
                changed_message_ids=entry["changed"],
                conversation_ids=entry["conversations"],
            )
            bus.append(conn, synced, scope=f"chat:{chat_id}")


def summary_of(status: TailStatus) -> dict[str, Any]:
    summary: dict[str, Any] = msgspec.to_builtins(status)
    return summary


def _change_key(row: tuple[Any, ...]) -> tuple[int, ...]:
    """A chat.db row's change columns (edit, unsend, read, delivered), as compared between
    windowed syncs."""
    return tuple(row[M[col]] or 0 for col in chatdb.CHANGE_COLUMNS)
