"""The one transaction helper: a raising unit leaves nothing behind, a read never locks."""

from __future__ import annotations

import sqlite3

import pytest

from chatstats.db import connect, transaction


def test_transaction_commits_or_rolls_back_whole(tmp_path):
    conn = connect(tmp_path / "t.db", write=True)
    conn.execute("CREATE TABLE t (x INTEGER)")
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    assert not conn.in_transaction
    assert [r[0] for r in conn.execute("SELECT x FROM t")] == [1]


def test_read_snapshot_does_not_take_the_write_lock(tmp_path):
    path = tmp_path / "t.db"
    writer = connect(path, write=True)
    writer.execute("CREATE TABLE t (x INTEGER)")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    with transaction(writer, write=False):
        writer.execute("SELECT count(*) FROM t").fetchone()
        other.execute("BEGIN IMMEDIATE")  # would raise 'database is locked' under a write tx
        other.execute("ROLLBACK")
    with transaction(writer), pytest.raises(sqlite3.OperationalError):
        other.execute("BEGIN IMMEDIATE")
    other.close()
    writer.close()


def test_the_pure_layers_errors_map_to_statuses_in_one_place():
    """imessage/ and config.py raise their own errors (no HTTP in them); errors.public maps
    them: an unreadable chat.db is a 503 source_unavailable, a bad setting a 400."""
    from chatstats import config, errors
    from chatstats.imessage.chatdb import ChatDBError

    with pytest.raises(errors.SettingsError) as bad:
        config.load(environ={"CHATSTATS_PORT": "not-a-port"})
    assert not isinstance(bad.value, errors.ChatStatsError)
    shown = errors.public(bad.value)
    assert (shown.status, shown.code) == (400, "bad_request")
    assert "invalid setting" in shown.message
    shown = errors.public(ChatDBError("Messages database not found: /x"))
    assert (shown.status, shown.code, shown.message) == (
        503,
        "source_unavailable",
        "Messages database not found: /x",
    )
