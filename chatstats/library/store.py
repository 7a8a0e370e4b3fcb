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
    return conn.execute(sql, params).fetchone()


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


class _NewestFirst:
    def __init__(self, columns: str, table: str) -> None:
        order = "ORDER BY last_message_ns DESC, id DESC LIMIT :limit"
        self.dated_first = (
            f"SELECT {columns} FROM {table} WHERE last_message_ns IS NOT NULL {order}"
        )
        self.dated_after = (
            f"SELECT {columns} FROM {table} WHERE last_message_ns IS NOT NULL"
            f" AND (last_message_ns, id) < (:ns, :id) {order}"
        )
        self.undated = (
            f"SELECT {columns} FROM {table} WHERE last_message_ns IS NULL AND id < :id"
            " ORDER BY id DESC LIMIT :limit"
        )

    def page(
        self,
        conn: sqlite3.Connection,
        limit: int,
        cursor: tuple[int | None, int] | None,
    ) -> list[sqlite3.Row]:
        """`cursor` is (last_message_ns, id) of the previous page's last row, or None."""
        rows: list[sqlite3.Row] = []
        undated_below = MAX_ID
        if cursor is None:
            rows = _all(conn, self.dated_first, {"limit": limit})
        elif cursor[0] is not None:
            rows = _all(conn, self.dated_after, {"ns": cursor[0], "id": cursor[1], "limit": limit})
        else:
            undated_below = cursor[1]
        if len(rows) < limit:
            rows += _all(conn, self.undated, {"id": undated_below, "limit": limit - len(rows)})
        return rows


# ---------------------------------------------------------------------------------------------
# Chats

_CHAT_COLUMNS = (
    "id, guid, chat_identifier, service, display_name, is_group, message_count, last_message_ns"
)
_CHATS = _NewestFirst(_CHAT_COLUMNS, "chats")


def recent_chats(
    conn: sqlite3.Connection, limit: int, cursor: tuple[int | None, int] | None
) -> list[sqlite3.Row]:
    return _CHATS.page(conn, limit, cursor)


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
_SEARCH = {
    (in_chat, after): (
        "WITH hits AS (SELECT m.id FROM messages_fts"
        " JOIN messages m ON m.id = messages_fts.rowid"
        " WHERE messages_fts MATCH :match"
        + (" AND m.chat_id = :chat_id" if in_chat else "")
        + (" AND (m.date_ns, m.id) < (:ns, :id)" if after else "")
        + f" {_NEWEST}) "
        + _MESSAGE_SELECT.replace(
            " FROM messages m", " FROM hits JOIN messages m ON m.id = hits.id"
        )
        + " ORDER BY m.date_ns DESC, m.id DESC"
    )
    for in_chat in (False, True)
    for after in (False, True)
}


def search_messages(
    conn: sqlite3.Connection,
    match: str,
    chat_id: int | None,
    limit: int,
    cursor: tuple[int, int] | None,
) -> list[sqlite3.Row]:
    """Matching messages newest first; `cursor` is (date_ns, id) of the previous page's last."""
    params: dict[str, Any] = {"match": match, "limit": limit}
    if chat_id is not None:
        params["chat_id"] = chat_id
    if cursor is not None:
        params["ns"], params["id"] = cursor
    return _all(conn, _SEARCH[(chat_id is not None, cursor is not None)], params)


# ---------------------------------------------------------------------------------------------
# Contacts

_CONTACT_COLUMNS = "id, name, message_count, last_message_ns"
_CONTACTS = _NewestFirst(_CONTACT_COLUMNS, "contacts")


def recent_contacts(
    conn: sqlite3.Connection, limit: int, cursor: tuple[int | None, int] | None
) -> list[sqlite3.Row]:
    return _CONTACTS.page(conn, limit, cursor)


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
