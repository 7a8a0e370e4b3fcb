"""The SQL of the context retrievers and of the context definitions table.

Why its own store: the retrievers read across domains (iMessage conversations and messages,
analysis results, the chatbot's documents), and the chatbot sits above `context` in the
layers, so its documents are read here with plain SQL rather than through its store. Every
query is bounded (a LIMIT, or one conversation), values are bound by name, and nothing here
writes but the definitions seed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

MAX_ID = 2**63 - 1


def _ids(values: Iterable[int]) -> str:
    return json.dumps(list(values))


# ---------------------------------------------------------------------------------------------
# Scope


def chat_exists(conn: sqlite3.Connection, chat_id: int) -> bool:
    row = conn.execute("SELECT 1 FROM chats WHERE id = :id", {"id": chat_id}).fetchone()
    return row is not None


def contact_exists(conn: sqlite3.Connection, contact_id: int) -> bool:
    row = conn.execute("SELECT 1 FROM contacts WHERE id = :id", {"id": contact_id}).fetchone()
    return row is not None


def conversation_chat(conn: sqlite3.Connection, conversation_id: int) -> int | None:
    row = conn.execute(
        "SELECT chat_id FROM conversations WHERE id = :id", {"id": conversation_id}
    ).fetchone()
    return None if row is None else int(row[0])


def contact_chats(conn: sqlite3.Connection, contact_id: int) -> list[int]:
    """Every chat the contact is in (at any of their addresses), 1:1 and groups."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT cp.chat_id FROM chat_participants cp"
            " JOIN handles h ON h.id = cp.handle_id WHERE h.contact_id = :c ORDER BY cp.chat_id",
            {"c": contact_id},
        )
    ]


def me_name(conn: sqlite3.Connection) -> str | None:
    """The user's own name: the AddressBook's "me" card, when it has one."""
    row = conn.execute(
        "SELECT name FROM contacts WHERE is_me = 1 AND name IS NOT NULL AND trim(name) <> ''"
        " ORDER BY id LIMIT 1"
    ).fetchone()
    return None if row is None else str(row[0])


def contact_name(conn: sqlite3.Connection, contact_id: int) -> str | None:
    row = conn.execute("SELECT name FROM contacts WHERE id = :id", {"id": contact_id}).fetchone()
    return None if row is None else row[0]


def participants(conn: sqlite3.Connection, chat_ids: list[int]) -> list[sqlite3.Row]:
    """People in the chats (one row per contact, or per handle without one), never me."""
    return conn.execute(
        "SELECT DISTINCT h.contact_id, coalesce(c.name, '') AS name,"
        " CASE WHEN h.contact_id IS NULL THEN h.id END AS handle_id"
        " FROM chat_participants cp JOIN handles h ON h.id = cp.handle_id"
        " LEFT JOIN contacts c ON c.id = h.contact_id"
        " WHERE cp.chat_id IN (SELECT value FROM json_each(:ids))"
        " AND coalesce(c.is_me, 0) = 0 ORDER BY h.contact_id IS NULL, c.name, h.id",
        {"ids": _ids(chat_ids)},
    ).fetchall()


# ---------------------------------------------------------------------------------------------
# Conversations and messages


def conversations(conn: sqlite3.Connection, chat_ids: list[int], limit: int) -> list[sqlite3.Row]:
    """Newest start first."""
    return conn.execute(
        "SELECT id, chat_id, start_ns, end_ns, message_count FROM conversations"
        " WHERE chat_id IN (SELECT value FROM json_each(:ids))"
        " ORDER BY start_ns DESC, id DESC LIMIT :limit",
        {"ids": _ids(chat_ids), "limit": limit},
    ).fetchall()


def conversations_by_ids(conn: sqlite3.Connection, ids: list[int]) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT id, chat_id, start_ns, end_ns, message_count FROM conversations"
        " WHERE id IN (SELECT value FROM json_each(:ids))",
        {"ids": _ids(ids)},
    ).fetchall()


def count_conversations(conn: sqlite3.Connection, chat_ids: list[int]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM conversations WHERE chat_id IN (SELECT value FROM json_each(:ids))",
        {"ids": _ids(chat_ids)},
    ).fetchone()
    return int(row[0])


def recent_messages(conn: sqlite3.Connection, chat_ids: list[int], limit: int) -> sqlite3.Cursor:
    """Newest first, with what a transcript line needs (analysis.transcript.message_body)."""
    return conn.execute(
        "SELECT m.id, m.chat_id, m.date_ns, m.is_from_me, m.handle_id, m.text, m.kind, m.unsent,"
        " m.body_status, c.name,"
        " (SELECT count(*) FROM attachments a WHERE a.message_id = m.id) AS n_attachments"
        " FROM messages m"
        " LEFT JOIN handles h ON h.id = m.handle_id"
        " LEFT JOIN contacts c ON c.id = h.contact_id"
        " WHERE m.chat_id IN (SELECT value FROM json_each(:ids)) AND m.kind = 'message'"
        " ORDER BY m.date_ns DESC, m.id DESC LIMIT :limit",
        {"ids": _ids(chat_ids), "limit": limit},
    )


def count_messages(conn: sqlite3.Connection, chat_ids: list[int]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM messages WHERE chat_id IN (SELECT value FROM json_each(:ids))"
        " AND kind = 'message'",
        {"ids": _ids(chat_ids)},
    ).fetchone()
    return int(row[0])


# ---------------------------------------------------------------------------------------------
# Analyses and documents


def analyses(
    conn: sqlite3.Connection,
    *,
    chat_ids: list[int] | None,
    conversation_id: int | None,
    passes: list[str] | None,
    include_stale: bool,
    limit: int,
) -> list[sqlite3.Row]:
    """Newest conversation first, then by pass name; the newest version of each pass."""
    return conn.execute(
        "SELECT a.id, a.conversation_id, a.pass, a.pass_version, a.result, a.stale,"
        " c.start_ns, c.end_ns, c.message_count"
        " FROM analyses a JOIN conversations c ON c.id = a.conversation_id"
        " WHERE (:cid IS NULL OR a.conversation_id = :cid)"
        " AND (:chats IS NULL OR a.chat_id IN (SELECT value FROM json_each(:chats)))"
        " AND (:passes IS NULL OR a.pass IN (SELECT value FROM json_each(:passes)))"
        " AND (:stale OR a.stale = 0)"
        " AND a.pass_version = (SELECT max(b.pass_version) FROM analyses b"
        "   WHERE b.conversation_id = a.conversation_id AND b.pass = a.pass)"
        " ORDER BY c.start_ns DESC, c.id DESC, a.pass LIMIT :limit",
        {
            "cid": conversation_id,
            "chats": None if chat_ids is None else _ids(chat_ids),
            "passes": None if passes is None else json.dumps(passes),
            "stale": int(include_stale),
            "limit": limit,
        },
    ).fetchall()


def documents(
    conn: sqlite3.Connection, chat_ids: list[int], contact_id: int | None, limit: int
) -> list[sqlite3.Row]:
    """Documents whose contexts name one of the chats (or the contact), newest first."""
    return conn.execute(
        "SELECT d.id, d.title, d.content, d.created_ns FROM documents d"
        " WHERE EXISTS (SELECT 1 FROM document_contexts x WHERE x.document_id = d.id"
        "   AND (x.chat_id IN (SELECT value FROM json_each(:chats)) OR x.contact_id = :contact))"
        " ORDER BY d.created_ns DESC, d.id DESC LIMIT :limit",
        {"chats": _ids(chat_ids), "contact": contact_id, "limit": limit},
    ).fetchall()


# ---------------------------------------------------------------------------------------------
# Definitions


def definition_hashes(conn: sqlite3.Connection) -> dict[str, str]:
    return {r[0]: r[1] for r in conn.execute("SELECT name, source_hash FROM context_definitions")}


def upsert_definition(conn: sqlite3.Connection, row: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO context_definitions (name, title, description, scopes, retrievers,"
        " position, source_hash, seeded_ns) VALUES (:name, :title, :description, :scopes,"
        " :retrievers, :position, :source_hash, :seeded_ns)"
        " ON CONFLICT (name) DO UPDATE SET title = excluded.title,"
        " description = excluded.description, scopes = excluded.scopes,"
        " retrievers = excluded.retrievers, position = excluded.position,"
        " source_hash = excluded.source_hash, seeded_ns = excluded.seeded_ns",
        row,
    )


def set_position(conn: sqlite3.Connection, name: str, position: int) -> None:
    conn.execute(
        "UPDATE context_definitions SET position = :p WHERE name = :n AND position <> :p",
        {"n": name, "p": position},
    )


def delete_definitions_except(conn: sqlite3.Connection, names: list[str]) -> int:
    return conn.execute(
        "DELETE FROM context_definitions WHERE name NOT IN (SELECT value FROM json_each(:n))",
        {"n": json.dumps(names)},
    ).rowcount


def definitions(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT name, title, description, scopes, retrievers, seeded_ns"
        " FROM context_definitions ORDER BY position, name"
    ).fetchall()


def definition(conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT name, title, description, scopes, retrievers, seeded_ns"
        " FROM context_definitions WHERE name = :n",
        {"n": name},
    ).fetchone()
    return row
