"""System events (renames, membership changes) in conversations: shown in the timeline with
their kind, but never opening, extending or counting in a conversation. An event belongs to
the conversation whose time span holds it, edges included, or to none.

The same group chat, written by the chat.db writer, goes through each ingest path: the
first import (SQL and Python), an incremental import, and live sync fed row by row in the
order Messages.app would write them, including an older message that forces a fresh split.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from chatstats.db import Database
from chatstats.ingest import importer, sealer
from chatstats.ingest.conversations import GAP_NS
from chatstats.ingest.live import LiveTail
from chatstats.sample.writer import MessagesWriter

pytestmark = pytest.mark.anyio

S = 1_000_000_000
MIN = 60 * S
# B ends 10 minutes ago: still open after a first import, which files only conversations
# over for 90 minutes as sealed (what a message after a sealed one does is another matter).
T0 = time.time_ns() // MIN * MIN - 200 * MIN

# (label, minutes after T0, what). Messages: A = 0-20 and B = 180-190. Events sit at A's
# edges, just outside them, inside B, and in the gaps, each within 90 minutes of a message,
# so that counting them as messages would stretch or bridge conversations.
TIMELINE = [
    ("e-500", -500, "leave"),  # alone: would open a conversation of its own
    ("e-60", -60, "rename"),  # before A, within 90 min: would extend A backwards
    ("m0", 0, "message"),
    ("e0", 0, "rename"),  # A's first instant
    ("m10", 10, "message"),
    ("m20", 20, "message"),
    ("e20", 20, "add"),  # A's last instant
    ("e21", 21, "rename"),  # just after A
    ("e100", 100, "rename"),  # the gap: 80 min after A, 80 before B, would bridge them
    ("m180", 180, "message"),
    ("e185", 185, "add"),  # inside B
    ("m190", 190, "message"),
]
A = frozenset({"m0", "m10", "m20"})
B = frozenset({"m180", "m190"})
WANT_EVENTS = {
    "e-60": None,
    "e0": A,
    "e20": A,
    "e21": None,
    "e100": None,
    "e185": B,
    "e-500": None,
}


class Chat:
    """A group chat in a chat.db of its own, written row by row (each row one commit)."""

    def __init__(self, path: Path) -> None:
        self.w = MessagesWriter(path, seed=7)
        self.alice = self.w.handle("+15550100001")
        self.bob = self.w.handle("+15550100002")
        self.carol = self.w.handle("+15550100003")
        self.chat = self.w.chat([self.alice, self.bob], display_name="")
        self.guids: dict[str, str] = {}

    def write(self, label: str, minute: int, what: str) -> None:
        date = T0 + minute * MIN
        w, chat = self.w, self.chat
        if what == "message":
            _r, guid = w.message(chat, f"text {label}", from_me=False, sender=self.alice, date=date)
        elif what == "rename":
            _r, guid = w.rename_group(chat, f"title {label}", from_me=True, date=date)
        elif what == "add":
            _r, guid = w.add_member(chat, self.carol, from_me=False, sender=self.bob, date=date)
        else:
            _r, guid = w.leave_group(chat, from_me=False, sender=self.carol, date=date)
        self.guids[guid] = label

    def close(self) -> None:
        self.w.close()


def state(db_path: Path, labels: dict[str, str]) -> tuple[dict, dict, dict]:
    """(message set → stored count, event → message set of its conversation or None,
    label → kind), from the app database."""
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(
            "SELECT guid, conversation_id, kind FROM messages WHERE chat_id IS NOT NULL"
        ).fetchall()
        members: dict[int, set[str]] = {}
        for guid, cid, kind in rows:
            if kind == "message":
                assert cid is not None, labels[guid]
                members.setdefault(cid, set()).add(labels[guid])
        sets = {cid: frozenset(m) for cid, m in members.items()}
        counts = dict(conn.execute("SELECT id, message_count FROM conversations").fetchall())
        # Every conversation is made of messages: none is made of events alone.
        assert set(counts) == set(sets)
        convs = {sets[cid]: counts[cid] for cid in sets}
        events = {
            labels[g]: (None if cid is None else sets.get(cid, "missing"))
            for g, cid, kind in rows
            if kind != "message"
        }
        kinds = {labels[g]: kind for g, _cid, kind in rows}
        spans = conn.execute(
            "SELECT c.start_ns, c.end_ns, (SELECT min(date_ns) FROM messages m"
            " WHERE m.conversation_id = c.id AND m.kind = 'message'),"
            " (SELECT max(date_ns) FROM messages m"
            " WHERE m.conversation_id = c.id AND m.kind = 'message') FROM conversations c"
        ).fetchall()
        for start, end, first, last in spans:  # spans are the messages' own
            assert (start, end) == (first, last)
    finally:
        conn.close()
    return convs, events, kinds


def assert_placed(db_path: Path, labels: dict[str, str]) -> None:
    convs, events, kinds = state(db_path, labels)
    assert convs == {A: 3, B: 2}
    assert events == WANT_EVENTS
    # Still served in the timeline, each with its kind.
    assert kinds["e0"] == "renamed" and kinds["e185"] == "participant_added"
    assert kinds["e-500"] == "participant_left" and kinds["m0"] == "message"


@pytest.mark.parametrize("sql_load", [True, False], ids=["sql", "python"])
def test_first_import_places_events_by_span_and_counts_only_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sql_load: bool
):
    monkeypatch.setattr(importer, "SQL_LOAD", sql_load)
    chat = Chat(tmp_path / "chat.db")
    for item in TIMELINE:
        chat.write(*item)
    chat.close()
    summary = importer.run_import(tmp_path / "app.db", tmp_path / "chat.db")
    assert summary.mode == "race"
    assert summary.messages_added == 5 and summary.system_events_added == 7
    assert summary.conversations_created == 2
    assert_placed(tmp_path / "app.db", chat.guids)


def test_incremental_import_places_events_in_conversations_grown_over_them(tmp_path: Path):
    """A second import finds events already imported in a gap that new messages now span."""
    chat = Chat(tmp_path / "chat.db")
    cut = [label for label, *_ in TIMELINE].index("m190")
    for item in TIMELINE[:cut]:
        chat.write(*item)
    importer.run_import(tmp_path / "app.db", tmp_path / "chat.db")
    _convs, events, _k = state(tmp_path / "app.db", chat.guids)
    assert events["e185"] is None  # B was only m180 then
    for item in TIMELINE[cut:]:
        chat.write(*item)
    chat.close()
    summary = importer.run_import(tmp_path / "app.db", tmp_path / "chat.db")
    assert summary.mode == "incremental"
    assert_placed(tmp_path / "app.db", chat.guids)


async def test_live_sync_places_events_as_they_arrive_and_when_spans_grow(tmp_path: Path):
    """Rows arrive one by one, in the order they were written; each event lands where the
    conversations stand then, and moves into one when a later message spans it. Finally an
    older message arrives (a fresh split) and the events follow the conversations."""
    chat = Chat(tmp_path / "chat.db")
    importer.run_import(tmp_path / "app.db", tmp_path / "chat.db")  # an empty history
    db = Database(tmp_path / "app.db")
    await db.open()
    try:
        tail = LiveTail(db, tmp_path / "chat.db")
        for label, minute, what in TIMELINE:
            chat.write(label, minute, what)
            await tail.sync()
            if label == "e185":  # B is only m180 so far: e185 lies after it
                assert state(tmp_path / "app.db", chat.guids)[1]["e185"] is None
        assert_placed(tmp_path / "app.db", chat.guids)

        # An older message within A's reach: A is split afresh (0-50), B and events follow.
        chat.write("m50", 50, "message")
        await tail.sync()
        convs, events, _k = state(tmp_path / "app.db", chat.guids)
        a2 = A | {"m50"}
        assert convs == {a2: 4, B: 2}
        assert events == {**WANT_EVENTS, "e0": a2, "e20": a2, "e21": a2}

        # Sealing finalises each conversation from its messages: the events inside stay out.
        later = time.time_ns() + 2 * GAP_NS
        sealed = await db.write(lambda conn: sealer.seal_due(conn, later))
        assert sorted(s.message_count for s in sealed) == [2, 4]
        assert state(tmp_path / "app.db", chat.guids)[0] == {a2: 4, B: 2}
    finally:
        chat.close()
        db.close()
