"""Compare an imported app database with a generated library's truth, field by field."""

from __future__ import annotations

import shutil
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from chatstats.ingest.conversations import Point, split
from chatstats.sample.truth import Truth


def plain_message(chat_db: Path) -> int:
    """The ROWID of the newest plain message in a chat.db (a text body in a blob; not an
    event, tapback, balloon, edit or unsend), for a test to change behind the import."""
    conn = sqlite3.connect(chat_db)
    try:
        (rowid,) = conn.execute(
            "SELECT ROWID FROM message WHERE attributedBody IS NOT NULL AND item_type = 0"
            " AND associated_message_type = 0 AND COALESCE(date_retracted, 0) = 0"
            " AND COALESCE(date_edited, 0) = 0 AND message_summary_info IS NULL"
            " AND balloon_bundle_id IS NULL AND length(attributedBody) > 200"
            " ORDER BY ROWID DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    return int(rowid)


def stats_tables(app_db: Path) -> dict[str, list[tuple]]:
    """Every statistics table's rows (in a stable order), for comparing two databases."""
    conn = sqlite3.connect(app_db)
    try:
        names = [
            n
            for (n,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'stats%'"
            )
        ]
        return {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}
    finally:
        conn.close()


def changed_copy(db: Path, tmp: Path, change: Callable[[sqlite3.Connection], object]) -> Path:
    """A copy of `db` that `change` was run on (an autocommit connection), e.g. to compare a
    database with its own rebuild."""
    copy = tmp / f"changed-{db.stem}.db"
    shutil.copy(db, copy)
    conn = sqlite3.connect(copy, isolation_level=None)
    try:
        change(conn)
    finally:
        conn.close()
    return copy


def live_sync(app_db: Path, chat_db: Path) -> None:
    """One live-tail sync of `chat_db` into `app_db`, as the daemon runs it (for tests that
    change chat.db after an import)."""
    import anyio

    from chatstats.db import Database
    from chatstats.ingest.live import LiveTail

    async def sync() -> None:
        db = Database(app_db)
        await db.open()
        try:
            await LiveTail(db, chat_db).sync()
        finally:
            db.close()

    anyio.run(sync)


def open_app_db(data_dir: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(data_dir / "chatstats.db")
    conn.row_factory = sqlite3.Row
    return conn


def imported_messages(conn: sqlite3.Connection) -> dict[str, sqlite3.Row]:
    rows = conn.execute(
        """
        SELECT m.*, c.guid AS chat_guid, h.identifier AS sender_identifier,
               o.identifier AS other_identifier
        FROM messages m
        LEFT JOIN chats c ON c.id = m.chat_id
        LEFT JOIN handles h ON h.id = m.handle_id
        LEFT JOIN handles o ON o.id = m.other_handle_id
        """
    ).fetchall()
    return {r["guid"]: r for r in rows}


def check_messages(conn: sqlite3.Connection, truth: Truth) -> None:
    got = imported_messages(conn)
    assert len(got) == len(truth.messages)
    attachments: dict[int, list[tuple]] = defaultdict(list)
    for a in conn.execute(
        "SELECT message_id, guid, transfer_name, mime_type, total_bytes FROM attachments"
        " ORDER BY message_id, position, id"
    ):
        attachments[a[0]].append(tuple(a)[1:])
    for t in truth.messages:
        m = got[t.guid]
        where = f"message {t.guid} ({t.kind})"
        assert m["chat_guid"] == t.chat_guid, where
        assert m["kind"] == t.kind, where
        assert m["text"] == t.text, where
        assert bool(m["is_from_me"]) == t.is_from_me, where
        assert m["sender_identifier"] == t.sender, where
        assert m["date_ns"] == t.date_ns, where
        assert m["reply_to_guid"] == t.reply_to_guid, where
        assert bool(m["edited"]) == t.edited, where
        assert bool(m["unsent"]) == t.unsent, where
        if t.body_corrupt:
            assert m["body_status"] == "corrupt", where
        assert m["group_title"] == t.group_title, where
        assert m["other_identifier"] == t.other, where
        assert m["service"] == t.service, where
        expected = [(a.guid, a.transfer_name, a.mime_type, a.total_bytes) for a in t.attachments]
        assert attachments.get(m["id"], []) == expected, where


def check_reactions(conn: sqlite3.Connection, truth: Truth) -> None:
    got = {
        (r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6])
        for r in conn.execute(
            "SELECT r.guid, r.target_guid, r.part, r.type, r.emoji, r.is_from_me, h.identifier"
            " FROM reactions r LEFT JOIN handles h ON h.id = r.handle_id WHERE r.active = 1"
        )
    }
    want = {
        (t.guid, t.target_guid, t.part, t.type, t.emoji, t.is_from_me, t.sender)
        for t in truth.reactions
    }
    assert got == want


def check_chats(conn: sqlite3.Connection, truth: Truth) -> None:
    rows = {r["guid"]: r for r in conn.execute("SELECT * FROM chats")}
    parts: dict[int, list[str]] = defaultdict(list)
    for chat_id, ident in conn.execute(
        "SELECT p.chat_id, h.identifier FROM chat_participants p JOIN handles h ON h.id = p.handle_id"
    ):
        parts[chat_id].append(ident)
    assert set(rows) == {c.guid for c in truth.chats}
    for t in truth.chats:
        r = rows[t.guid]
        assert bool(r["is_group"]) == t.is_group, t.guid
        assert r["display_name"] == t.display_name, t.guid
        assert r["service"] == t.service, t.guid
        assert sorted(set(parts[r["id"]])) == sorted(set(t.participants)), t.guid


def check_contacts(conn: sqlite3.Connection, truth: Truth) -> None:
    by_ident = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT h.identifier, c.id, c.name FROM handles h JOIN contacts c ON c.id = h.contact_id"
        )
    }
    seen: dict[int, str | None] = {}
    for t in truth.contacts:
        ids = {by_ident[i][0] for i in t.identifiers}
        assert len(ids) <= 1, f"one person split over contacts {ids}"
        for cid in ids:
            assert by_ident[t.identifiers[0]][1] == t.name
            assert cid not in seen, "two people merged into one contact"
            seen[cid] = t.name


def check_conversations(conn: sqlite3.Connection, truth: Truth) -> None:
    """Each chat's conversations are exactly the 90-minute split of its messages; a system
    event (rename, membership) belongs to the conversation whose span holds it, or to none,
    and counts in none."""
    got: dict[str, set[frozenset[str]]] = defaultdict(set)
    members: dict[int, set[str]] = defaultdict(set)
    chat_of: dict[int, str] = {}
    events: list[tuple[str, int | None, str, int]] = []
    for guid, cid, chat_guid, kind, date_ns in conn.execute(
        "SELECT m.guid, m.conversation_id, c.guid, m.kind, m.date_ns FROM messages m"
        " JOIN chats c ON c.id = m.chat_id"
    ):
        if kind != "message":
            events.append((guid, cid, chat_guid, date_ns))
            continue
        assert cid is not None, guid
        members[cid].add(guid)
        chat_of[cid] = chat_guid
    for cid, guids in members.items():
        got[chat_of[cid]].add(frozenset(guids))
    by_chat: dict[str, list] = defaultdict(list)
    for t in truth.messages:
        if t.chat_guid is not None and t.kind == "message":
            by_chat[t.chat_guid].append(t)
    for chat_guid, msgs in by_chat.items():
        index = {i: m.guid for i, m in enumerate(msgs)}
        groups = split(sorted(Point(m.date_ns, i) for i, m in enumerate(msgs)))
        want = {frozenset(index[i] for i in g.message_ids) for g in groups}
        assert got[chat_guid] == want, chat_guid
    spans: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for cid, chat_guid, start_ns, end_ns in conn.execute(
        "SELECT c.id, h.guid, c.start_ns, c.end_ns FROM conversations c"
        " JOIN chats h ON h.id = c.chat_id"
    ):
        spans[chat_guid].append((start_ns, end_ns, cid))
    for guid, cid, chat_guid, date_ns in events:
        holders = [c for s, e, c in spans[chat_guid] if s <= date_ns <= e]
        assert cid == (holders[0] if holders else None), guid
    counts = dict(
        conn.execute(
            "SELECT c.id, c.message_count - (SELECT count(*) FROM messages m"
            " WHERE m.conversation_id = c.id AND m.kind = 'message') FROM conversations c"
        ).fetchall()
    )
    assert set(counts.values()) <= {0}


def check_all(data_dir: Path, truth: Truth) -> None:
    conn = open_app_db(data_dir)
    try:
        check_messages(conn, truth)
        check_reactions(conn, truth)
        check_chats(conn, truth)
        check_contacts(conn, truth)
        check_conversations(conn, truth)
    finally:
        conn.close()


def dump(data_dir: Path) -> dict[str, list[tuple]]:
    """Every iMessage-domain row, for comparing two databases (run bookkeeping excluded)."""
    conn = sqlite3.connect(data_dir / "chatstats.db")
    tables = [
        "contacts",
        "contact_identifiers",
        "handles",
        "chats",
        "chat_participants",
        "conversations",
        "messages",
        "reactions",
        "attachments",
    ]
    out = {}
    for t in tables:
        rows = conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
        if t == "conversations":  # sealed_at_ns is the wall-clock time of the import
            rows = [r[:-1] for r in rows]
        out[t] = rows
    out["fts"] = conn.execute("SELECT rowid, text FROM messages_fts ORDER BY rowid").fetchall()
    out["sources"] = conn.execute(
        "SELECT path, kind, last_message_rowid, last_attachment_rowid, last_edit_ns,"
        " last_retract_ns, last_read_ns, last_delivered_ns FROM sources"
    ).fetchall()
    conn.close()
    return out
