"""A real sample library for the context tests: generated, imported by the real importer,
with analyses on the busiest chat's conversations and chatbot documents about it."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from chatstats.chatbot import store as chatbot_store
from chatstats.db import connect, transaction
from chatstats.ingest.importer import run_import
from chatstats.sample.generate import make_library


@dataclass(frozen=True)
class Library:
    db: Path
    chat: int  # the busiest chat
    other_chat: int
    contact: int  # a contact of the busiest chat
    conversations: list[int]  # the busiest chat's, newest start first
    analysed: list[int]  # conversations with a `basic` result
    documents: list[int]  # about the busiest chat, oldest first
    foreign_document: int  # about another chat


def build(root: Path) -> Library:
    make_library(root / "lib", messages=1500, seed=21, truth=False)
    db = root / "data" / "chatstats.db"
    run_import(db, root / "lib" / "chat.db", root / "lib" / "AddressBook")
    conn = connect(db, write=True)
    try:
        return _enrich(conn, db)
    finally:
        conn.close()


def _enrich(conn: sqlite3.Connection, db: Path) -> Library:
    chat, other = (
        r[0]
        for r in conn.execute(
            "SELECT chat_id FROM conversations GROUP BY chat_id ORDER BY count(*) DESC LIMIT 2"
        )
    )
    contact = conn.execute(
        "SELECT h.contact_id FROM chat_participants cp JOIN handles h ON h.id = cp.handle_id"
        " WHERE cp.chat_id = :c AND h.contact_id IS NOT NULL LIMIT 1",
        {"c": chat},
    ).fetchone()[0]
    convs = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM conversations WHERE chat_id = :c ORDER BY start_ns DESC, id DESC",
            {"c": chat},
        )
    ]
    now = time.time_ns()
    analysed = convs[:8]
    with transaction(conn):
        for i, cid in enumerate(analysed):
            # Results of very different sizes: the third is long, so only its summary fits
            # small budgets while the smaller ones after it still do.
            topics = [f"topic {j}" for j in range(60 if i == 2 else 3)]
            result = {
                "summary": f"Conversation {cid} was about plans number {i}.",
                "topics": topics,
                "tone": "warm",
            }
            conn.execute(
                "INSERT INTO analyses (conversation_id, chat_id, pass, pass_version, result,"
                " model, created_ns) VALUES (:cid, :chat, 'basic', 1, :r, 'fake', :now)",
                {"cid": cid, "chat": chat, "r": json.dumps(result), "now": now},
            )
        thread = chatbot_store.create_thread(conn, "t", [{"chat_id": chat}], now)
        docs = [
            chatbot_store.create_document(
                conn, thread, None, f"Plan {i}", "Steps:\n" + "1. call. " * (5 + 80 * i), now + i
            )
            for i in range(3)
        ]
        other_thread = chatbot_store.create_thread(conn, "o", [{"chat_id": other}], now)
        foreign = chatbot_store.create_document(
            conn, other_thread, None, "Elsewhere", "not about this chat", now + 10
        )
    return Library(db, chat, other, contact, convs, analysed, docs, foreign)
