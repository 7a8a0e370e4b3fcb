"""The first import finds tapback rows through chat.db's index on associated_message_guid
(chatstats/ingest/bulk.py, `tapback_condition`): it must select exactly the rows the plain
predicate does, whatever SQLite type the column holds, and fall back when there is no index."""

from __future__ import annotations

import sqlite3

import pytest

from chatstats.ingest import bulk

_COLUMNS = {"associated_message_guid", "associated_message_type"}

# (associated_message_guid, associated_message_type): every storage class and edge value.
_ROWS = [
    (None, 2000),
    ("", 2000),
    ("p:0/AAAA", 2000),
    ("p:0/AAAA", 0),
    ("bp:BBBB", 3001),
    ("x", 1000),
    ("x", 2008),
    (0, 2001),
    (-5, 2002),
    (1.5, 3007),
    (b"", 2003),
    (b"\x00guid", 2004),
    ("  ", 2005),
    ("p:1/CCCC", None),
    (None, None),
]


def source(indexed: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE message (ROWID INTEGER PRIMARY KEY, associated_message_guid,"
        " associated_message_type INTEGER)"
    )
    if indexed:
        conn.execute(
            "CREATE INDEX message_idx_associated_message ON message(associated_message_guid)"
        )
    conn.executemany(
        "INSERT INTO message (associated_message_guid, associated_message_type) VALUES (?, ?)",
        _ROWS * 3,
    )
    return conn


def selected(conn: sqlite3.Connection, condition: str) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            f"SELECT m.ROWID FROM message m WHERE m.ROWID > 2 AND m.ROWID <= 40 AND {condition}"
            " ORDER BY m.ROWID"
        )
    ]


@pytest.mark.parametrize("indexed", [True, False])
def test_the_indexed_condition_selects_exactly_the_tapbacks(indexed):
    conn = source(indexed)
    condition = bulk.tapback_condition(bulk.source_indexes(conn, "main"), _COLUMNS)
    assert (condition != bulk.TAPBACK_SQL) is indexed
    want = selected(conn, bulk.TAPBACK_SQL)
    assert want, "the fixture must hold tapbacks"
    assert selected(conn, condition) == want


def test_the_index_is_used_when_present():
    conn = source(True)
    condition = bulk.tapback_condition(bulk.source_indexes(conn, "main"), _COLUMNS)
    plan = " ".join(
        r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN SELECT * FROM message m WHERE {condition}")
    )
    assert "message_idx_associated_message" in plan


def test_partial_indexes_and_missing_columns_fall_back():
    conn = source(False)
    conn.execute(
        "CREATE INDEX some_partial ON message(associated_message_guid)"
        " WHERE associated_message_type = 2000"
    )
    indexes = bulk.source_indexes(conn, "main")
    assert bulk.tapback_condition(indexes, _COLUMNS) == bulk.TAPBACK_SQL
    full = bulk.source_indexes(source(True), "main")
    assert bulk.tapback_condition(full, {"associated_message_guid"}) == bulk.TAPBACK_SQL
