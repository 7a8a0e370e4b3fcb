"""SQL for the read side of the iMessage domain: chats, messages, contacts, conversations.

Every function takes a reader connection and returns rows, so the service can run all the
statements a page needs inside one `Database.read` hop. A list of ids is bound as one JSON
array and expanded with `json_each`, which keeps every statement a constant string with named
parameters however long the list is.

Paging is keyset: a page continues strictly after the sort key of the previous page's last
row, which an index can seek to, so a page deep in history costs what the first one does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import msgspec

# Stands in for "no upper bound" in an id comparison (SQLite's largest integer).
MAX_ID = 2**63 - 1

_json = msgspec.json.Encoder()


def _ids(values: Iterable[Any]) -> str:
    return _json.encode(list(values)).decode()


def _all(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> list[sqlite3.Row]:
    return conn.execute(sql, params).fetchall()


def _one(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(sql, params).fetchone()
    return row


# ---------------------------------------------------------------------------------------------
# Counts


def counts(conn: sqlite3.Connection) -> sqlite3.Row:
    row = _one(
        conn,
        "SELECT (SELECT count(*) FROM chats) AS chats,"
        " (SELECT count(*) FROM messages) AS messages,"
        " (SELECT count(*) FROM contacts) AS contacts,"
        " (SELECT count(*) FROM conversations) AS conversations",
        {},
    )
    assert row is not None
    return row


def last_import_summary(conn: sqlite3.Connection) -> str | None:
    row = _one(
        conn,
        "SELECT summary FROM import_runs WHERE state = 'complete' ORDER BY id DESC LIMIT 1",
        {},
    )
    return None if row is None else row["summary"]


# ---------------------------------------------------------------------------------------------
# Newest-first lists whose sort time may be NULL (chats and contacts without messages)
#
# Rows with a time come first, newest first, then rows without one by id descending. The two
# parts are separate statements so each can walk its index; a cursor on a dated row continues
# in the dated part and spills into the undated part when that runs out.
#
# A page read as of a snapshot (see library.paging) leaves out rows created since (id above
# the snapshot's) and rows whose time moved since ("moved": touched by a message newer than
# the snapshot's); each moved row is merged back in at the time it had then. Moved rows are
# the few touched between two pages, so this costs a handful of indexed lookups.


class _NewestFirst:
    def __init__(self, columns: str, table: str, moved_sql: str) -> None:
        """`moved_sql` gives (id, time, ...) of the rows a message newer than the snapshot
        touched; the row's time then is the latest of the times (NULL: none)."""
        order = "ORDER BY last_message_ns DESC, id DESC LIMIT :limit"
        # `+id`: the bound is a filter, never a reason to walk the primary key instead.
        kept = "+id <= :rows AND id NOT IN (SELECT value FROM json_each(:moved))"
        self.dated_first = (
            f"SELECT {columns} FROM {table} WHERE last_message_ns IS NOT NULL AND {kept} {order}"
        )
        self.dated_after = (
            f"SELECT {columns} FROM {table} WHERE last_message_ns IS NOT NULL"
            f" AND (last_message_ns, id) < (:ns, :id) AND {kept} {order}"
        )
        self.undated = (
            f"SELECT {columns} FROM {table} WHERE last_message_ns IS NULL AND id < :id"
            f" AND {kept} ORDER BY id DESC LIMIT :limit"
        )
        self.by_ids = (
            f"SELECT {columns} FROM {table} WHERE id IN (SELECT value FROM json_each(:ids))"
        )
        self.moved_sql = moved_sql

    def page(
        self,
        conn: sqlite3.Connection,
        limit: int,
        cursor: tuple[int | None, int] | None,
        snapshot: tuple[int, int] | None = None,
    ) -> list[tuple[int | None, sqlite3.Row]]:
        """(sort time, row) of one page, the time being the one the row had in `snapshot`.

        `cursor` is (time, id) of the previous page's last row, or None; `snapshot` is
        (newest message id, newest row id) as the walk's first page saw them, or None for the
        list as it is now.
        """
        then: dict[int, int | None] = {}
        rows_max = MAX_ID
        if snapshot is not None:
            rows_max = snapshot[1]
            params = {"messages": snapshot[0], "rows": rows_max}
            for row_id, *times in _all(conn, self.moved_sql, params):
                known = [t for t in times if t is not None]
                then[row_id] = max(known) if known else None
        moved: list[sqlite3.Row] = []
        if then:
            moved = _all(conn, self.by_ids, {"ids": _ids(then)})
        kept = {"rows": rows_max, "moved": _ids(then), "limit": limit}

        def before(ns: int | None, row_id: int) -> bool:
            """Whether (ns, id) sorts after the cursor (dated before undated, newest first)."""
            if cursor is None:
                return True
            if cursor[0] is None:
                return ns is None and row_id < cursor[1]
            return ns is None or (ns, row_id) < (cursor[0], cursor[1])

        extra = [(then[r["id"]], r) for r in moved if before(then[r["id"]], r["id"])]
        out: list[tuple[int | None, sqlite3.Row]] = []
        undated_below = MAX_ID
        if cursor is None or cursor[0] is not None:
            if cursor is None:
                rows = _all(conn, self.dated_first, kept)
            else:
                rows = _all(conn, self.dated_after, {**kept, "ns": cursor[0], "id": cursor[1]})
            dated = [(r["last_message_ns"], r) for r in rows]
            dated += [(ns, r) for ns, r in extra if ns is not None]
            dated.sort(key=lambda pair: (pair[0], pair[1]["id"]), reverse=True)
            out = dated[:limit]
        else:
            undated_below = cursor[1]
        if len(out) < limit:
            rows = _all(
                conn, self.undated, {**kept, "id": undated_below, "limit": limit - len(out)}
            )
            undated = [(None, r) for r in rows] + [(ns, r) for ns, r in extra if ns is None]
            undated.sort(key=lambda pair: pair[1]["id"], reverse=True)
            out += undated[: limit - len(out)]
        return out


_SNAPSHOT = {
    table: "SELECT (SELECT coalesce(max(id), 0) FROM messages),"
    f" (SELECT coalesce(max(id), 0) FROM {table})"
    for table in ("chats", "contacts")
}


def snapshot(conn: sqlite3.Connection, table: str) -> tuple[int, int]:
    """(newest message id, newest row id of `table`): what a walk's first page saw."""
    row = _one(conn, _SNAPSHOT[table], {})
    assert row is not None
    return (row[0], row[1])


# ---------------------------------------------------------------------------------------------
# Chats

_CHAT_COLUMNS = (
    "id, guid, chat_identifier, service, display_name, is_group, message_count, last_message_ns"
)
# Chats a message newer than the snapshot touched, with the time of their newest message then
# (the index on (chat_id, date_ns, id) is walked from the top until an old enough id).
_CHATS_MOVED = (
    "SELECT c.id, (SELECT m.date_ns FROM messages m WHERE m.chat_id = c.id AND m.id <= :messages"
    " ORDER BY m.date_ns DESC, m.id DESC LIMIT 1) AS ns"
    " FROM chats c WHERE c.id <= :rows"
    " AND c.id IN (SELECT chat_id FROM messages WHERE id > :messages)"
)
_CHATS = _NewestFirst(_CHAT_COLUMNS, "chats", _CHATS_MOVED)


def recent_chats(
    conn: sqlite3.Connection,
    limit: int,
    cursor: tuple[int | None, int] | None,
    snapshot: tuple[int, int] | None = None,
) -> list[tuple[int | None, sqlite3.Row]]:
    return _CHATS.page(conn, limit, cursor, snapshot)


def chat(conn: sqlite3.Connection, chat_id: int) -> sqlite3.Row | None:
    return _one(conn, f"SELECT {_CHAT_COLUMNS} FROM chats WHERE id = :id", {"id": chat_id})


def chat_exists(conn: sqlite3.Connection, chat_id: int) -> bool:
    return _one(conn, "SELECT 1 FROM chats WHERE id = :id", {"id": chat_id}) is not None


def participants(conn: sqlite3.Connection, chat_ids: Iterable[int]) -> list[sqlite3.Row]:
    """Participants of the given chats, by handle id within a chat (Apple's join order)."""
    return _all(
        conn,
        "SELECT cp.chat_id, h.id AS handle_id, h.identifier, h.contact_id, c.name"
        " FROM chat_participants cp"
        " JOIN handles h ON h.id = cp.handle_id"
        " LEFT JOIN contacts c ON c.id = h.contact_id"
        " WHERE cp.chat_id IN (SELECT value FROM json_each(:ids))"
        " ORDER BY cp.chat_id, h.id",
        {"ids": _ids(chat_ids)},
    )


# ---------------------------------------------------------------------------------------------
# Messages

_MESSAGE_SELECT = (
    "SELECT m.id, m.guid, m.chat_id, m.conversation_id, m.text, m.date_ns, m.is_from_me,"
    " m.handle_id, h.identifier, h.contact_id, c.name,"
    " m.reply_to_guid, m.edited, m.unsent, m.kind, m.group_title"
    " FROM messages m"
    " LEFT JOIN handles h ON h.id = m.handle_id"
    " LEFT JOIN contacts c ON c.id = h.contact_id"
)
_NEWEST = "ORDER BY m.date_ns DESC, m.id DESC LIMIT :limit"
_OLDEST = "ORDER BY m.date_ns, m.id LIMIT :limit"

_CHAT_MESSAGES_FIRST = f"{_MESSAGE_SELECT} WHERE m.chat_id = :owner {_NEWEST}"
_CHAT_MESSAGES_BEFORE = (
    f"{_MESSAGE_SELECT} WHERE m.chat_id = :owner AND (m.date_ns, m.id) < (:ns, :id) {_NEWEST}"
)
_CONVERSATION_MESSAGES_FIRST = f"{_MESSAGE_SELECT} WHERE m.conversation_id = :owner {_OLDEST}"
_CONVERSATION_MESSAGES_AFTER = (
    f"{_MESSAGE_SELECT} WHERE m.conversation_id = :owner"
    f" AND (m.date_ns, m.id) > (:ns, :id) {_OLDEST}"
)
_CONVERSATION_MESSAGES_BEFORE = (
    f"{_MESSAGE_SELECT} WHERE m.conversation_id = :owner"
    f" AND (m.date_ns, m.id) < (:ns, :id) {_NEWEST}"
)


def message_position(conn: sqlite3.Connection, message_id: int) -> sqlite3.Row | None:
    """Where a message sits: what a cursor needs to continue after it, and what owns it."""
    return _one(
        conn,
        "SELECT id, chat_id, conversation_id, date_ns FROM messages WHERE id = :id",
        {"id": message_id},
    )


def chat_messages(
    conn: sqlite3.Connection, chat_id: int, limit: int, cursor: tuple[int, int] | None
) -> list[sqlite3.Row]:
    """Newest first; `cursor` is (date_ns, id) of the previous page's last message."""
    if cursor is None:
        return _all(conn, _CHAT_MESSAGES_FIRST, {"owner": chat_id, "limit": limit})
    params = {"owner": chat_id, "ns": cursor[0], "id": cursor[1], "limit": limit}
    return _all(conn, _CHAT_MESSAGES_BEFORE, params)


def messages_by_ids(conn: sqlite3.Connection, ids: Iterable[int]) -> list[sqlite3.Row]:
    """Specific messages (what live sync just wrote or changed), oldest first."""
    return _all(
        conn,
        f"{_MESSAGE_SELECT} WHERE m.id IN (SELECT value FROM json_each(:ids)) {_OLDEST}",
        {"ids": _ids(ids), "limit": -1},
    )


def chats_by_ids(conn: sqlite3.Connection, ids: Iterable[int]) -> list[sqlite3.Row]:
    return _all(
        conn,
        f"SELECT {_CHAT_COLUMNS} FROM chats WHERE id IN (SELECT value FROM json_each(:ids))",
        {"ids": _ids(ids)},
    )


def contacts_by_ids(conn: sqlite3.Connection, ids: Iterable[int]) -> list[sqlite3.Row]:
    return _all(
        conn,
        f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE id IN (SELECT value FROM json_each(:ids))",
        {"ids": _ids(ids)},
    )


def conversation_messages(
    conn: sqlite3.Connection,
    conversation_id: int,
    limit: int,
    cursor: tuple[int, int] | None,
    *,
    backward: bool,
) -> list[sqlite3.Row]:
    """Oldest first from the start, or the `limit` messages on one side of `cursor`.

    Walking backward returns the messages newest first (the caller restores the order).
    """
    if cursor is None:
        return _all(conn, _CONVERSATION_MESSAGES_FIRST, {"owner": conversation_id, "limit": limit})
    params = {"owner": conversation_id, "ns": cursor[0], "id": cursor[1], "limit": limit}
    sql = _CONVERSATION_MESSAGES_BEFORE if backward else _CONVERSATION_MESSAGES_AFTER
    return _all(conn, sql, params)


def reactions(conn: sqlite3.Connection, target_guids: Iterable[str]) -> list[sqlite3.Row]:
    """Tapbacks a person sees now on the given messages, all parts, oldest first."""
    return _all(
        conn,
        "SELECT r.target_guid, r.type, r.emoji, r.is_from_me,"
        " r.handle_id, h.identifier, h.contact_id, c.name"
        " FROM reactions r"
        " LEFT JOIN handles h ON h.id = r.handle_id"
        " LEFT JOIN contacts c ON c.id = h.contact_id"
        " WHERE r.target_guid IN (SELECT value FROM json_each(:guids)) AND r.active = 1"
        " ORDER BY r.date_ns, r.id",
        {"guids": _ids(target_guids)},
    )


def attachments(conn: sqlite3.Connection, message_ids: Iterable[int]) -> list[sqlite3.Row]:
    return _all(
        conn,
        "SELECT message_id, filename, transfer_name, mime_type, total_bytes"
        " FROM attachments"
        " WHERE message_id IN (SELECT value FROM json_each(:ids))"
        " ORDER BY message_id, position, id",
        {"ids": _ids(message_ids)},
    )


# ---------------------------------------------------------------------------------------------
# Full-text search


def match_expression(terms: Iterable[str]) -> str:
    """An FTS5 query matching rows that contain every term, each taken literally.

    Each term becomes an FTS5 string (its double quotes doubled), so operators, column
    filters, parentheses and stars typed by a person are just text.
    """
    return " AND ".join('"' + term.replace('"', '""') + '"' for term in terms)


# Two steps: find the page's ids using only the FTS index and each match's date, then read
# the full rows (text, sender) for those ids alone. Reading full rows for every match before
# sorting was 2.5x slower for common words (a word in a third of 282k messages: 180 -> 68 ms).
# One statement per combination of filters, built once: the filters are fixed SQL, their
# values named parameters.
_SEARCH_FILTERS = (
    ("chat_id", " AND m.chat_id = :chat_id"),
    ("contact_id", " AND m.handle_id IN (SELECT id FROM handles WHERE contact_id = :contact_id)"),
    ("since_ns", " AND m.date_ns >= :since_ns"),
    ("until_ns", " AND m.date_ns < :until_ns"),
    ("ns", " AND (m.date_ns, m.id) < (:ns, :id)"),
)
_SEARCH: dict[tuple[bool, ...], str] = {}


def _search_sql(key: tuple[bool, ...]) -> str:
    sql = _SEARCH.get(key)
    if sql is None:
        where = "".join(clause for (_n, clause), on in zip(_SEARCH_FILTERS, key, strict=True) if on)
        sql = _SEARCH[key] = (
            "WITH hits AS (SELECT m.id FROM messages_fts"
            " JOIN messages m ON m.id = messages_fts.rowid"
            f" WHERE messages_fts MATCH :match{where} {_NEWEST}) "
            + _MESSAGE_SELECT.replace(
                " FROM messages m", " FROM hits JOIN messages m ON m.id = hits.id"
            )
            + " ORDER BY m.date_ns DESC, m.id DESC"
        )
    return sql


def search_messages(
    conn: sqlite3.Connection,
    match: str,
    chat_id: int | None,
    limit: int,
    cursor: tuple[int, int] | None,
    *,
    contact_id: int | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> list[sqlite3.Row]:
    """Matching messages newest first; `cursor` is (date_ns, id) of the previous page's last.
    `contact_id` keeps messages that contact sent (as in the other search modes); `since_ns`
    and `until_ns` bound the message time (until excluded)."""
    params: dict[str, Any] = {"match": match, "limit": limit}
    values = {
        "chat_id": chat_id,
        "contact_id": contact_id,
        "since_ns": since_ns,
        "until_ns": until_ns,
    }
    for name, value in values.items():
        if value is not None:
            params[name] = value
    if cursor is not None:
        params["ns"], params["id"] = cursor
    key = (*(v is not None for v in values.values()), cursor is not None)
    return _all(conn, _search_sql(key), params)


# ---------------------------------------------------------------------------------------------
# Contacts

_CONTACT_COLUMNS = "id, name, message_count, last_message_ns"
# Contacts a message newer than the snapshot touched (theirs, or mine in a 1:1 chat with
# them: what `ingest.batch.refresh_contacts` counts), with their latest such time then.
_CONTACT_LAST_THEIRS = (
    "SELECT max((SELECT m.date_ns FROM messages m WHERE m.handle_id = h.id"
    " AND m.is_from_me = 0 AND m.chat_id IS NOT NULL AND m.id <= :messages"
    " ORDER BY m.date_ns DESC LIMIT 1)) FROM handles h WHERE h.contact_id = k.id"
)
# Per 1:1 chat, the index on (chat_id, date_ns, id) is walked from the top to my newest.
_CONTACT_LAST_MINE = (
    "SELECT max((SELECT m.date_ns FROM messages m WHERE m.chat_id = c.id AND m.is_from_me = 1"
    " AND m.id <= :messages ORDER BY m.date_ns DESC, m.id DESC LIMIT 1))"
    " FROM handles h JOIN chat_participants p ON p.handle_id = h.id"
    " JOIN chats c ON c.id = p.chat_id AND c.is_group = 0 WHERE h.contact_id = k.id"
)
_CONTACTS_MOVED = (
    "WITH moved(id) AS ("
    " SELECT h.contact_id FROM messages m JOIN handles h ON h.id = m.handle_id"
    " WHERE m.id > :messages AND m.is_from_me = 0 AND m.chat_id IS NOT NULL"
    " UNION SELECT h.contact_id FROM messages m"
    " JOIN chats c ON c.id = m.chat_id AND c.is_group = 0"
    " JOIN chat_participants p ON p.chat_id = c.id JOIN handles h ON h.id = p.handle_id"
    " WHERE m.id > :messages AND m.is_from_me = 1)"
    f" SELECT k.id, ({_CONTACT_LAST_THEIRS}), ({_CONTACT_LAST_MINE})"
    " FROM contacts k WHERE k.id <= :rows AND k.id IN (SELECT id FROM moved)"
)
_CONTACTS = _NewestFirst(_CONTACT_COLUMNS, "contacts", _CONTACTS_MOVED)


def recent_contacts(
    conn: sqlite3.Connection,
    limit: int,
    cursor: tuple[int | None, int] | None,
    snapshot: tuple[int, int] | None = None,
) -> list[tuple[int | None, sqlite3.Row]]:
    return _CONTACTS.page(conn, limit, cursor, snapshot)


def contact_cursor(conn: sqlite3.Connection, contact_id: int) -> sqlite3.Row | None:
    return _one(conn, "SELECT id, last_message_ns FROM contacts WHERE id = :id", {"id": contact_id})


def contact_identifiers(conn: sqlite3.Connection, contact_ids: Iterable[int]) -> list[sqlite3.Row]:
    """The distinct addresses (as Apple stores them) of each contact's handles."""
    return _all(
        conn,
        "SELECT DISTINCT contact_id, identifier FROM handles"
        " WHERE contact_id IN (SELECT value FROM json_each(:ids))"
        " ORDER BY contact_id, identifier",
        {"ids": _ids(contact_ids)},
    )


# ---------------------------------------------------------------------------------------------
# Conversations

_CONVERSATION_COLUMNS = "id, chat_id, start_ns, end_ns, message_count, sealed"
_CONVERSATIONS_ORDER = "ORDER BY start_ns DESC, id DESC LIMIT :limit"
_CONVERSATIONS = {
    (in_chat, after): (
        f"SELECT {_CONVERSATION_COLUMNS} FROM conversations"
        + (" WHERE chat_id = :chat_id" if in_chat else " WHERE 1")
        + (" AND (start_ns, id) < (:ns, :id)" if after else "")
        + f" {_CONVERSATIONS_ORDER}"
    )
    for in_chat in (False, True)
    for after in (False, True)
}


def conversation(conn: sqlite3.Connection, conversation_id: int) -> sqlite3.Row | None:
    return _one(
        conn,
        f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = :id",
        {"id": conversation_id},
    )


def removed_conversation(conn: sqlite3.Connection, conversation_id: int) -> sqlite3.Row | None:
    """The tombstone of a conversation a fresh split merged into another, if it is one."""
    return _one(
        conn,
        "SELECT id, chat_id, merged_into FROM removed_conversations WHERE id = :id",
        {"id": conversation_id},
    )


def recent_conversations(
    conn: sqlite3.Connection,
    chat_id: int | None,
    limit: int,
    cursor: tuple[int, int] | None,
) -> list[sqlite3.Row]:
    """Newest first by start; `cursor` is (start_ns, id) of the previous page's last."""
    params: dict[str, Any] = {"limit": limit}
    if chat_id is not None:
        params["chat_id"] = chat_id
    if cursor is not None:
        params["ns"], params["id"] = cursor
    return _all(conn, _CONVERSATIONS[(chat_id is not None, cursor is not None)], params)
