"""A multipart message with only some parts unsent keeps the rest. Messages.app lists the
withdrawn parts in `rp` and every part in `otr`, and writes the remaining parts back into
the body; the message is then not unsent but changed (edited), its remaining text shown,
searched and counted. Withdrawing every part is still an unsend. The same on macOS 26 (no
date_retracted) and before it, in the first import (with and without the decoding helper)
and in a live batch."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from chatstats.ingest import importer
from chatstats.sample.writer import AttachmentSpec, MessagesWriter
from chatstats.stats import maintain
from tests.library_check import changed_copy, live_sync, stats_tables

PHOTO = AttachmentSpec("IMG_7.HEIC", "image/heic", "public.heic", 2048)


def write(
    w: MessagesWriter, cases: dict[str, tuple[list[int] | None, bool]], *, now_too: bool = True
) -> dict[str, int]:
    """Per case a message of a photo (part 0) and a text (part 1), then (`now_too`) unsent:
    `parts` (None: all), on macOS 26 or before. Returns case → message ROWID."""
    chat = next(c for c, info in w.chats.items() if info.handles)
    out = {}
    now = time.time_ns()
    for k, (case, (parts, macos26)) in enumerate(sorted(cases.items())):
        rowid, _guid = w.message(
            chat, f"kept words {case}", from_me=True, date=now + k, attachments=[PHOTO]
        )
        if now_too:
            w.unsend(rowid, now + k + 10**9, macos26=macos26, parts=parts)
        out[case] = rowid
    return out


def guids_of(lib: Path, rowids: dict[str, int]) -> dict[str, str]:
    conn = sqlite3.connect(lib / "chat.db")
    try:
        return {
            case: conn.execute("SELECT guid FROM message WHERE ROWID = ?", (r,)).fetchone()[0]
            for case, r in rowids.items()
        }
    finally:
        conn.close()


CASES = {
    "photo-gone": ([0], False),
    "photo-gone-26": ([0], True),
    "all-gone": (None, False),
    "all-gone-26": (None, True),
    "text-gone": ([1], True),
}


def rows(db: Path, guids: dict[str, str]) -> dict[str, tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return {
            case: conn.execute(
                "SELECT text, unsent, edited FROM messages WHERE guid = ?", (g,)
            ).fetchone()
            for case, g in guids.items()
        }
    finally:
        conn.close()


def expected(case: str) -> tuple[object, ...]:
    if case.startswith("photo-gone"):
        return (f"kept words {case}", 0, 1)
    if case == "text-gone":  # the photo is left: no text, still a message with an image
        return ("", 0, 1)
    return ("", 1, 0)


def searched(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {
            t
            for (t,) in conn.execute(
                "SELECT m.text FROM messages_fts f JOIN messages m ON m.id = f.rowid"
                " WHERE messages_fts MATCH 'kept'"
            )
        }
    finally:
        conn.close()


def rebuild(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    maintain.rebuild(conn)
    conn.execute("COMMIT")


@pytest.mark.parametrize("helper", [True, False])
def test_the_first_import_keeps_what_was_not_unsent(helper, small_lib, tmp_path, monkeypatch):
    w = MessagesWriter(small_lib / "chat.db", create=False)
    guids = guids_of(small_lib, write(w, CASES))
    w.close()
    monkeypatch.setattr(importer, "DECODE_AHEAD", helper)
    db = tmp_path / "app.db"
    importer.run_import(db, small_lib / "chat.db", None)
    assert rows(db, guids) == {case: expected(case) for case in CASES}
    assert searched(db) == {"kept words photo-gone", "kept words photo-gone-26"}
    assert stats_tables(db) == stats_tables(changed_copy(db, tmp_path, rebuild))


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_live_partial_unsend_keeps_the_rest(when, small_lib, tmp_path):
    """`after`: the messages were imported whole, then unsent (an edit of stored rows);
    `before`: they reach the live tail already unsent (new rows)."""
    db = tmp_path / "app.db"
    cases = {"photo-gone-26": ([0], True), "photo-gone": ([0], False), "all-gone-26": (None, True)}
    w = MessagesWriter(small_lib / "chat.db", create=False)  # it remembers each message's parts
    if when == "before":
        importer.run_import(db, small_lib / "chat.db", None)
        guids = guids_of(small_lib, write(w, cases))
    else:
        rowids = write(w, cases, now_too=False)
        guids = guids_of(small_lib, rowids)
        importer.run_import(db, small_lib / "chat.db", None)
        assert {r[1] for r in rows(db, guids).values()} == {0}
        for case, (parts, macos26) in cases.items():
            w.unsend(rowids[case], time.time_ns(), macos26=macos26, parts=parts)
    w.close()

    live_sync(db, small_lib / "chat.db")
    assert rows(db, guids) == {case: expected(case) for case in guids}
    assert searched(db) == {"kept words photo-gone-26", "kept words photo-gone"}
    # The triggers kept the summaries as a rebuild from the rows makes them.
    assert stats_tables(db) == stats_tables(changed_copy(db, tmp_path, rebuild))
