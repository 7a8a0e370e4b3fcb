"""A message's attachments come back in the order its body has them, whatever their guids
look like. `at_<part>_<GUID>` guids say their part; bare UUIDs (Messages.app writes those
too) say nothing, and their ROWIDs need not follow the body: chat.db is rewritten by iCloud
syncs and restores. The body's `__kIMFileTransferGUIDAttributeName` runs are the order, in
the first import and in live batches alike, across chunk boundaries and batches."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from chatstats.imessage import chatdb
from chatstats.ingest.importer import run_import
from chatstats.sample.writer import AttachmentSpec, MessagesWriter
from tests.library_check import live_sync

PHOTOS = [AttachmentSpec(f"IMG_{i}.HEIC", "image/heic", "public.heic", 1000 + i) for i in range(4)]


def bare() -> list[str]:
    return [str(uuid.UUID(int=0xC0FFEE + i * 7919)).upper() for i in range(len(PHOTOS))]


def add_photos(lib: Path, guids: list[str] | None) -> tuple[str, list[str]]:
    """One message with four photos (named `guids`, else the writer's `at_<part>_` names),
    then their ROWIDs permuted so that ROWID order is not body order. Returns the message's
    GUID and its attachments' guids in body order."""
    w = MessagesWriter(lib / "chat.db", create=False)
    chat = next(c for c, info in w.chats.items() if info.handles)
    _rowid, message = w.message(
        chat, "four photos", from_me=True, date=time.time_ns(), attachments=PHOTOS,
        attachment_guids=guids,
    )  # fmt: skip
    w.close()
    names = guids or [f"at_{i}_{message}" for i in range(len(PHOTOS))]
    conn = sqlite3.connect(lib / "chat.db")
    with conn:
        rowid_of = dict(
            conn.execute(
                "SELECT guid, ROWID FROM attachment WHERE guid IN (?, ?, ?, ?)", names
            ).fetchall()
        )
        order = [rowid_of[g] for g in names]
        shuffled = [order[3], order[1], order[2], order[0]]
        for old, new in zip(order, shuffled, strict=True):  # via negatives: no clash
            conn.execute("UPDATE attachment SET ROWID = ? WHERE ROWID = ?", (-new, old))
            conn.execute(
                "UPDATE message_attachment_join SET attachment_id = ? WHERE attachment_id = ?",
                (-new, old),
            )
        conn.execute("UPDATE attachment SET ROWID = -ROWID WHERE ROWID < 0")
        conn.execute(
            "UPDATE message_attachment_join SET attachment_id = -attachment_id"
            " WHERE attachment_id < 0"
        )
    conn.close()
    return message, names


def stored_order(db: Path, message_guid: str) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [
            g
            for (g,) in conn.execute(
                "SELECT a.guid FROM attachments a JOIN messages m ON m.id = a.message_id"
                " WHERE m.guid = ? ORDER BY a.position, a.id",
                (message_guid,),
            )
        ]
    finally:
        conn.close()


@pytest.mark.parametrize("form", ["bare", "part"])
def test_the_first_import_orders_attachments_as_the_body(form, small_lib, tmp_path, monkeypatch):
    message, guids = add_photos(small_lib, bare() if form == "bare" else None)
    # Chunks of three: the message's four attachments are read in two of them.
    real = chatdb.Reader.attachment_chunks
    monkeypatch.setattr(
        chatdb.Reader,
        "attachment_chunks",
        lambda self, after, limit=5000, **kw: real(self, after, 3, **kw),
    )
    run_import(tmp_path / "app.db", small_lib / "chat.db", None)
    assert stored_order(tmp_path / "app.db", message) == guids


def test_a_live_batch_orders_them_as_the_body_too(small_lib, tmp_path):
    run_import(tmp_path / "app.db", small_lib / "chat.db", None)
    message, guids = add_photos(small_lib, bare())

    live_sync(tmp_path / "app.db", small_lib / "chat.db")
    assert stored_order(tmp_path / "app.db", message) == guids
