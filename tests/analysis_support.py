"""Helpers shared by the analysis tests and the engine subprocess of the restart test.

A small iMessage library in plain SQL, as ingest would leave it: chats with a named contact,
a nameless handle and "Me", conversations of a few messages each, sealed or open.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

from chatstats.db import connect, migrate

S = 1_000_000_000
T0 = 1_700_000_000 * S

_guids = itertools.count(1)


def open_db(path: Path) -> sqlite3.Connection:
    conn = connect(path, write=True)
    migrate(conn)
    return conn


def tx(conn: sqlite3.Connection, fn, *args):
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def seed(
    conn: sqlite3.Connection,
    *,
    chats: int = 2,
    conversations: int = 3,
    messages: int = 4,
    sealed: bool = True,
    first_chat: int = 1,
) -> list[int]:
    """Chats, each with `conversations` conversations of `messages` messages; their ids."""

    def build(c: sqlite3.Connection) -> list[int]:
        c.execute("INSERT OR IGNORE INTO contacts (id, name) VALUES (1, 'Ann Example')")
        c.execute(
            "INSERT OR IGNORE INTO handles (id, identifier, service, contact_id)"
            " VALUES (1, '+15550001', 'iMessage', 1), (2, '+15550002', 'iMessage', NULL)"
        )
        ids = []
        for chat in range(first_chat, first_chat + chats):
            c.execute(
                "INSERT OR IGNORE INTO chats (id, guid, is_group) VALUES (?, ?, 0)",
                (chat, f"chat-{chat}"),
            )
            for k in range(conversations):
                start = T0 + (chat * 1000 + k) * 86_400 * S
                cid = c.execute(
                    "INSERT INTO conversations (chat_id, start_ns, end_ns, message_count,"
                    " sealed) VALUES (?, ?, ?, ?, ?)",
                    (chat, start, start + (messages - 1) * 60 * S, messages, int(sealed)),
                ).lastrowid
                rows = []
                for i in range(messages):
                    from_me = i % 2
                    handle = None if from_me else (1 if chat % 2 else 2)
                    rows.append(
                        (
                            f"g-{next(_guids)}",
                            chat,
                            cid,
                            handle,
                            from_me,
                            start + i * 60 * S,
                            f"message {i} of conversation {cid}; I'll call you tomorrow",
                        )
                    )
                c.executemany(
                    "INSERT INTO messages (guid, chat_id, conversation_id, handle_id, is_from_me,"
                    " date_ns, text) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                ids.append(cid)
        return ids

    return tx(conn, build)
