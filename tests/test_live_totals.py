"""Per-contact counts kept by the batch from its own rows (O(new rows)) equal a recount.

Why: a live sync used to recount every message of each touched contact (tens of ms per
message for a busy contact on a large library); it now adds the batch's rows. This checks
the sum against `refresh_contacts` (the recount) after incremental imports that bring
messages from both sides of a 1:1 chat, a group message and a new, unknown sender.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from chatstats import cli
from chatstats.ingest.batch import refresh_contacts
from chatstats.sample.generate import make_library
from chatstats.sample.writer import MessagesWriter


def _import(lib: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["import", "--source", str(lib / "chat.db"), "--addressbook", str(lib / "AddressBook"),
         "--data-dir", str(data)]
    )  # fmt: skip
    capsys.readouterr()
    assert code == 0


def _counts(conn: sqlite3.Connection) -> dict[int, tuple[int, int | None]]:
    return {
        r[0]: (r[1], r[2])
        for r in conn.execute("SELECT id, message_count, last_message_ns FROM contacts")
    }


def test_incremental_contact_counts_equal_a_recount(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lib, data = tmp_path / "lib", tmp_path / "data"
    make_library(lib, messages=600, seed=5, truth=False)
    _import(lib, data, capsys)
    for round_ in range(3):
        w = MessagesWriter(lib / "chat.db", create=False, seed=round_)
        one = next(c for c, info in w.chats.items() if not info.is_group and info.handles)
        group = next(c for c, info in w.chats.items() if info.is_group and info.handles)
        them = w.chats[one].handles[0]
        now = time.time_ns()
        for i in range(4):
            w.message(one, f"hello {i}", from_me=i % 2 == 0, sender=them, date=now + i)
        w.message(group, "all of you", from_me=True, date=now + 10)
        w.message(group, "me too", from_me=False, sender=w.chats[group].handles[0], date=now + 11)
        stranger = w.handle(f"+1555000{round_:04d}")
        w.message(w.chat([stranger]), "who is this", from_me=False, sender=stranger, date=now + 20)
        w.close()
        _import(lib, data, capsys)
        conn = sqlite3.connect(data / "chatstats.db")
        try:
            kept = _counts(conn)
            assert sum(n for n, _ in kept.values()) > 0
            refresh_contacts(conn, None)
            assert _counts(conn) == kept, f"round {round_}"
            conn.rollback()
        finally:
            conn.close()
