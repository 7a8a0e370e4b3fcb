"""The first import's summary tables built on the other core, in a scratch file, and copied
in whole (chatstats/scratch.py): the same tables as a rebuild, copied by SQLite's transfer, the
file private while it lives and gone afterwards, and every failure falling back to inserting
on the writer."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from chatstats import db as appdb
from chatstats import scratch
from chatstats.ingest import bulk, decode
from chatstats.stats import maintain
from tests.conftest import PROFILES
from tests.test_import import run_import
from tests.test_stats_maintain import _assert_equals_a_rebuild, unusable

pytestmark = pytest.mark.skipif(
    not decode.Decoder.available(), reason="the scratch build comes with the decode helper"
)


def spy(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[int]]:
    copied: list[str] = []
    modes: list[int] = []
    real_copy, real_write = scratch.copy, scratch.write

    def copy(conn: sqlite3.Connection, table: str, alias: str = scratch.ALIAS) -> None:
        if alias != scratch.FTS_ALIAS:  # the summaries' (the full-text index: test_fts_helper)
            copied.append(f"{alias}.{table}")
        if alias != scratch.FTS_ALIAS:  # written by a helper process, out of our sight
            path = scratch.attached(conn, alias)
            assert path is not None and os.stat(path).st_mode & 0o777 == 0o600
        real_copy(conn, table, alias)

    def write(path: Path, *args: object) -> None:
        modes.append(os.stat(path).st_mode & 0o777)
        real_write(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(scratch, "copy", copy)
    monkeypatch.setattr(scratch, "write", write)
    return copied, modes


def test_the_built_tables_are_copied_whole_and_the_file_goes(
    libraries, tmp_path, capsys, monkeypatch
):
    lib, _truth = libraries[PROFILES[0]]  # bodies in blobs: the helper runs
    copied, modes = spy(monkeypatch)
    assert run_import(capsys, lib, tmp_path)["mode"] == "race"
    # Every summary but the reactions' (computed by SQL from the reactions, after the load).
    reactions = {"stats_reactions", "stats_reacted", "stats_reaction_totals"}
    # The walk's own tables come from the planning helper's file, the rest from the thread's.
    assert set(copied) == {
        f"{scratch.WALK_ALIAS if t in maintain.WALKED else scratch.ALIAS}.{t}"
        for t in set(maintain.ALL_TABLES) - reactions
    }
    assert modes == []  # the helpers wrote them: nothing here did
    assert not scratch.path_for(tmp_path / "chatstats.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if "-build" in p.name) == []
    _assert_equals_a_rebuild(tmp_path / "chatstats.db")


def test_a_failed_build_leaves_the_summaries_to_the_writer(
    libraries, tmp_path, capsys, monkeypatch
):
    """The decoding helper could not write the summaries (its file unusable, as if the disk
    filled midway): the import computes them itself and inserts them, without writing to a
    file the helper may have left half-written."""
    lib, _truth = libraries[PROFILES[0]]
    copied, modes = spy(monkeypatch)
    unusable(monkeypatch, tmp_path / "not-a-file")
    assert run_import(capsys, lib, tmp_path)["mode"] == "race"
    assert [c for c in copied if c.startswith(scratch.ALIAS)] == []
    assert modes == []  # `spy` counts this process's writes to a scratch file: none
    assert not scratch.path_for(tmp_path / "chatstats.db").exists()
    _assert_equals_a_rebuild(tmp_path / "chatstats.db")


def test_a_killed_import_s_file_is_replaced_and_a_failed_import_removes_its_own(
    libraries, tmp_path, capsys, monkeypatch
):
    lib, _truth = libraries[PROFILES[0]]
    left = scratch.path_for(tmp_path / "chatstats.db")
    tmp_path.mkdir(exist_ok=True)
    left.write_bytes(b"not a database, left by a killed import")
    os.chmod(left, 0o644)
    copied, _modes = spy(monkeypatch)
    real_fill = maintain._fill

    def failing(conn: sqlite3.Connection) -> None:
        real_fill(conn)
        raise RuntimeError("disk full")

    monkeypatch.setattr(maintain, "_fill", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        run_import(capsys, lib, tmp_path)
    assert copied, "the stale file was replaced (0600: `spy`), then used"
    assert not left.exists()
    monkeypatch.setattr(maintain, "_fill", real_fill)
    assert run_import(capsys, lib, tmp_path)["mode"] == "race"  # rolled back: a first import
    assert not left.exists()
    _assert_equals_a_rebuild(tmp_path / "chatstats.db")


def test_the_copy_is_sqlites_transfer(tmp_path):
    """Each table's copy compiles to SQLite's transfer (records and index entries moved as
    they are), which needs both sides declared alike: a migration that changed one side only
    would silently fall back to row-by-row inserts."""
    db = tmp_path / "chatstats.db"
    conn = appdb.connect(db, write=True)
    appdb.migrate(conn)
    path = scratch.attach(conn, maintain.ALL_TABLES)
    assert path is not None and os.stat(path).st_mode & 0o777 == 0o600
    indexes = scratch.index_sql(conn, maintain.ALL_TABLES)
    scratch.write(path, {}, [sql for t in maintain.ALL_TABLES for sql in indexes.get(t, [])])
    conn.execute("BEGIN")
    suspended = maintain.suspend(conn)  # as in the import: triggers would prevent it
    conn.execute(f"SELECT count(*) FROM {scratch.ALIAS}.sqlite_master")  # as `copy` does
    for table in maintain.ALL_TABLES:
        ops = {
            r[1]
            for r in conn.execute(
                f"EXPLAIN INSERT INTO main.{table} SELECT * FROM {scratch.ALIAS}.{table}"
            )
        }
        assert "RowData" in ops, table
    del suspended
    conn.execute("ROLLBACK")
    scratch.detach(conn, path)
    assert not path.exists()
    conn.close()


def test_a_database_in_memory_gets_no_scratch_file(tmp_path, monkeypatch):
    """No file to put it beside: nothing attached, nothing written (the import inserts)."""
    monkeypatch.chdir(tmp_path)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE stats_buckets (x)")
    assert scratch.attach(conn, ["stats_buckets"]) is None
    assert scratch.attached(conn) is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", ["unwritable", "killed"])
def test_a_planner_that_cannot_write_the_walk_s_tables_leaves_them_to_the_writer(
    how, libraries, tmp_path, capsys, monkeypatch
):
    """Its file unusable (a directory in its place), or the helper killed once its walk
    was sent: the walk's rows, already in the import's hands, are inserted by the writer."""
    lib, _truth = libraries[PROFILES[0]]
    copied, _modes = spy(monkeypatch)
    real_request, real_collect = bulk._walk_request, decode.Decoder._collect_plan
    if how == "unwritable":
        monkeypatch.setattr(
            bulk,
            "_walk_request",
            lambda conn, path: {**real_request(conn, path), "walk_path": str(tmp_path)},
        )
    else:

        def kill_after_walk(self: decode.Decoder, request: bytes) -> None:
            real_ready = self._plan_ready.set

            def ready() -> None:
                real_ready()
                self._kill(self._planner)

            self._plan_ready.set = ready  # type: ignore[method-assign]
            real_collect(self, request)

        monkeypatch.setattr(decode.Decoder, "_collect_plan", kill_after_walk)
    assert run_import(capsys, lib, tmp_path / "data")["mode"] == "race"
    assert not [c for c in copied if c.startswith(scratch.WALK_ALIAS)]
    assert [c for c in copied if c.startswith(scratch.ALIAS)], "the thread's were still copied"
    assert not scratch.path_for(tmp_path / "data" / "chatstats.db", scratch.WALK_ALIAS).exists()
    _assert_equals_a_rebuild(tmp_path / "data" / "chatstats.db")
