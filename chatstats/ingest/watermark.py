"""A source's watermarks: how far into chat.db the app database has ingested.

Both the historical import and the live tail read them at the start of their write
transaction and advance them in that same transaction, together with the rows, so a crash
can neither lose nor duplicate a row. This module is the one place that reads and writes
them, so the two paths can never drift apart on which marks move together.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

from chatstats.imessage import chatdb


class Watermarks(NamedTuple):
    source_id: int
    message_rowid: int
    attachment_rowid: int
    marks: dict[str, int]  # chatdb.CHANGE_COLUMNS → the newest change date seen


def load(conn: sqlite3.Connection, path: str, kind: str) -> Watermarks:
    """The source's row (created on first sight, with zero watermarks)."""
    conn.execute(
        "INSERT INTO sources (path, kind) VALUES (:p, :k) ON CONFLICT(path) DO NOTHING",
        {"p": path, "k": kind},
    )
    row = conn.execute(
        "SELECT id, last_message_rowid, last_attachment_rowid, last_edit_ns,"
        " last_retract_ns, last_read_ns, last_delivered_ns FROM sources WHERE path = :p",
        {"p": path},
    ).fetchone()
    marks = dict(zip(chatdb.CHANGE_COLUMNS, row[3:7], strict=True))
    return Watermarks(row[0], row[1], row[2], marks)


def advance(
    conn: sqlite3.Connection,
    source_id: int,
    *,
    message_rowid: int,
    attachment_rowid: int,
    marks: dict[str, int],
    imported_at_ns: int | None = None,
) -> None:
    """Store the new watermarks (and, for an import, when it ran) in the caller's transaction."""
    conn.execute(
        "UPDATE sources SET last_message_rowid = :m, last_attachment_rowid = :a,"
        " last_edit_ns = :e, last_retract_ns = :r, last_read_ns = :rd,"
        " last_delivered_ns = :dd, imported_at_ns = COALESCE(:t, imported_at_ns)"
        " WHERE id = :id",
        {
            "m": message_rowid,
            "a": attachment_rowid,
            "e": marks["date_edited"],
            "r": marks["date_retracted"],
            "rd": marks["date_read"],
            "dd": marks["date_delivered"],
            "t": imported_at_ns,
            "id": source_id,
        },
    )
