"""The historical import, through the CLI, against generated libraries and their truth."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatstats import cli
from chatstats.imessage import chatdb
from chatstats.sample.writer import MessagesWriter
from tests.conftest import PROFILES
from tests.library_check import check_all, dump


def run_import(capsys: pytest.CaptureFixture[str], lib: Path, data: Path, *extra: str) -> dict:
    code = cli.main(
        [
            "import",
            "--source",
            str(lib / "chat.db"),
            "--addressbook",
            str(lib / "AddressBook"),
            "--data-dir",
            str(data),
            "--json",
            *extra,
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


@pytest.mark.parametrize("profile", PROFILES)
def test_import_matches_the_source_exactly(profile, libraries, tmp_path, capsys):
    lib, truth = libraries[profile]
    summary = run_import(capsys, lib, tmp_path)
    assert summary["mode"] == "race"
    assert summary["messages_added"] + summary["system_events_added"] == len(truth.messages)
    check_all(tmp_path, truth)


def test_rerun_adds_nothing_and_changes_nothing(libraries, tmp_path, capsys):
    lib, _truth = libraries["sequoia"]
    run_import(capsys, lib, tmp_path)
    before = dump(tmp_path)
    summary = run_import(capsys, lib, tmp_path)
    assert summary["mode"] == "incremental"
    assert summary["messages_added"] == summary["reactions_added"] == 0
    assert dump(tmp_path) == before


def test_database_files_are_private(libraries, tmp_path, capsys):
    lib, _ = libraries["sequoia"]
    run_import(capsys, lib, tmp_path)
    for f in tmp_path.iterdir():
        assert f.stat().st_mode & 0o077 == 0, f


def test_a_first_import_leaves_a_whole_database_in_wal_mode(libraries, tmp_path, capsys):
    # Race mode loads under a rollback journal with synchronous OFF and switches back to
    # the WAL at the end without a flush: the file must still say WAL, have no journal left
    # behind, and be whole.
    lib, _ = libraries["sequoia"]
    assert run_import(capsys, lib, tmp_path)["mode"] == "race"
    assert not (tmp_path / "chatstats.db-journal").exists()
    conn = sqlite3.connect(tmp_path / "chatstats.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def test_reimport_appends_new_messages_and_extends_conversations(libraries, tmp_path, capsys):
    src, _ = libraries["sequoia"]
    lib = tmp_path / "lib"
    shutil.copytree(src, lib)
    run_import(capsys, lib, tmp_path / "data")
    w = MessagesWriter(lib / "chat.db", create=False)
    chat = next(iter(w.chats))
    sender = w.chats[chat].handles[0]
    now = time.time_ns()
    _rowid, guid = w.message(chat, "hello again", from_me=False, sender=sender, date=now)
    w.close()
    summary = run_import(capsys, lib, tmp_path / "data")
    assert summary["messages_added"] == 1
    conn = sqlite3.connect(tmp_path / "data" / "chatstats.db")
    text, sealed = conn.execute(
        "SELECT m.text, c.sealed FROM messages m JOIN conversations c ON c.id = m.conversation_id"
        " WHERE m.guid = ?",
        (guid,),
    ).fetchone()
    assert text == "hello again" and sealed == 0
    assert (
        conn.execute(
            "SELECT count(*) FROM seal_timers t JOIN messages m ON m.conversation_id = t.conversation_id"
            " WHERE m.guid = ?",
            (guid,),
        ).fetchone()[0]
        == 1
    )
    hits = conn.execute(
        "SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'again'"
    ).fetchall()
    assert hits


def test_missing_source_is_a_clear_error(tmp_path, capsys):
    code = cli.main(["import", "--source", str(tmp_path / "nope.db"), "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "not found" in err and "Traceback" not in err


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path, capsys):
    bogus = tmp_path / "chat.db"
    bogus.write_bytes(b"this is not a database" * 100)
    code = cli.main(["import", "--source", str(bogus), "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 1 and "not an SQLite database" in err


def test_a_sqlite_file_that_is_not_messages_is_a_clear_error(tmp_path, capsys):
    other = tmp_path / "chat.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    code = cli.main(["import", "--source", str(other), "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 1 and "not a Messages database" in err


def test_a_locked_source_is_a_clear_error_and_loses_nothing(
    libraries, tmp_path, capsys, monkeypatch
):
    # The lock is held for the whole attempt: no need to wait out the default 5 s.
    monkeypatch.setattr(chatdb, "BUSY_TIMEOUT_MS", 200)
    src, _ = libraries["legacy"]
    lib = tmp_path / "lib"
    shutil.copytree(src, lib)
    holder = sqlite3.connect(lib / "chat.db", isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code = cli.main(
            ["import", "--source", str(lib / "chat.db"), "--data-dir", str(tmp_path / "d")]
        )
        err = capsys.readouterr().err
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1 and "locked" in err
    # Nothing half-imported: a retry imports everything.
    summary = run_import(capsys, lib, tmp_path / "d")
    assert summary["messages_added"] > 0


KILL_SCRIPT = """
import sys
from pathlib import Path
from chatstats import log
from chatstats.ingest.importer import run_import

log.configure("WARNING", stream=sys.stderr)

def progress(phase, done, total):
    print(phase, done, total, flush=True)

run_import(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), progress)
"""


@pytest.mark.parametrize("phase", ["contacts", "messages", "finishing", "indexes", "done"])
def test_killed_import_then_rerun_equals_an_uninterrupted_import(
    phase, libraries, tmp_path, capsys
):
    """SIGKILL the importer as it reports reaching `phase`; the next run must end with the
    same database as a run that was never interrupted."""
    lib, truth = libraries["sequoia"]
    clean = tmp_path / "clean"
    run_import(capsys, lib, clean)
    killed = tmp_path / "killed"
    killed.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILL_SCRIPT,
            str(killed / "chatstats.db"),
            str(lib / "chat.db"),
            str(lib / "AddressBook"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        name, done, _total = line.split()
        if name == phase and (phase != "messages" or int(done) > 0):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    summary = run_import(capsys, lib, killed)
    assert summary["previous_run_interrupted"] == (phase != "done")
    assert dump(killed) == dump(clean)
    check_all(killed, truth)


@pytest.mark.parametrize("profile", PROFILES)
def test_sql_bulk_path_and_python_path_build_the_same_rows(
    profile, libraries, tmp_path, capsys, monkeypatch
):
    """The first import builds rows in SQL; live sync and re-imports build them in Python.
    Both must produce the very same database from the same chat.db."""
    from chatstats.ingest import importer

    lib, _truth = libraries[profile]
    run_import(capsys, lib, tmp_path / "sql")
    monkeypatch.setattr(importer, "SQL_LOAD", False)
    run_import(capsys, lib, tmp_path / "python")
    assert dump(tmp_path / "sql") == dump(tmp_path / "python")


@pytest.mark.parametrize("sql_load", [True, False])
def test_a_row_committed_while_the_import_runs_is_never_skipped(
    sql_load, libraries, tmp_path, capsys, monkeypatch
):
    """Messages.app keeps writing during an import. A row committed after the import's
    transaction began must be imported now or by the next run, never passed over by the
    watermark (it was once: the watermark came from a newer snapshot than the rows)."""
    from chatstats.ingest import importer

    src, _ = libraries["sequoia"]
    lib = tmp_path / "lib"
    shutil.copytree(src, lib)
    monkeypatch.setattr(importer, "SQL_LOAD", sql_load)
    written: list[str] = []
    real_drop = importer._drop_indexes

    def drop_then_write(conn):  # runs inside the import's write transaction
        w = MessagesWriter(lib / "chat.db", create=False)
        chat = next(iter(w.chats))
        _r, guid = w.message(chat, "mid-import", from_me=True, date=time.time_ns())
        w.close()
        written.append(guid)
        return real_drop(conn)

    monkeypatch.setattr(importer, "_drop_indexes", drop_then_write)
    run_import(capsys, lib, tmp_path / "data")
    monkeypatch.setattr(importer, "_drop_indexes", real_drop)
    run_import(capsys, lib, tmp_path / "data")
    conn = sqlite3.connect(tmp_path / "data" / "chatstats.db")
    (count,) = conn.execute("SELECT count(*) FROM messages WHERE guid = ?", written).fetchone()
    assert count == 1


def test_paths_with_uri_characters_import_and_read(libraries, tmp_path, capsys):
    """SQLite URIs give `?`, `#` and `%` meanings of their own; folders may have them."""
    from chatstats import db as appdb

    src, truth = libraries["sequoia"]
    lib = tmp_path / "Backups #1 ?old% copy"
    shutil.copytree(src, lib)
    data = tmp_path / "data #2 ?%"
    summary = run_import(capsys, lib, data)
    assert summary["messages_added"] + summary["system_events_added"] == len(truth.messages)
    conn = appdb.connect(data / "chatstats.db", write=False)
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == len(truth.messages)
    conn.close()


@pytest.mark.parametrize("sql_load", [True, False])
def test_text_columns_holding_blobs_numbers_or_invalid_utf8_are_read_as_text(
    sql_load, libraries, tmp_path, capsys, monkeypatch
):
    """SQLite lets any writer store any type, and a damaged row can hold invalid UTF-8: one
    odd row must not stop an import, and every row must read back through the app."""
    from chatstats import db as appdb
    from chatstats.ingest import importer

    src, _ = libraries["sequoia"]
    lib = tmp_path / "lib"
    shutil.copytree(src, lib)
    conn = sqlite3.connect(lib / "chat.db")
    blob_row, number_row, bad_row, bad_reply_row = (
        r[0]
        for r in conn.execute(
            "SELECT ROWID FROM message WHERE associated_message_type = 0 AND item_type = 0"
            " ORDER BY ROWID LIMIT 4"
        )
    )
    conn.execute(
        "UPDATE message SET attributedBody = NULL, text = CAST(:t AS BLOB) WHERE ROWID = :r",
        {"t": "caf\u00e9 \ufffc", "r": blob_row},
    )
    conn.execute(
        "UPDATE message SET attributedBody = NULL, text = 42 WHERE ROWID = :r", {"r": number_row}
    )
    conn.execute(  # invalid UTF-8 stored as TEXT, in the body and in a copied column
        "UPDATE message SET attributedBody = NULL, text = CAST(X'66C328FF' AS TEXT),"
        " subject = CAST(X'C328' AS TEXT) WHERE ROWID = :r",
        {"r": bad_row},
    )
    conn.execute(
        "UPDATE message SET thread_originator_guid = CAST(X'C3' AS TEXT),"
        " thread_originator_part = 7 WHERE ROWID = :r",
        {"r": bad_reply_row},
    )
    conn.commit()
    conn.close()
    monkeypatch.setattr(importer, "SQL_LOAD", sql_load)
    run_import(capsys, lib, tmp_path / "data")
    db = appdb.connect(tmp_path / "data" / "chatstats.db", write=False)
    rows = {
        r["source_rowid"]: r
        for r in db.execute(
            "SELECT * FROM messages WHERE source_rowid IN (?, ?, ?, ?)",
            (blob_row, number_row, bad_row, bad_reply_row),
        )
    }
    db.close()
    assert rows[blob_row]["text"] == "caf\u00e9 "
    assert rows[number_row]["text"] == "42"
    assert rows[bad_row]["text"] == "f("  # U+FFFD is dropped from bodies, as for balloons
    assert rows[bad_row]["subject"] == "\ufffd("
    assert rows[bad_reply_row]["reply_to_guid"] == "\ufffd"
    assert rows[bad_reply_row]["reply_to_part"] == 7
