"""A batch's state and the reference data every row needs: handle and chat ROWIDs mapped
to app ids (upserted from chat.db), and the contact book.

Every part of the batch (messages, edits, attachments, conversations, totals) is a mixin
over `BatchState`, so the state is declared once and each part stays one concern.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from typing import Any

from chatstats.db import inserted_id
from chatstats.imessage import chatdb
from chatstats.ingest import conversations as conv
from chatstats.ingest.batch.outcome import Counters
from chatstats.ingest.contacts import ContactBook
from chatstats.ingest.reactions import Tapback


class BatchState:
    """Maps chat.db ROWIDs to app ids and holds what the batch wrote; lives for one transaction."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        reader: chatdb.Reader,
        counters: Counters,
        *,
        now_ns: int | None = None,
        people: list[Any] | None = None,
        maps: tuple[dict[int, int], dict[int, int]] | None = None,
    ) -> None:
        self.conn = conn
        self.reader = reader
        self.counters = counters
        self.now_ns = now_ns or time.time_ns()
        self._book: ContactBook | None = None
        if people:
            self.book.sync_people(people)
        self.handle_map: dict[int, int] = {}
        self.chat_map: dict[int, int] = {}
        self.touched_chats: set[int] = set()
        self.reload_chats = False
        if maps is None:
            self.reload_handles_and_chats()
        else:  # the live tail's cache from its previous batch; reloaded on any unknown ROWID
            self.handle_map, self.chat_map = dict(maps[0]), dict(maps[1])
        self.next_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM messages").fetchone()[0]
        self.first_new_id = self.next_id
        # Per chat: this batch's messages, which make conversations, and its system events
        # (renames, membership), which only join the conversation whose span holds them.
        self.new_points: dict[int, list[conv.Point]] = defaultdict(list)
        self.new_events: dict[int, list[conv.Point]] = defaultdict(list)
        self.tapbacks: list[Tapback] = []
        self.new_ids: list[int] = []
        self.changed_ids: list[int] = []
        self.by_rowid: dict[int, int] = {}  # source ROWID → id, for this batch's messages
        # Set by the import, whose handles and chats were read after the ROWID it stops at,
        # so every row it reads can be mapped without going back to the database.
        self.frozen_maps = False
        # Only the first import of a whole history files conversations that ended long ago
        # as sealed on the spot (history is analysed by explicit runs). Anything ingested
        # later gets a seal timer, even one already due, so the sealer seals it and
        # publishes conversation_sealed / conversation_ready_for_analysis.
        self.seal_expired = False
        # Set when conversations were assigned before the rows were written (the SQL load
        # writes each row with its conversation id instead of updating 300k rows after).
        self._early_timers: bool | None = None
        # Per-chat additions a load computed itself (ingest/plan.py): rows of `_bump_chats`.
        self.chat_bumps: list[dict[str, int]] = []
        # A first load's per-contact totals as its conversation walk counted them (plan.py),
        # so the refresh need not scan every message twice; None: count from the rows.
        self.contact_totals: tuple[list[tuple[int, ...]], list[tuple[int, ...]]] | None = None

    @property
    def book(self) -> ContactBook:
        """Loaded on first use: a live batch from known senders never needs it."""
        if self._book is None:
            self._book = ContactBook(self.conn)
        return self._book

    @property
    def maps(self) -> tuple[dict[int, int], dict[int, int]]:
        return self.handle_map, self.chat_map

    def reload_handles_and_chats(self) -> None:
        self.handle_map = self._load_handles()
        self.chat_map = self._load_chats()

    def _load_handles(self) -> dict[int, int]:
        conn = self.conn
        existing = {
            (r[1], r[2]): (r[0], r[3])
            for r in conn.execute("SELECT id, identifier, service, contact_id FROM handles")
        }
        out: dict[int, int] = {}
        for h in self.reader.handles():
            found = existing.get((h.identifier, h.service))
            contact_id = self.book.resolve(h.identifier, h.person_centric_id)
            if found is None:
                hid = inserted_id(
                    conn.execute(
                        "INSERT INTO handles (identifier, service, contact_id) VALUES (:i, :s, :c)",
                        {"i": h.identifier, "s": h.service, "c": contact_id},
                    )
                )
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

    def _load_chats(self) -> dict[int, int]:
        """Chats upserted; participants replaced by chat.db's current set when it changed."""
        participants: dict[int, set[int]] = defaultdict(set)
        for chat_rowid, handle_rowid in self.reader.chat_handles():
            hid = self.handle_map.get(handle_rowid)
            if hid is not None:
                participants[chat_rowid].add(hid)
        current: dict[int, set[int]] = defaultdict(set)
        for chat_id, handle_id in self.conn.execute(
            "SELECT chat_id, handle_id FROM chat_participants"
        ):
            current[chat_id].add(handle_id)
        out: dict[int, int] = {}
        for c in self.reader.chats():
            members = participants.get(c.rowid, set())
            is_group = chatdb.is_group_chat(c, len(members))
            row = self.conn.execute(
                "INSERT INTO chats (guid, chat_identifier, service, display_name, is_group)"
                " VALUES (:g, :i, :s, :d, :grp)"
                " ON CONFLICT(guid) DO UPDATE SET display_name = excluded.display_name,"
                " is_group = excluded.is_group, service = excluded.service"
                " WHERE display_name IS NOT excluded.display_name"
                " OR is_group IS NOT excluded.is_group OR service IS NOT excluded.service"
                " RETURNING id",
                {
                    "g": c.guid,
                    "i": c.chat_identifier,
                    "s": c.service,
                    "d": c.display_name or None,
                    "grp": int(is_group),
                },
            ).fetchone()
            if row is None:  # unchanged: the conditional upsert returned nothing
                cid = self.conn.execute(
                    "SELECT id FROM chats WHERE guid = :g", {"g": c.guid}
                ).fetchone()[0]
            else:
                cid = row[0]
                self.touched_chats.add(cid)
            out[c.rowid] = cid
            if current.get(cid, set()) != members:
                self.conn.execute("DELETE FROM chat_participants WHERE chat_id = :c", {"c": cid})
                self.conn.executemany(
                    "INSERT INTO chat_participants (chat_id, handle_id) VALUES (?, ?)",
                    [(cid, hid) for hid in sorted(members)],
                )
                self.touched_chats.add(cid)
        return out
