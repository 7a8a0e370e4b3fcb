"""Stats maintenance around the historical import's one-statement bulk load.

Why: a per-row trigger (an upsert and a Python word count for each of 300k rows) made the
race-mode load ~58% slower. So the bulk load runs with the insert trigger dropped, and the
buckets of the rows it wrote are then built by one GROUP BY, in the same transaction, before
the trigger is put back. Live batches, edits and unsends keep using the triggers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

_TRIGGER = "stats_message_insert"

_BUILD = (
    "INSERT INTO stats_buckets (chat_id, bucket, handle_id, is_from_me, messages, words)"
    " SELECT chat_id, date_ns / 900000000000, COALESCE(handle_id, 0), is_from_me, COUNT(*),"
    " SUM(cs_words(text)) FROM messages"
    " WHERE id >= :first AND kind = 'message' AND chat_id IS NOT NULL GROUP BY 1, 2, 3, 4"
    " ON CONFLICT (chat_id, bucket, handle_id, is_from_me) DO UPDATE"
    " SET messages = messages + excluded.messages, words = words + excluded.words"
)

_BUILD_MONTHS = (
    "INSERT INTO stats_months (month, chat_id, handle_id, is_from_me, messages)"
    " SELECT CAST(strftime('%Y%m', date_ns / 1000000000, 'unixepoch') AS INTEGER), chat_id,"
    " COALESCE(handle_id, 0), is_from_me, COUNT(*) FROM messages"
    " WHERE id >= :first AND kind = 'message' AND chat_id IS NOT NULL GROUP BY 1, 2, 3, 4"
    " ON CONFLICT (month, chat_id, handle_id, is_from_me) DO UPDATE"
    " SET messages = messages + excluded.messages"
)


@contextmanager
def bulk_insert(conn: sqlite3.Connection, first_id: int) -> Iterator[None]:
    """Inside the caller's transaction: rows with id >= first_id inserted in the block are
    summarised once at its end instead of one trigger call each."""
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :n", {"n": _TRIGGER}
    ).fetchone()
    if row is None:  # a database migrated without the statistics
        yield
        return
    conn.execute(f"DROP TRIGGER {_TRIGGER}")  # a constant name
    try:
        yield
        conn.execute(_BUILD, {"first": first_id})
        conn.execute(_BUILD_MONTHS, {"first": first_id})
    finally:
        conn.execute(row[0])


# Schema 0011's summaries. Their triggers recompute a conversation or a 30-day block per
# changed row: right for live batches, ruinous for a 300k-row load into an empty database
# (and their lookups by GUID would run while race mode has the indexes dropped). So race
# mode drops them for the whole load and rebuilds every summary once, after the indexes are
# back and before the one COMMIT: what a reader sees is always in step.
SUMMARY_TABLES = (
    "stats_years",
    "stats_blocks",
    "stats_conversations",
    "stats_conv_senders",
    "stats_replies",
    "stats_reactions",
    "stats_reacted",
)
_REBUILD_MARK = "-- Rows already there before this migration"


def rebuild_statements() -> list[str]:
    """The statements that fill the summaries from messages, reactions and stats_buckets:
    the tail of migration 0011, so the migration and race mode cannot drift apart."""
    from chatstats.db import _statements, migrations

    for _version, name, path in migrations():
        if name == "stats_summaries":
            script = path.read_text(encoding="utf-8")
            tail = script.split(_REBUILD_MARK, 1)[1].split("\n", 1)[1]
            return _statements(tail)
    return []


def rebuild(conn: sqlite3.Connection) -> None:
    """Empty and refill every summary table (inside the caller's transaction)."""
    for table in SUMMARY_TABLES:
        conn.execute(f"DELETE FROM {table}")  # names are constants
    for sql in rebuild_statements():
        conn.execute(sql)


class Suspended:
    """Summary triggers dropped by `suspend`; `resume` rebuilds the tables and puts them back."""

    def __init__(self, conn: sqlite3.Connection, triggers: list[str]) -> None:
        self._conn = conn
        self._triggers = triggers

    def resume(self) -> None:
        if not self._triggers:
            return
        rebuild(self._conn)
        for sql in self._triggers:
            self._conn.execute(sql)
        self._triggers = []


def suspend(conn: sqlite3.Connection) -> Suspended:
    """Inside the caller's transaction: drop 0011's triggers until `resume()`."""
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND ("
        " name LIKE 'stats\\_block\\_%' ESCAPE '\\' OR name LIKE 'stats\\_conv\\_%' ESCAPE '\\'"
        " OR name LIKE 'stats\\_react\\_%' ESCAPE '\\' OR name LIKE 'stats\\_year\\_%' ESCAPE '\\')"
    ).fetchall()
    for name, _sql in rows:
        conn.execute(f'DROP TRIGGER "{name}"')  # names come from sqlite_master
    return Suspended(conn, [sql for _name, sql in rows])
