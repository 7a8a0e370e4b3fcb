"""A database migrated without the statistics' tables (what scripts/bench_stats.py's
baseline imports into) gets none of their work: the planning helper is asked for no summary
rows, the decoding helper counts no words, no summaries' scratch file is made and nothing
is computed for them; the messages, conversations and full-text index come out as in a
database with them. So the benchmark's "without statistics" import is what the import would
cost if they did not exist."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from chatstats import db, scratch
from chatstats.ingest import decode, importer

pytestmark = pytest.mark.skipif(not decode.Decoder.available(), reason="needs two cores")

_ROWS = (
    "SELECT guid, chat_id, conversation_id, handle_id, date_ns, text, kind, unsent"
    " FROM messages ORDER BY id"
)


def imported(lib: Path, out: Path) -> dict[str, list[tuple[object, ...]]]:
    importer.run_import(out, lib / "chat.db", lib / "AddressBook")
    conn = sqlite3.connect(out)
    try:
        return {
            "messages": conn.execute(_ROWS).fetchall(),
            "conversations": conn.execute(
                "SELECT id, chat_id, start_ns, end_ns, message_count, sealed FROM conversations"
                " ORDER BY id"
            ).fetchall(),
            "fts": conn.execute(
                "SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'the' ORDER BY rowid"
            ).fetchall(),
            "stats": conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'stats%'"
            ).fetchall(),
        }
    finally:
        conn.close()


def test_no_statistics_means_no_statistics_work(libraries, tmp_path, monkeypatch):
    lib, _ = libraries["sequoia"]
    full = imported(lib, tmp_path / "full.db")
    assert full["stats"], "the full schema has the statistics"

    schema = tmp_path / "schema"
    schema.mkdir()
    for p in db.schema_dir().glob("*.sql"):
        if "_stats" not in p.name:
            shutil.copy(p, schema / p.name)
    monkeypatch.setattr(db, "schema_dir", lambda: schema)
    aliases: list[str] = []
    real_attach = scratch.attach

    def attach(conn, tables, alias=scratch.ALIAS):  # type: ignore[no-untyped-def]
        aliases.append(alias)
        return real_attach(conn, tables, alias)

    monkeypatch.setattr(scratch, "attach", attach)
    asked: list[decode.PlanRequest] = []
    real_start = decode.Decoder.start_planner

    def start_planner(self, request):  # type: ignore[no-untyped-def]
        asked.append(request)
        real_start(self, request)

    monkeypatch.setattr(decode.Decoder, "start_planner", start_planner)
    counting: list[bool] = []

    class Recorded(decode.Decoder):
        def __init__(self, source, after, *, words=True):  # type: ignore[no-untyped-def]
            counting.append(words)
            super().__init__(source, after, words=words)

    monkeypatch.setattr(importer, "Decoder", Recorded)
    bare = imported(lib, tmp_path / "bare.db")
    assert bare["stats"] == []
    assert aliases == [scratch.FTS_ALIAS]
    assert counting == [False], "the helper counts words for the statistics alone"
    assert len(asked) == 1 and asked[0].stats is False and asked[0].walk_path == ""
    for part in ("messages", "conversations", "fts"):
        assert bare[part] == full[part], part
    assert bare["fts"], "the probe word should match something"
