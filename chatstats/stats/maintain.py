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
