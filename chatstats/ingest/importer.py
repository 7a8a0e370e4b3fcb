"""Historical import: the whole of a chat.db (or an iPhone backup's sms.db) into the app DB.

It runs as plain sqlite3 in one worker thread with its own connection (DESIGN.md: bulk work
leaves the loop) and writes everything in ONE transaction, together with the source's new
watermarks. Killing it at any point therefore leaves the database exactly as it was, and
the next run, seeing its `import_runs` row still 'running', says so and redoes the work.

"Race mode" (the seeds' fast first import) is the same transaction with the expensive
safety turned off where it buys nothing: secondary indexes are dropped before the load and
rebuilt after (in the same transaction), `synchronous=OFF`, and, when no other connection
has the database open, a rollback journal instead of the WAL. On a database that holds no
messages yet, a rollback journal records almost nothing (pages appended past the old end of
the file need no journal), so it costs what `journal_mode=OFF` costs, yet a kill still rolls
back cleanly: `journal_mode=OFF` could leave a half-written, corrupt file.

A re-run adds only what is new: ROWID watermarks per source, and Apple's GUIDs as unique
keys, so overlapping sources (a Mac and an iPhone backup of the same account) never duplicate.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from chatstats import db as appdb
from chatstats import log
from chatstats.imessage import chatdb
from chatstats.imessage.chatdb import M_CHAT, M
from chatstats.imessage.dates import apple_seconds_to_unix_ns, apple_to_unix_ns
from chatstats.ingest import conversations as conv
from chatstats.ingest.contacts import ContactBook, refresh_counts
from chatstats.ingest.reactions import Tapback, apply_tapbacks

logger = log.get(__name__)

Progress = Callable[[str, int, int], None]

# Indexes dropped during a race-mode load (UNIQUE constraints stay: they enforce GUIDs).
_RACE_TABLES = ("messages", "reactions", "attachments", "conversations", "handles", "chats")
_PLACEHOLDERS = str.maketrans("", "", "\ufffc\ufffd")
_AT_PREFIX = re.compile(r"^at_(\d+)_")


class ImportSummary(msgspec.Struct, kw_only=True):
    source: str
    mode: str = "incremental"
    messages_added: int = 0
    system_events_added: int = 0
    reactions_added: int = 0
    attachments_added: int = 0
    chats: int = 0
    handles: int = 0
    contacts_created: int = 0
    contacts_merged: int = 0
    conversations_created: int = 0
    conversations_removed: int = 0
    bodies_corrupt: int = 0
    bodies_empty: int = 0
    summaries_unreadable: int = 0
    orphans: int = 0
    duplicates_skipped: int = 0
    addressbook_people: int = 0
    addressbook_errors: list[str] = []
    previous_run_interrupted: bool = False
    seconds: float = 0.0


def _noop(_phase: str, _done: int, _total: int) -> None:
    return None


def run_import(
    db_path: Path,
    source: Path,
    addressbook: Path | None = None,
    progress: Progress | None = None,
    *,
    kind: str = "chatdb",
    people: list[Any] | None = None,
) -> ImportSummary:
    """Import everything new in `source`; see the module docstring for the guarantees.

    `people` (AddressBook persons) may be passed in by callers that located them elsewhere
    (an iPhone backup's AddressBook.sqlitedb); otherwise `addressbook` is read.
    """
    started = time.perf_counter()
    report = progress or _noop
    summary = ImportSummary(source=str(source))
    src_conn = chatdb.open_source(source)
    try:
        reader = chatdb.Reader(src_conn)
        if people is None:
            people = _read_addressbook(addressbook, summary)
        summary.addressbook_people = len(people)
        conn = appdb.connect(db_path, write=True)
        try:
            appdb.migrate(conn)
            _import(conn, reader, source, kind, people, summary, report)
        finally:
            conn.close()
    finally:
        src_conn.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    logger.info(
        "import_complete",
        **{k: v for k, v in msgspec.to_builtins(summary).items() if k != "source"},
    )
    return summary


def _read_addressbook(addressbook: Path | None, summary: ImportSummary) -> list[Any]:
    if addressbook is None or not addressbook.exists():
        return []
    from chatstats.imessage.addressbook import find_macos_stores, read_people

    stores = find_macos_stores(addressbook)
    people, errors = read_people(stores)
    summary.addressbook_errors = [str(e) for e in errors]
    for err in errors:
        logger.warning("addressbook_store_unreadable", error=str(err))
    return people


def _import(
    conn: sqlite3.Connection,
    reader: chatdb.Reader,
    source: Path,
    kind: str,
    people: list[Any],
    summary: ImportSummary,
    report: Progress,
) -> None:
    now_ns = time.time_ns()
    conn.execute(
        "INSERT INTO sources (path, kind) VALUES (:p, :k) ON CONFLICT(path) DO NOTHING",
        {"p": str(source.resolve()), "k": kind},
    )
    src = conn.execute(
        "SELECT id, last_message_rowid, last_attachment_rowid FROM sources WHERE path = :p",
        {"p": str(source.resolve())},
    ).fetchone()
    source_id, msg_wm, att_wm = src[0], src[1], src[2]
    stale = conn.execute(
        "UPDATE import_runs SET state = 'interrupted', finished_ns = :t WHERE state = 'running'",
        {"t": now_ns},
    ).rowcount
    if stale:
        summary.previous_run_interrupted = True
        logger.warning("import_previous_run_interrupted", runs=stale, action="redoing")
    run_id = conn.execute(
        "INSERT INTO import_runs (source_id, state, started_ns) VALUES (:s, 'running', :t)",
        {"s": source_id, "t": now_ns},
    ).lastrowid

    race = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM messages)").fetchone()[0] == 1
    if race:
        summary.mode = "race"
        journal = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-200000")
        logger.info("import_race_mode", journal=journal)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            dropped = _drop_indexes(conn) if race else []
            _load(conn, reader, people, summary, report, msg_wm, att_wm, source_id, race, now_ns)
            report("indexes", 0, len(dropped))
            for i, sql in enumerate(dropped):
                conn.execute(sql)
                report("indexes", i + 1, len(dropped))
            conn.execute(
                "UPDATE import_runs SET state = 'complete', finished_ns = :t, summary = :s"
                " WHERE id = :id",
                {"t": time.time_ns(), "s": msgspec.json.encode(summary).decode(), "id": run_id},
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            conn.execute(
                "UPDATE import_runs SET state = 'failed', finished_ns = :t WHERE id = :id",
                {"t": time.time_ns(), "id": run_id},
            )
            raise
    finally:
        if race:
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA optimize")
    report("done", 1, 1)


def _drop_indexes(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        " AND tbl_name IN (SELECT value FROM json_each(:t))",
        {"t": msgspec.json.encode(_RACE_TABLES).decode()},
    ).fetchall()
    for name, _sql in rows:
        conn.execute(f'DROP INDEX "{name}"')  # names come from sqlite_master, not input
    return [sql for _name, sql in rows]


def _load(
    conn: sqlite3.Connection,
    reader: chatdb.Reader,
    people: list[Any],
    summary: ImportSummary,
    report: Progress,
    msg_wm: int,
    att_wm: int,
    source_id: int,
    race: bool,
    now_ns: int,
) -> None:
    report("contacts", 0, 1)
    book = ContactBook(conn)
    book.sync_people(people)

    handle_map = _load_handles(conn, reader, book)
    chat_map = _load_chats(conn, reader, handle_map)
    summary.handles = len(handle_map)
    summary.chats = len(chat_map)
    report("contacts", 1, 1)

    # Newest existing message per chat decides append vs fresh split for conversations.
    chat_max_before = dict(
        conn.execute("SELECT chat_id, MAX(date_ns) FROM messages GROUP BY chat_id").fetchall()
    )
    next_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM messages").fetchone()[0]
    first_new_id = next_id
    new_points: dict[int, list[conv.Point]] = defaultdict(list)
    tapbacks: list[Tapback] = []
    total = reader.count_messages_after(msg_wm)
    done = 0
    max_rowid = msg_wm
    report("messages", 0, total)

    from chatstats.imessage.typedstream import TypedStreamError, extract_text

    insert_sql = (
        "INSERT INTO messages (id, guid, chat_id, handle_id, is_from_me, date_ns, text, subject,"
        " service, kind, group_title, other_handle_id, reply_to_guid, reply_to_part, edited,"
        " unsent, date_edited_ns, is_read, date_read_ns, is_delivered, date_delivered_ns,"
        " is_sent, balloon, effect, is_audio, body_status, source_rowid)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    )
    i_rowid, i_guid = M["ROWID"], M["guid"]
    i_handle, i_from_me, i_date = M["handle_id"], M["is_from_me"], M["date"]
    i_atype, i_aguid, i_emoji = (
        M["associated_message_type"],
        M["associated_message_guid"],
        M["associated_message_emoji"],
    )
    tapback_of = chatdb.tapback
    to_ns = apple_to_unix_ns
    epoch_ns = apple_to_unix_ns(1)  # placeholder date for rows with none: 2001-01-01
    assert epoch_ns is not None
    epoch_ns -= 1_000_000_000

    for chunk in reader.message_chunks(msg_wm):
        max_rowid = chunk[-1][i_rowid]
        if not race:
            chunk = _skip_known(conn, chunk, summary)
        rows = []
        for r in chunk:
            from_me = 1 if r[i_from_me] else 0
            handle_id = None if from_me else handle_map.get(r[i_handle])
            date_ns = to_ns(r[i_date]) or epoch_ns
            tb = tapback_of(r[i_atype])
            if tb is not None:
                target = chatdb.tapback_target(r[i_aguid])
                if target is not None:
                    tapbacks.append(
                        Tapback(
                            r[i_guid],
                            target[0],
                            target[1],
                            tb[0],
                            r[i_emoji],
                            tb[1],
                            handle_id,
                            from_me,
                            date_ns,
                        )
                    )
                    continue
            chat_rowid = r[M_CHAT]
            chat_id = None
            if chat_rowid is not None:
                chat_id = chat_map.get(chat_rowid)
                if chat_id is None:  # a chat created after we read the chat list
                    chat_map.update(_load_chats(conn, reader, handle_map))
                    chat_id = chat_map.get(chat_rowid)
            if chat_id is None:
                summary.orphans += 1

            text, status = _body(r, extract_text, TypedStreamError)
            if status == "corrupt":
                summary.bodies_corrupt += 1
            elif status == "none":
                summary.bodies_empty += 1
            edited = unsent = 0
            date_edited = r[M["date_edited"]]
            if date_edited or r[M["date_retracted"]]:
                flags = chatdb.summary_flags(r[M["message_summary_info"]])
                if flags is None:
                    summary.summaries_unreadable += 1
                    flags = chatdb.SummaryFlags((), ())
                unsent = 1 if (r[M["date_retracted"]] or flags.unsent_parts) else 0
                edited = 1 if (flags.edited_parts or (date_edited and not unsent)) else 0
                if unsent and not text:
                    text = ""
            kind = chatdb.message_kind(r[M["item_type"]], r[M["group_action_type"]])
            if kind == "message":
                summary.messages_added += 1
            else:
                summary.system_events_added += 1
            other = r[M["other_handle"]]
            mid = next_id
            next_id += 1
            rows.append(
                (
                    mid,
                    r[i_guid],
                    chat_id,
                    handle_id,
                    from_me,
                    date_ns,
                    text,
                    r[M["subject"]],
                    r[M["service"]],
                    kind,
                    r[M["group_title"]],
                    handle_map.get(other) if other else None,
                    chatdb.reply_guid(r[M["thread_originator_guid"]]),
                    chatdb.reply_part(r[M["thread_originator_part"]]),
                    edited,
                    unsent,
                    to_ns(date_edited),
                    1 if r[M["is_read"]] else 0,
                    to_ns(r[M["date_read"]]),
                    1 if r[M["is_delivered"]] else 0,
                    to_ns(r[M["date_delivered"]]),
                    1 if r[M["is_sent"]] else 0,
                    r[M["balloon_bundle_id"]],
                    r[M["expressive_send_style_id"]],
                    1 if r[M["is_audio_message"]] else 0,
                    status,
                    r[i_rowid],
                )
            )
            if chat_id is not None:
                new_points[chat_id].append(conv.Point(date_ns, mid))
        conn.executemany(insert_sql, rows)
        done += len(chunk)
        report("messages", done, total)

    report("conversations", 0, len(new_points))
    _assign_conversations(conn, new_points, chat_max_before, summary, now_ns)
    report("conversations", len(new_points), len(new_points))

    report("reactions", 0, len(tapbacks))
    summary.reactions_added = apply_tapbacks(conn, tapbacks)
    report("reactions", len(tapbacks), len(tapbacks))

    max_att = att_wm
    for chunk in reader.attachment_chunks(att_wm):
        max_att = chunk[-1][0]
        summary.attachments_added += _load_attachments(conn, chunk)

    report("search", 0, 1)
    if race:
        conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    else:
        conn.execute(
            "INSERT INTO messages_fts (rowid, text) SELECT id, text FROM messages"
            " WHERE id >= :first AND text <> ''",
            {"first": first_new_id},
        )
    report("search", 1, 1)

    _refresh_chats(conn, list(new_points) if not race else None)
    refresh_counts(conn)
    summary.contacts_created = book.created
    summary.contacts_merged = len(book.merged)
    conn.execute(
        "UPDATE sources SET last_message_rowid = :m, last_attachment_rowid = :a,"
        " imported_at_ns = :t WHERE id = :id",
        {"m": max_rowid, "a": max_att, "t": time.time_ns(), "id": source_id},
    )


def _body(r: tuple[Any, ...], extract_text: Any, error: type[Exception]) -> tuple[str, str]:
    """Text of a message: decoded attributedBody first, the `text` column as fallback."""
    blob = r[M["attributedBody"]]
    column = r[M["text"]]
    if blob:
        try:
            return extract_text(blob).translate(_PLACEHOLDERS), "ok"
        except error:
            return (column or "").translate(_PLACEHOLDERS), "corrupt"
    if column is not None:
        return column.translate(_PLACEHOLDERS), "ok"
    return "", "none"


def _skip_known(
    conn: sqlite3.Connection, chunk: list[tuple[Any, ...]], summary: ImportSummary
) -> list[tuple[Any, ...]]:
    """Drop rows whose GUID is already imported (another source, or a replayed range)."""
    guids = [r[M["guid"]] for r in chunk]
    encoded = msgspec.json.encode(guids).decode()
    known = {
        g
        for (g,) in conn.execute(
            "SELECT guid FROM messages WHERE guid IN (SELECT value FROM json_each(:g))"
            " UNION ALL SELECT guid FROM reactions WHERE guid IN (SELECT value FROM json_each(:g))",
            {"g": encoded},
        )
    }
    if not known:
        return chunk
    summary.duplicates_skipped += len(known)
    return [r for r in chunk if r[M["guid"]] not in known]


def _load_handles(
    conn: sqlite3.Connection, reader: chatdb.Reader, book: ContactBook
) -> dict[int, int]:
    """chat.db handle ROWID → our handle id, creating handles and resolving their contacts."""
    existing = {
        (r[1], r[2]): (r[0], r[3])
        for r in conn.execute("SELECT id, identifier, service, contact_id FROM handles")
    }
    out: dict[int, int] = {}
    for h in reader.handles():
        found = existing.get((h.identifier, h.service))
        contact_id = book.resolve(h.identifier, h.person_centric_id)
        if found is None:
            hid = conn.execute(
                "INSERT INTO handles (identifier, service, contact_id) VALUES (:i, :s, :c)",
                {"i": h.identifier, "s": h.service, "c": contact_id},
            ).lastrowid
            existing[(h.identifier, h.service)] = (hid, contact_id)
        else:
            hid = found[0]
            if found[1] != contact_id:
                conn.execute(
                    "UPDATE handles SET contact_id = :c WHERE id = :id",
                    {"c": contact_id, "id": hid},
                )
        out[h.rowid] = hid
    return out


def _load_chats(
    conn: sqlite3.Connection, reader: chatdb.Reader, handle_map: dict[int, int]
) -> dict[int, int]:
    """chat.db chat ROWID → our chat id; participants replaced by chat.db's current set."""
    participants: dict[int, set[int]] = defaultdict(set)
    for chat_rowid, handle_rowid in reader.chat_handles():
        hid = handle_map.get(handle_rowid)
        if hid is not None:
            participants[chat_rowid].add(hid)
    out: dict[int, int] = {}
    for c in reader.chats():
        members = participants.get(c.rowid, set())
        is_group = chatdb.is_group_chat(c, len(members))
        display = c.display_name or None
        cid = conn.execute(
            "INSERT INTO chats (guid, chat_identifier, service, display_name, is_group)"
            " VALUES (:g, :i, :s, :d, :grp)"
            " ON CONFLICT(guid) DO UPDATE SET display_name = excluded.display_name,"
            " is_group = excluded.is_group, service = excluded.service"
            " RETURNING id",
            {
                "g": c.guid,
                "i": c.chat_identifier,
                "s": c.service,
                "d": display,
                "grp": int(is_group),
            },
        ).fetchone()[0]
        out[c.rowid] = cid
        conn.execute("DELETE FROM chat_participants WHERE chat_id = :c", {"c": cid})
        conn.executemany(
            "INSERT INTO chat_participants (chat_id, handle_id) VALUES (?, ?)",
            [(cid, hid) for hid in sorted(members)],
        )
    return out


def _assign_conversations(
    conn: sqlite3.Connection,
    new_points: dict[int, list[conv.Point]],
    chat_max_before: dict[int, int],
    summary: ImportSummary,
    now_ns: int,
) -> None:
    next_cid = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM conversations").fetchone()[0]
    conv_rows: list[tuple[int, int, int, int, int, int, int | None]] = []
    assign: list[tuple[int, int]] = []
    sealed_before = now_ns - conv.GAP_NS

    def create(chat_id: int, group: conv.Group) -> None:
        nonlocal next_cid
        sealed = group.end_ns < sealed_before
        conv_rows.append(
            (
                next_cid,
                chat_id,
                group.start_ns,
                group.end_ns,
                len(group.message_ids),
                int(sealed),
                now_ns if sealed else None,
            )
        )
        assign.extend((next_cid, mid) for mid in group.message_ids)
        next_cid += 1
        summary.conversations_created += 1

    for chat_id, points in new_points.items():
        points.sort()
        newest_before = chat_max_before.get(chat_id)
        if newest_before is None or points[0].date_ns >= newest_before:
            last = conn.execute(
                "SELECT id, start_ns, end_ns, message_count, sealed FROM conversations"
                " WHERE chat_id = :c ORDER BY end_ns DESC, id DESC LIMIT 1",
                {"c": chat_id},
            ).fetchone()
            plan = conv.append(conv.Open(*last[:4], bool(last[4])) if last else None, points)
            if plan.extend is not None:
                cid, end_ns, ids = plan.extend
                conn.execute(
                    "UPDATE conversations SET end_ns = :e, message_count = message_count + :n"
                    " WHERE id = :id",
                    {"e": end_ns, "n": len(ids), "id": cid},
                )
                assign.extend((cid, mid) for mid in ids)
            for group in plan.create:
                create(chat_id, group)
            continue
        # Older messages arrived: fresh split of the whole chat, keeping unchanged ids.
        rows = conn.execute(
            "SELECT date_ns, id, conversation_id FROM messages WHERE chat_id = :c",
            {"c": chat_id},
        ).fetchall()
        existing: dict[int, set[int]] = defaultdict(set)
        for _d, mid, cid in rows:
            if cid is not None:
                existing[cid].add(mid)
        all_points = sorted(conv.Point(d, mid) for d, mid, _c in rows)
        plan_r = conv.reconcile(
            conv.split(all_points), {k: frozenset(v) for k, v in existing.items()}
        )
        if plan_r.delete:
            ids = msgspec.json.encode(plan_r.delete).decode()
            conn.execute(
                "UPDATE messages SET conversation_id = NULL WHERE conversation_id IN"
                " (SELECT value FROM json_each(:ids))",
                {"ids": ids},
            )
            conn.execute(
                "DELETE FROM conversations WHERE id IN (SELECT value FROM json_each(:ids))",
                {"ids": ids},
            )
            summary.conversations_removed += len(plan_r.delete)
        for group in plan_r.create:
            create(chat_id, group)
    conn.executemany(
        "INSERT INTO conversations (id, chat_id, start_ns, end_ns, message_count, sealed,"
        " sealed_at_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
        conv_rows,
    )
    conn.executemany("UPDATE messages SET conversation_id = ? WHERE id = ?", assign)


def _load_attachments(conn: sqlite3.Connection, chunk: list[tuple[Any, ...]]) -> int:
    guids = msgspec.json.encode([r[-1] for r in chunk]).decode()
    ids = dict(
        conn.execute(
            "SELECT guid, id FROM messages WHERE guid IN (SELECT value FROM json_each(:g))",
            {"g": guids},
        ).fetchall()
    )
    per_message: dict[int, int] = defaultdict(int)
    rows = []
    A = chatdb.A
    for r in chunk:
        mid = ids.get(r[-1])
        m = _AT_PREFIX.match(r[A["guid"]] or "")
        if m:
            position = int(m.group(1))
        else:
            position = per_message[mid or 0]
        per_message[mid or 0] += 1
        rows.append(
            (
                r[A["guid"]],
                mid,
                position,
                r[A["filename"]],
                r[A["transfer_name"]],
                r[A["mime_type"]],
                r[A["uti"]],
                r[A["total_bytes"]] or 0,
                1 if r[A["is_sticker"]] else 0,
                apple_seconds_to_unix_ns(r[A["created_date"]]),
            )
        )
    before = conn.total_changes
    conn.executemany(
        "INSERT INTO attachments (guid, message_id, position, filename, transfer_name,"
        " mime_type, uti, total_bytes, is_sticker, created_ns) VALUES (?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT(guid) DO NOTHING",
        rows,
    )
    return conn.total_changes - before


def _refresh_chats(conn: sqlite3.Connection, chat_ids: list[int] | None) -> None:
    """Denormalised per-chat counts and latest message, so the chat list is one indexed read."""
    where = "" if chat_ids is None else "WHERE chats.id IN (SELECT value FROM json_each(:ids))"
    conn.execute(
        f"""
        UPDATE chats SET
            message_count = (SELECT count(*) FROM messages m WHERE m.chat_id = chats.id),
            last_message_ns = (SELECT max(date_ns) FROM messages m WHERE m.chat_id = chats.id),
            last_message_id = (SELECT m.id FROM messages m WHERE m.chat_id = chats.id
                               ORDER BY m.date_ns DESC, m.id DESC LIMIT 1)
        {where}
        """,
        {} if chat_ids is None else {"ids": msgspec.json.encode(chat_ids).decode()},
    )
