"""The first import's full-text index, built by the decoding helper while the import writes
the rows (ingest/decode.py) and copied in whole (ingest/bulk.finish_fts): byte for byte what
the import's own 'rebuild' writes, on every schema profile, unsent, text-only and corrupt
rows included; its scratch file private while it lives and gone after; and every way the
helper can fail or disagree ending in that rebuild, said with a reason."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from chatstats import cli, scratch
from chatstats.db import Database
from chatstats.ingest import bulk, decode
from chatstats.ingest.live import LiveTail
from chatstats.sample.writer import MessagesWriter
from tests.conftest import PROFILES
from tests.library_check import changed_copy

pytestmark = pytest.mark.skipif(not decode.Decoder.available(), reason="needs two cores")

_SHADOWS = ("data", "idx", "docsize", "config")


def shadows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        return {
            t: conn.execute(f"SELECT * FROM messages_fts_{t} ORDER BY 1, 2").fetchall()
            for t in _SHADOWS
        }
    finally:
        conn.close()


def rebuilt(db: Path, tmp: Path) -> dict[str, list[tuple[object, ...]]]:
    """The shadow tables of the same database after the import's own rebuild."""
    return shadows(
        changed_copy(
            db,
            tmp,
            lambda c: c.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')"),
        )
    )


def assert_index_is_the_rebuild(db: Path, tmp: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    # Against the content (rank 1): every row's tokens are its messages.text.
    conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
    conn.close()
    assert shadows(db) == rebuilt(db, tmp)


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tables copied from the full-text scratch file, and its mode just before."""
    seen: list[str] = []
    real = scratch.copy

    def copy(conn: sqlite3.Connection, table: str, alias: str = scratch.ALIAS) -> None:
        if alias == scratch.FTS_ALIAS:
            path = scratch.attached(conn, alias)
            assert path is not None
            seen.append(f"{table} {os.stat(path).st_mode & 0o777:o}")
        real(conn, table, alias)

    monkeypatch.setattr(scratch, "copy", copy)
    return seen


def fallback_reason(err: str) -> str | None:
    for line in err.splitlines():
        if "import_fts_helper_unused" in line:
            return str(json.loads(line)["reason"])
    return None


def run_import_with_err(capsys: pytest.CaptureFixture[str], lib: Path, data: Path) -> str:
    """Run the CLI import, a first one; its log (stderr)."""
    code = cli.main(
        ["import", "--source", str(lib / "chat.db"), "--addressbook", str(lib / "AddressBook"),
         "--data-dir", str(data), "--json"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["mode"] == "race"
    return out.err


@pytest.mark.parametrize("profile", PROFILES)
def test_the_helper_s_index_is_the_rebuild(profile, libraries, tmp_path, capsys, copies):
    lib, _ = libraries[profile]
    err = run_import_with_err(capsys, lib, tmp_path / "data")
    db = tmp_path / "data" / "chatstats.db"
    conn = sqlite3.connect(db)
    unsent, corrupt, plain = conn.execute(
        "SELECT sum(unsent), sum(body_status = 'corrupt'), sum(body_status = 'none') FROM messages"
    ).fetchone()
    conn.close()
    src = sqlite3.connect(lib / "chat.db")
    columns = {r[1] for r in src.execute("PRAGMA table_info(message)")}
    src.close()
    if "attributedBody" in columns:  # the helper runs: its index, never the fallback
        assert corrupt and plain, "the library should hold every kind of row"
        assert unsent or profile == "legacy", "unsent rows, where macOS had unsend"
        assert copies == [f"messages_fts_{t} 600" for t in _SHADOWS]
        assert fallback_reason(err) is None
    else:  # no blobs to decode, no helper: the import's own rebuild
        assert copies == []
    assert not scratch.path_for(db, scratch.FTS_ALIAS).exists()
    assert_index_is_the_rebuild(db, tmp_path)


def test_an_index_the_import_disagrees_with_is_not_used(
    libraries, tmp_path, capsys, copies, monkeypatch
):
    """The import wrote a row empty that the helper indexed with its text (here: a ROWID
    it never loaded, added to the check): the helper commits nothing, the import rebuilds."""
    lib, _ = libraries["sequoia"]
    real = bulk.FtsCheck
    monkeypatch.setattr(
        bulk, "FtsCheck", lambda unsent, texts: real(unsent=[*unsent, 10**9], texts=texts)
    )
    err = run_import_with_err(capsys, lib, tmp_path / "data")
    assert copies == []
    assert fallback_reason(err) == "texts differ"
    db = tmp_path / "data" / "chatstats.db"
    assert not scratch.path_for(db, scratch.FTS_ALIAS).exists()
    assert_index_is_the_rebuild(db, tmp_path)


def test_a_text_that_differs_is_caught_too(libraries, tmp_path, capsys, copies, monkeypatch):
    lib, _ = libraries["sonoma"]
    real = bulk.FtsCheck

    def changed(unsent: list[int], texts: dict[int, str]) -> decode.FtsCheck:
        assert texts, "the library should hold rows the import read itself"
        first = min(texts)
        return real(unsent=unsent, texts={**texts, first: texts[first] + " changed"})

    monkeypatch.setattr(bulk, "FtsCheck", changed)
    err = run_import_with_err(capsys, lib, tmp_path / "data")
    assert copies == [] and fallback_reason(err) == "texts differ"
    assert_index_is_the_rebuild(tmp_path / "data" / "chatstats.db", tmp_path)


def test_a_helper_killed_while_indexing_costs_time_not_the_index(
    libraries, tmp_path, capsys, copies, monkeypatch
):
    lib, _ = libraries["sequoia"]
    real = decode.Decoder.check_fts

    def killed_first(self: decode.Decoder, check: decode.FtsCheck) -> None:
        self._kill(self._proc)
        real(self, check)

    monkeypatch.setattr(decode.Decoder, "check_fts", killed_first)
    err = run_import_with_err(capsys, lib, tmp_path / "data")
    assert copies == []
    reason = fallback_reason(err)
    assert reason is not None and reason != "texts differ"
    assert_index_is_the_rebuild(tmp_path / "data" / "chatstats.db", tmp_path)


def test_no_scratch_file_means_the_import_rebuilds(
    libraries, tmp_path, capsys, copies, monkeypatch
):
    """The file could not be made (a full disk, a read-only directory): no request at all."""
    lib, _ = libraries["sequoia"]
    real = scratch.attach

    def attach(conn, tables, alias=scratch.ALIAS):  # type: ignore[no-untyped-def]
        return None if alias == scratch.FTS_ALIAS else real(conn, tables, alias)

    monkeypatch.setattr(scratch, "attach", attach)
    err = run_import_with_err(capsys, lib, tmp_path / "data")
    assert copies == [] and fallback_reason(err) is None  # never asked: nothing to say
    assert_index_is_the_rebuild(tmp_path / "data" / "chatstats.db", tmp_path)


def test_the_index_stays_whole_through_later_edits(libraries, tmp_path, capsys):
    """A first import indexes every row, empty texts included (as 'rebuild' does); a later
    sync that gives an empty row a text, or empties one, must keep the index consistent
    with its content (FTS5's integrity check), and find the new words."""
    src, _ = libraries["sequoia"]
    lib = tmp_path / "lib"
    shutil.copytree(src, lib)
    run_import_with_err(capsys, lib, tmp_path / "data")
    db = tmp_path / "data" / "chatstats.db"
    conn = sqlite3.connect(db)
    (empty,) = conn.execute(
        "SELECT source_rowid FROM messages WHERE text = '' AND kind = 'message' AND unsent = 0"
        " AND chat_id IS NOT NULL ORDER BY id LIMIT 1"
    ).fetchone()
    (spoken,) = conn.execute(
        "SELECT source_rowid FROM messages WHERE text <> '' AND kind = 'message'"
        " AND is_from_me = 1 AND unsent = 0 ORDER BY id DESC LIMIT 1"
    ).fetchone()
    conn.close()
    w = MessagesWriter(lib / "chat.db", create=False)
    w.edit(empty, "quetzalcoatl arrived after all", time.time_ns())
    w.unsend(spoken, time.time_ns())
    w.close()

    async def sync() -> int:
        database = Database(db)
        await database.open()
        try:
            outcome = await LiveTail(database, lib / "chat.db").sync(full=True)
            return len(outcome.changed_message_ids)
        finally:
            database.close()

    assert anyio.run(sync) >= 2
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
    hits = conn.execute(
        "SELECT m.source_rowid FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
        " WHERE messages_fts MATCH 'quetzalcoatl'"
    ).fetchall()
    assert hits == [(empty,)]
    conn.close()
