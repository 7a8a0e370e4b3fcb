"""A chat.db whose attributedBody length prefixes overrun their text, through the import.

Some bodies Messages.app writes declare their string longer than it is; their text column
is NULL, so a reader that trusts the length loses the message. Both ways a first import
builds rows (SQL with the decoding helper, and Python) and the incremental import that
live sync shares must come out with the text, the attachments, and a body read as 'ok'.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from chatstats import cli
from chatstats.sample.writer import AttachmentSpec, MessagesWriter

T0 = 1_750_000_000 * 10**9
TEXTS = {
    7: "the length says more than this",
    10**6: "past the end of the blob 🫠",
    40: "caption under an overrunning length",
}


def _import(capsys: pytest.CaptureFixture[str], lib: Path, data: Path) -> dict:
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
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def _rows(data: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(data / "chatstats.db")
    try:
        return {
            guid: (text, status, n_att)
            for guid, text, status, n_att in conn.execute(
                "SELECT m.guid, m.text, m.body_status,"
                " (SELECT count(*) FROM attachments a WHERE a.message_id = m.id) FROM messages m"
            )
        }
    finally:
        conn.close()


@pytest.fixture
def lib(tmp_path: Path) -> tuple[Path, dict[str, tuple]]:
    root = tmp_path / "lib"
    root.mkdir()
    w = MessagesWriter(root / "chat.db", "sequoia", seed=5)
    h = w.handle("+14155550123")
    chat = w.chat([h])
    want: dict[str, tuple] = {}
    for i, (overrun, text) in enumerate(TEXTS.items()):
        photo = (AttachmentSpec("IMG_1.HEIC", "image/heic", "public.heic", 1000),) if i == 2 else ()
        _, guid = w.message(
            chat,
            text,
            from_me=i == 1,
            sender=h,
            date=T0 + i * 10**9,
            body="attributed",  # text column NULL: the blob is the only copy of the text
            attachments=photo,
            length_overrun=overrun,
        )
        want[guid] = (text, "ok", len(photo))
    _, guid = w.message(chat, "an honest one", from_me=False, sender=h, date=T0 + 9 * 10**9)
    want[guid] = ("an honest one", "ok", 0)
    w.close()
    conn = sqlite3.connect(root / "chat.db")
    blobs = [b for (b,) in conn.execute("SELECT attributedBody FROM message WHERE text IS NULL")]
    conn.close()
    assert len(blobs) == 4
    return root, want


@pytest.mark.parametrize("sql_load", [True, False])
def test_first_import_recovers_overrunning_bodies(sql_load, lib, tmp_path, capsys, monkeypatch):
    from chatstats.ingest import importer

    root, want = lib
    monkeypatch.setattr(importer, "SQL_LOAD", sql_load)
    summary = _import(capsys, root, tmp_path / "data")
    assert summary["mode"] == "race"
    assert _rows(tmp_path / "data") == want


def test_incremental_import_recovers_an_overrunning_body(lib, tmp_path, capsys):
    root, want = lib
    _import(capsys, root, tmp_path / "data")
    w = MessagesWriter(root / "chat.db", create=False)
    chat = next(iter(w.chats))
    _, guid = w.message(
        chat,
        "arrived later, still overrunning",
        from_me=True,
        date=T0 + 60 * 10**9,
        body="attributed",
        length_overrun=25,
    )
    w.close()
    summary = _import(capsys, root, tmp_path / "data")
    assert summary["mode"] == "incremental" and summary["messages_added"] == 1
    assert _rows(tmp_path / "data") == {**want, guid: ("arrived later, still overrunning", "ok", 0)}
    conn = sqlite3.connect(tmp_path / "data" / "chatstats.db")
    hits = conn.execute(
        "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'overrunning'"
    ).fetchone()[0]
    conn.close()
    assert hits == 2  # the caption and the late one: the recovered text is searchable
