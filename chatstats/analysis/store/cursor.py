"""The analysis consumer's position in the event log."""

from __future__ import annotations

import sqlite3

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
