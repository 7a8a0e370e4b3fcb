"""Statistics stay exact through live batches: new messages, an edit, an unsend, a tapback
and its removal, and a contact merge. The live-updated database must give the same figures
as a fresh import of the same chat.db, and its trigger-kept buckets must equal a recount."""

from __future__ import annotations

import io
import shutil
import sqlite3
import time
from collections import Counter
from datetime import datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from chatstats.db import Database
from chatstats.ingest.addressbook_sync import AddressBookSync
from chatstats.ingest.conversations import GAP_NS
from chatstats.ingest.live import LiveTail
from chatstats.sample.addressbook import FixturePerson, write_macos_store
from chatstats.sample.correspondent import Correspondent
from chatstats.stats import maintain, service
from tests.test_import import run_import

pytestmark = pytest.mark.anyio
STRANGER = "+15558675309"
ZONE = ZoneInfo("America/New_York")


def _recount(conn: sqlite3.Connection) -> set[tuple]:
    return set(
        tuple(r)
        for r in conn.execute(
            "SELECT chat_id, date_ns / 900000000000, COALESCE(handle_id, 0), is_from_me, COUNT(*),"
            " SUM(cs_words(text)) FROM messages WHERE kind = 'message' AND chat_id IS NOT NULL"
            " GROUP BY 1, 2, 3, 4"
        ).fetchall()
    )


def _by_guid(conn: sqlite3.Connection) -> dict:
    """Every route's figures keyed by Apple's GUIDs and identifiers, so two databases compare."""
    from chatstats.db import word_count

    conn.create_function("cs_words", 1, word_count)
    conn.row_factory = sqlite3.Row
    today = datetime.now(ZONE).date()
    guid_of = {r[0]: r[1] for r in conn.execute("SELECT id, guid FROM chats")}
    ident_of = {
        r[0]: r[1]
        for r in conn.execute(
            "SELECT contact_id, group_concat(identifier) FROM (SELECT * FROM contact_identifiers"
            " ORDER BY identifier) GROUP BY contact_id"
        )
    }

    def norm(fig: dict) -> dict:
        for s in fig.get("by_sender", []):
            s["contact_id"] = ident_of.get(s["contact_id"])
        for t in fig.get("top_chats", []):
            t["chat_id"] = guid_of[t["chat_id"]]
        return fig

    out = {"overview": norm(service.overview(conn, ZONE, service.MIN_NS, service.MAX_NS))}
    for cid, guid in guid_of.items():
        out[guid] = norm(service.chat_stats(conn, ZONE, cid, service.MIN_NS, service.MAX_NS, today))
    for kid, idents in ident_of.items():
        out[idents] = norm(
            service.contact_stats(conn, ZONE, kid, service.MIN_NS, service.MAX_NS, today)
        )
    out["_buckets_match"] = _recount(conn) == set(
        tuple(r)
        for r in conn.execute(
            "SELECT chat_id, bucket, handle_id, is_from_me, messages, words FROM stats_buckets"
        )
    )
    months = set(
        conn.execute(
            "SELECT CAST(strftime('%Y%m', date_ns / 1000000000, 'unixepoch') AS INTEGER), chat_id,"
            " COALESCE(handle_id, 0), is_from_me, COUNT(*) FROM messages"
            " WHERE kind = 'message' AND chat_id IS NOT NULL GROUP BY 1, 2, 3, 4"
        ).fetchall()
    )
    kept = {tuple(r) for r in conn.execute("SELECT * FROM stats_months")}
    out["_buckets_match"] = out["_buckets_match"] and {tuple(r) for r in months} == kept
    return out


def _summaries(conn: sqlite3.Connection) -> dict[str, Counter[tuple]]:
    """Each summary table's rows; a block's packed buckets as a set (their order is free)."""
    out: dict[str, Counter[tuple]] = {}
    for table in maintain.SUMMARY_TABLES:
        rows = [tuple(r) for r in conn.execute(f"SELECT * FROM {table}")]  # constant names
        if table == "stats_blocks":
            rows = [(*r[:4], _triples(r[4])) for r in rows]
        out[table] = Counter(rows)
    return out


def _triples(packed: str) -> frozenset[tuple[str, ...]]:
    xs = packed.split(",")
    return frozenset(tuple(xs[i : i + 3]) for i in range(0, len(xs), 3))


async def test_live_batches_keep_every_figure_exact(libraries, tmp_path, capsys):
    src, _ = libraries["sequoia"]
    lib = tmp_path / "lib"
    shutil.copytree(src, lib)
    data = tmp_path / "data"
    run_import(capsys, lib, data)
    who = Correspondent(lib / "chat.db", seed=3, out=io.StringIO())
    w = who.writer
    h = w.handle(STRANGER)
    stranger_chat = w.chat([h])
    w.message(stranger_chat, "hello from a stranger", from_me=False, sender=h, date=time.time_ns())
    for _ in range(3):
        who.receive()
    who.reply()
    who.reply()
    who.react()
    _r, target = who.mine[-1]
    w.tapback(who.chat, target, 2001, from_me=False, sender=who.sender, date=time.time_ns())
    w.tapback(who.chat, target, 3001, from_me=False, sender=who.sender, date=time.time_ns() + 1)
    who.edit()
    who.reply()
    who.unsend()
    # Older messages: one bridging two conversations of the chat (they merge: a re-split
    # moves messages between conversation ids), one just after its first message.
    chat_guid = w.conn.execute("SELECT guid FROM chat WHERE ROWID = ?", (who.chat,)).fetchone()[0]
    app = sqlite3.connect(data / "chatstats.db")
    times = [
        r[0]
        for r in app.execute(
            "SELECT m.date_ns FROM messages m JOIN chats c ON c.id = m.chat_id"
            " WHERE c.guid = ? AND m.kind = 'message' ORDER BY m.date_ns",
            (chat_guid,),
        )
    ]
    app.close()
    bridge = [(a, b) for a, b in pairwise(times) if GAP_NS < b - a < 2 * GAP_NS - 10**11]
    assert bridge, "the sample chat has two conversations a bridge can join"
    a, b = bridge[len(bridge) // 2]
    w.message(who.chat, "bridging two conversations", from_me=True, date=(a + b) // 2)
    w.message(who.chat, "a late one", from_me=False, sender=who.sender, date=times[0] + 60 * 10**9)
    w.close()
    db = Database(data / "chatstats.db")
    await db.open()
    try:
        await LiveTail(db, lib / "chat.db").sync(full=True)
        store = lib / "AddressBook" / "Sources" / "NEW-ACCOUNT" / "AddressBook-v22.abcddb"
        store.parent.mkdir(parents=True)
        write_macos_store(
            store, [FixturePerson(first="Jenny", last="Tutone", phones=["(555) 867-5309"])]
        )
        await AddressBookSync(db, lib / "AddressBook", cooldown=60).sync()
    finally:
        db.close()
    fresh = tmp_path / "fresh"
    run_import(capsys, lib, fresh)
    live = _by_guid(sqlite3.connect(data / "chatstats.db"))
    again = _by_guid(sqlite3.connect(fresh / "chatstats.db"))
    assert live["_buckets_match"] and again["_buckets_match"]
    # The trigger-kept summaries (0011) are exactly what one rebuild from the rows makes.
    conn = sqlite3.connect(data / "chatstats.db")
    kept = _summaries(conn)
    assert kept["stats_replies"] and kept["stats_conversations"] and kept["stats_reactions"]
    conn.execute("BEGIN")
    maintain.rebuild(conn)
    rebuilt = _summaries(conn)
    conn.execute("ROLLBACK")
    for table in maintain.SUMMARY_TABLES:
        assert kept[table] == rebuilt[table], table
    assert live["overview"]["messages"] > 0
    assert set(live) == set(again)
    for key in live:
        assert live[key] == again[key], key
