"""One unit of ingest: rows read from chat.db turned into app-database rows.

The historical import and the live tail share it, so both decode, attribute, react and
group exactly alike. It runs inside the caller's write transaction and touches nothing
outside it; the caller commits the rows together with the source's new watermarks.
"""

from __future__ import annotations

import bisect
import re
import sqlite3
import time
from collections import defaultdict
from typing import Any, NamedTuple

import msgspec

from chatstats.imessage import chatdb
from chatstats.imessage.chatdb import M_CHAT, M
from chatstats.imessage.dates import APPLE_EPOCH_NS, apple_seconds_to_unix_ns, apple_to_unix_ns
from chatstats.ingest import conversations as conv
from chatstats.ingest import tracker
from chatstats.ingest.contacts import ContactBook
from chatstats.ingest.decode import decode_body
from chatstats.ingest.reactions import Tapback, apply_tapbacks

_AT_PREFIX = re.compile(r"^at_(\d+)_")
# A row with no date at all is placed at Apple's epoch rather than dropped.
_NO_DATE_NS = APPLE_EPOCH_NS

_INSERT_MESSAGE = (
    "INSERT INTO messages (id, guid, chat_id, handle_id, is_from_me, date_ns, text, subject,"
    " service, kind, group_title, other_handle_id, reply_to_guid, reply_to_part, edited,"
    " unsent, date_edited_ns, is_read, date_read_ns, is_delivered, date_delivered_ns,"
    " is_sent, balloon, effect, is_audio, body_status, source_rowid)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


class Counters(msgspec.Struct, kw_only=True):
    messages_added: int = 0
    system_events_added: int = 0
    reactions_added: int = 0
    attachments_added: int = 0
    messages_changed: int = 0
    contacts_created: int = 0
    contacts_merged: int = 0
    conversations_created: int = 0
    conversations_removed: int = 0
    conversations_reopened: int = 0
    bodies_corrupt: int = 0
    bodies_empty: int = 0
    summaries_unreadable: int = 0
    orphans: int = 0
    duplicates_skipped: int = 0


class Outcome(NamedTuple):
    """What changed, so the caller can publish it after commit (ids only)."""

    new_message_ids: list[int]
    changed_message_ids: list[int]
    reaction_target_guids: list[str]
    chat_ids: list[int]
    contact_ids: list[int]
    sealed_timers_changed: bool
    # Senders no contact knew (worth asking the AddressBook about), and older messages
    # whose reactions this batch changed (their reaction lists must be republished).
    unknown_identifiers: tuple[str, ...] = ()
    reacted_message_ids: tuple[int, ...] = ()


def edit_state(row: tuple[Any, ...], counters: Counters) -> tuple[int, int]:
    """(edited, unsent): macOS 26 marks an unsend with date_edited and `rp`, older ones
    with date_retracted; the plist is the authority when present (NULL on most rows)."""
    date_edited = row[M["date_edited"]]
    date_retracted = row[M["date_retracted"]]
    info = row[M["message_summary_info"]]
    if not (date_edited or date_retracted or info):
        return 0, 0
    flags = chatdb.summary_flags(info)
    if flags is None:
        counters.summaries_unreadable += 1
        flags = chatdb.SummaryFlags((), ())
    unsent = 1 if (date_retracted or flags.unsent_parts) else 0
    edited = 1 if (flags.edited_parts or (date_edited and not unsent)) else 0
    return edited, unsent


class Ingest:
    """Maps chat.db ROWIDs to app ids and writes batches; lives for one transaction."""

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

    @property
    def book(self) -> ContactBook:
        """Loaded on first use: a live batch from known senders never needs it."""
        if self._book is None:
            self._book = ContactBook(self.conn)
        return self._book

    @property
    def maps(self) -> tuple[dict[int, int], dict[int, int]]:
        return self.handle_map, self.chat_map

    # -- reference data -------------------------------------------------------------------

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

    # -- messages ---------------------------------------------------------------------------

    def skip_known(self, chunk: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Drop rows whose GUID is already imported (another source, or a replayed range)."""
        encoded = msgspec.json.encode([r[M["guid"]] for r in chunk]).decode()
        known = {
            g
            for (g,) in self.conn.execute(
                "SELECT guid FROM messages WHERE guid IN (SELECT value FROM json_each(:g))"
                " UNION ALL"
                " SELECT guid FROM reactions WHERE guid IN (SELECT value FROM json_each(:g))",
                {"g": encoded},
            )
        }
        if not known:
            return chunk
        self.counters.duplicates_skipped += len(known)
        return [r for r in chunk if r[M["guid"]] not in known]

    def add_messages(self, chunk: list[tuple[Any, ...]]) -> None:
        """Insert new message rows (tapbacks are collected for `finish`)."""
        self.insert_rows(self.prepare_rows(chunk))

    def insert_rows(self, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(_INSERT_MESSAGE, rows)

    def prepare_rows(self, chunk: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """App rows for chat.db rows; touches the database only to reload maps on an unknown
        handle or chat (and not at all when `frozen_maps`, so it can run in another thread).

        The hot loop of a 300k-row import: column indexes are locals, and the rare cases
        (tapbacks, edits, system events, replies) are tested before any call is made.
        """
        c = self.counters
        handle_map, chat_map = self.handle_map, self.chat_map
        to_ns = apple_to_unix_ns
        new_ids, new_points, by_rowid = self.new_ids, self.new_points, self.by_rowid
        new_events = self.new_events
        i_rowid, i_guid, i_from_me, i_handle, i_date = (
            M["ROWID"],
            M["guid"],
            M["is_from_me"],
            M["handle_id"],
            M["date"],
        )
        i_atype, i_item, i_gat, i_other = (
            M["associated_message_type"],
            M["item_type"],
            M["group_action_type"],
            M["other_handle"],
        )
        i_de, i_dr, i_msi = M["date_edited"], M["date_retracted"], M["message_summary_info"]
        i_tog, i_top = M["thread_originator_guid"], M["thread_originator_part"]
        i_read, i_dread, i_deliv, i_ddeliv, i_sent = (
            M["is_read"],
            M["date_read"],
            M["is_delivered"],
            M["date_delivered"],
            M["is_sent"],
        )
        i_subject, i_service, i_title = M["subject"], M["service"], M["group_title"]
        i_balloon, i_effect, i_audio = (
            M["balloon_bundle_id"],
            M["expressive_send_style_id"],
            M["is_audio_message"],
        )
        frozen = self.frozen_maps
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        mid = self.next_id
        for r in chunk:
            from_me = 1 if r[i_from_me] else 0
            sender = r[i_handle]
            if sender and sender not in handle_map and not frozen:  # created after we looked
                self.reload_handles_and_chats()
                handle_map, chat_map = self.handle_map, self.chat_map
            handle_id = None if from_me else handle_map.get(sender)
            date_ns = to_ns(r[i_date]) or _NO_DATE_NS
            if r[i_atype]:
                tb = chatdb.tapback(r[i_atype])
                target = chatdb.tapback_target(r[M["associated_message_guid"]]) if tb else None
                if tb is not None and target is not None:
                    self.tapbacks.append(
                        Tapback(
                            r[i_guid],
                            target[0],
                            target[1],
                            tb[0],
                            r[M["associated_message_emoji"]],
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
                if chat_id is None and not frozen:  # a chat created after we read the list
                    self.reload_handles_and_chats()
                    handle_map, chat_map = self.handle_map, self.chat_map
                    chat_id = chat_map.get(chat_rowid)
            if chat_id is None:
                c.orphans += 1
            text, status = decode_body(r[M["attributedBody"]], r[M["text"]])
            if status != "ok":
                if status == "corrupt":
                    c.bodies_corrupt += 1
                else:
                    c.bodies_empty += 1
            edited = unsent = 0
            if r[i_de] or r[i_dr] or r[i_msi]:
                edited, unsent = edit_state(r, c)
                if unsent:
                    text = ""
            item_type = r[i_item]
            if item_type:
                kind = chatdb.message_kind(item_type, r[i_gat])
                c.system_events_added += 1
                if chat_id is not None:
                    self.reload_chats = True  # a rename or membership change: re-read chats
                points = new_events
            else:
                kind = "message"
                c.messages_added += 1
                points = new_points
            other = r[i_other]
            tog = r[i_tog]
            append(
                (
                    mid,
                    r[i_guid],
                    chat_id,
                    handle_id,
                    from_me,
                    date_ns,
                    text,
                    r[i_subject],
                    r[i_service],
                    kind,
                    r[i_title],
                    handle_map.get(other) if other else None,
                    chatdb.reply_guid(tog) if tog else None,
                    chatdb.reply_part(r[i_top]) if tog else None,
                    edited,
                    unsent,
                    to_ns(r[i_de]),
                    1 if r[i_read] else 0,
                    to_ns(r[i_dread]),
                    1 if r[i_deliv] else 0,
                    to_ns(r[i_ddeliv]),
                    1 if r[i_sent] else 0,
                    r[i_balloon],
                    r[i_effect],
                    1 if r[i_audio] else 0,
                    status,
                    r[i_rowid],
                )
            )
            new_ids.append(mid)
            by_rowid[r[i_rowid]] = mid
            if chat_id is not None:
                points[chat_id].append(conv.Point(date_ns, mid))
            mid += 1
        self.next_id = mid
        return rows

    def update_messages(self, chunk: list[tuple[Any, ...]]) -> None:
        """Rows Messages.app changed in place: edits, unsends, receipts, corrections."""
        to_ns = apple_to_unix_ns
        guids = msgspec.json.encode([r[M["guid"]] for r in chunk]).decode()
        current = {
            row[1]: row
            for row in self.conn.execute(
                "SELECT id, guid, text, edited, unsent, is_read, date_read_ns, is_delivered,"
                " date_delivered_ns, is_sent, is_from_me, handle_id, date_edited_ns,"
                " body_status FROM messages WHERE guid IN (SELECT value FROM json_each(:g))",
                {"g": guids},
            )
        }
        for r in chunk:
            old = current.get(r[M["guid"]])
            if old is None:
                continue  # a tapback, or a row we have not imported yet
            body = decode_body(r[M["attributedBody"]], r[M["text"]])
            edited, unsent = edit_state(r, self.counters)
            from_me = 1 if r[M["is_from_me"]] else 0
            sender = r[M["handle_id"]]
            if sender and sender not in self.handle_map:
                self.reload_handles_and_chats()
            new = (
                "" if unsent else body.text,
                edited,
                unsent,
                1 if r[M["is_read"]] else 0,
                to_ns(r[M["date_read"]]),
                1 if r[M["is_delivered"]] else 0,
                to_ns(r[M["date_delivered"]]),
                1 if r[M["is_sent"]] else 0,
                from_me,
                None if from_me else self.handle_map.get(sender),
                to_ns(r[M["date_edited"]]),
                body.status,
            )
            if tuple(old)[2:] == new:
                continue
            mid = old[0]
            self.conn.execute(
                "UPDATE messages SET text = ?, edited = ?, unsent = ?, is_read = ?,"
                " date_read_ns = ?, is_delivered = ?, date_delivered_ns = ?, is_sent = ?,"
                " is_from_me = ?, handle_id = ?, date_edited_ns = ?, body_status = ?"
                " WHERE id = ?",
                (*new, mid),
            )
            if old[2] != new[0]:
                if old[2]:
                    self.conn.execute(
                        "INSERT INTO messages_fts (messages_fts, rowid, text)"
                        " VALUES ('delete', :id, :t)",
                        {"id": mid, "t": old[2]},
                    )
                if new[0]:
                    self.conn.execute(
                        "INSERT INTO messages_fts (rowid, text) VALUES (:id, :t)",
                        {"id": mid, "t": new[0]},
                    )
            self.changed_ids.append(mid)
            self.counters.messages_changed += 1

    def add_attachments(self, chunk: list[tuple[Any, ...]]) -> None:
        """Attachment rows end with (message ROWID, message GUID). Messages of this batch
        are found through `by_rowid` (a race-mode load has no GUID index yet); older ones
        by GUID."""
        older = [r[-1] for r in chunk if r[-2] not in self.by_rowid]
        ids: dict[str, int] = {}
        if older:
            ids = dict(
                self.conn.execute(
                    "SELECT guid, id FROM messages WHERE guid IN (SELECT value FROM json_each(:g))",
                    {"g": msgspec.json.encode(older).decode()},
                ).fetchall()
            )
        per_message: dict[int, int] = defaultdict(int)
        rows = []
        A = chatdb.A
        for r in chunk:
            mid = self.by_rowid.get(r[-2]) or ids.get(r[-1])
            m = _AT_PREFIX.match(r[A["guid"]] or "")
            position = int(m.group(1)) if m else per_message[mid or 0]
            per_message[mid or 0] += 1
            if mid is not None and mid < self.first_new_id:
                self.changed_ids.append(mid)  # an attachment landing after its message
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
        before = self.conn.total_changes
        self.conn.executemany(
            "INSERT INTO attachments (guid, message_id, position, filename, transfer_name,"
            " mime_type, uti, total_bytes, is_sticker, created_ns)"
            " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(guid) DO NOTHING",
            rows,
        )
        self.counters.attachments_added += self.conn.total_changes - before

    # -- after all rows -------------------------------------------------------------------

    def finish(self, *, rebuild_fts: bool = False) -> Outcome:
        """Conversations, reactions, search index and denormalised counts for the batch."""
        if self.reload_chats:
            self.reload_handles_and_chats()
        if self._early_timers is None:
            timers = self._assign_conversations()
        else:
            timers = self._early_timers
        targets = sorted({t.target_guid for t in self.tapbacks})
        self.counters.reactions_added += apply_tapbacks(self.conn, self.tapbacks)
        if rebuild_fts:
            self.conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
        elif self.new_ids:
            self.conn.execute(
                "INSERT INTO messages_fts (rowid, text) SELECT id, text FROM messages"
                " WHERE id >= :first AND text <> ''",
                {"first": self.first_new_id},
            )
        chats = set(self.new_points) | set(self.new_events) | self.touched_chats
        chats |= {b["id"] for b in self.chat_bumps}
        reacted: list[int] = []
        # Which older messages' reactions changed matters only to live publishing; a first
        # load has no older messages (and no GUID index yet to find them quickly).
        if (targets and self.first_new_id > 1) or self.changed_ids:
            for mid, chat_id, is_target in self.conn.execute(
                "SELECT id, chat_id, guid IN (SELECT value FROM json_each(:t)) FROM messages"
                " WHERE chat_id IS NOT NULL AND (guid IN (SELECT value FROM json_each(:t))"
                " OR id IN (SELECT value FROM json_each(:ids)))",
                {
                    "t": msgspec.json.encode(targets).decode(),
                    "ids": msgspec.json.encode(self.changed_ids).decode(),
                },
            ):
                chats.add(chat_id)
                if is_target and mid < self.first_new_id:
                    reacted.append(mid)
        self._bump_chats()
        contacts = self._refresh_contact_counts()
        if self._book is not None:
            self.counters.contacts_created += self._book.created
            self.counters.contacts_merged += len(self._book.merged)
            contacts |= {cid for pair in self._book.merged for cid in pair}
            contacts |= set(self._book.renamed)
        return Outcome(
            self.new_ids,
            sorted(set(self.changed_ids)),
            targets,
            sorted(chats),
            sorted(contacts),
            timers,
            tuple(self._book.unknown) if self._book is not None else (),
            tuple(reacted),
        )

    def _bump_chats(self) -> None:
        """Per-chat counts and latest message from this batch's own points: O(new rows),
        and correct without indexes (a race-mode load drops them)."""
        rows = []
        for chat_id in set(self.new_points) | set(self.new_events):
            points = self.new_points.get(chat_id, []) + self.new_events.get(chat_id, [])
            last_ns, last_id = max(points)
            rows.append({"n": len(points), "d": last_ns, "m": last_id, "id": chat_id})
        rows.extend(self.chat_bumps)
        self.conn.executemany(
            "UPDATE chats SET message_count = message_count + :n,"
            " last_message_id = CASE WHEN last_message_ns IS NULL OR :d > last_message_ns"
            "   OR (:d = last_message_ns AND :m > last_message_id) THEN :m"
            "   ELSE last_message_id END,"
            " last_message_ns = max(COALESCE(last_message_ns, :d), :d)"
            " WHERE id = :id",
            rows,
        )

    def assign_conversations_early(self) -> list[tuple[int, list[int]]]:
        """Plan conversations for `new_points` before their rows exist: creates the
        conversations and seal timers and returns (conversation id, its message ids) for the
        caller to write with the rows. Only for a load whose points are final."""
        timers, assign = self._plan_conversations()
        self._early_timers = timers
        return assign

    def conversations_planned(self, timers: bool) -> None:
        """The load planned and wrote conversations itself (ingest/plan.py); `timers`: some
        were left open."""
        self._early_timers = timers

    def _assign_conversations(self) -> bool:
        timers, assign = self._plan_conversations()
        self.conn.executemany(
            "UPDATE messages SET conversation_id = ? WHERE id = ?",
            ((cid, mid) for cid, ids in assign for mid in ids),
        )
        return timers

    def _plan_conversations(self) -> tuple[bool, list[tuple[int, list[int]]]]:
        conn = self.conn
        next_cid = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM conversations").fetchone()[0]
        conv_rows: list[tuple[Any, ...]] = []
        assign: list[tuple[int, list[int]]] = []  # per conversation, not per message
        open_convs: dict[int, tuple[int, int]] = {}  # conversation id → (chat id, end_ns)
        # For placing system events: per chat, the spans (start, end, id) this plan created,
        # extended or kept, and the stretches of time (chat, id, after, up to) it newly
        # covered, where events ingested earlier may now lie inside a conversation.
        spans: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        covered: list[tuple[int, int, int, int]] = []
        sealed_before = self.now_ns - conv.GAP_NS

        def create(chat_id: int, group: conv.Group) -> None:
            nonlocal next_cid
            sealed = self.seal_expired and group.end_ns < sealed_before
            conv_rows.append(
                (
                    next_cid,
                    chat_id,
                    group.start_ns,
                    group.end_ns,
                    len(group.message_ids),
                    int(sealed),
                    self.now_ns if sealed else None,
                )
            )
            assign.append((next_cid, group.message_ids))
            spans[chat_id].append((group.start_ns, group.end_ns, next_cid))
            covered.append((chat_id, next_cid, group.start_ns - 1, group.end_ns))
            if not sealed:
                open_convs[next_cid] = (chat_id, group.end_ns)
            next_cid += 1
            self.counters.conversations_created += 1

        # chats.last_message_ns still describes the chat before this batch (refreshed later).
        newest = dict(
            conn.execute(
                "SELECT id, last_message_ns FROM chats WHERE id IN (SELECT value FROM json_each(:c))",
                {"c": msgspec.json.encode(list(self.new_points)).decode()},
            ).fetchall()
        )
        for chat_id, points in self.new_points.items():
            points.sort()
            newest_before = newest.get(chat_id)
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
                    if plan.reopen:
                        self._reopen(cid, chat_id)
                    assign.append((cid, ids))
                    open_convs[cid] = (chat_id, end_ns)
                    spans[chat_id].append((last[1], end_ns, cid))
                    covered.append((chat_id, cid, last[2], end_ns))
                for group in plan.create:
                    create(chat_id, group)
                continue
            # Older messages arrived: fresh split of the whole chat, keeping unchanged ids.
            rows = conn.execute(
                "SELECT date_ns, id, conversation_id FROM messages"
                " WHERE chat_id = :c AND kind = 'message'",
                {"c": chat_id},
            ).fetchall()
            existing: dict[int, set[int]] = defaultdict(set)
            for _d, mid, cid in rows:
                if cid is not None:
                    existing[cid].add(mid)
            plan_r = conv.reconcile(
                conv.split(sorted(conv.Point(d, mid) for d, mid, _c in rows)),
                {k: frozenset(v) for k, v in existing.items()},
            )
            if plan_r.delete:
                ids_json = msgspec.json.encode(plan_r.delete).decode()
                conn.execute(
                    "DELETE FROM seal_timers WHERE conversation_id IN"
                    " (SELECT value FROM json_each(:ids))",
                    {"ids": ids_json},
                )
                conn.execute(
                    "UPDATE messages SET conversation_id = NULL WHERE conversation_id IN"
                    " (SELECT value FROM json_each(:ids))",
                    {"ids": ids_json},
                )
                conn.execute(
                    "DELETE FROM conversations WHERE id IN (SELECT value FROM json_each(:ids))",
                    {"ids": ids_json},
                )
                self.counters.conversations_removed += len(plan_r.delete)
            for cid, group in plan_r.keep:
                spans[chat_id].append((group.start_ns, group.end_ns, cid))
            for cid, group in plan_r.grow:
                # Older messages reached into it (or merged others into it): same id, new
                # span; open again, with a timer, even if it was sealed.
                conn.execute(
                    "UPDATE conversations SET start_ns = :s, end_ns = :e, message_count = :n"
                    " WHERE id = :id",
                    {
                        "s": group.start_ns,
                        "e": group.end_ns,
                        "n": len(group.message_ids),
                        "id": cid,
                    },
                )
                self._reopen(cid, chat_id)
                assign.append((cid, group.message_ids))
                open_convs[cid] = (chat_id, group.end_ns)
                spans[chat_id].append((group.start_ns, group.end_ns, cid))
                covered.append((chat_id, cid, group.start_ns - 1, group.end_ns))
            for group in plan_r.create:
                create(chat_id, group)
        conn.executemany(
            "INSERT INTO conversations (id, chat_id, start_ns, end_ns, message_count, sealed,"
            " sealed_at_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
            conv_rows,
        )
        for cid, (chat_id, end_ns) in open_convs.items():
            tracker.schedule(conn, cid, chat_id, end_ns)
        assign.extend(self._place_events(spans, covered))
        return bool(open_convs), assign

    def _reopen(self, conversation_id: int, chat_id: int) -> None:
        """A message within 90 minutes of a sealed conversation joined it: reopen it (its
        timer is set with the other open conversations')."""
        if tracker.reopen(self.conn, conversation_id, chat_id) is not None:
            self.counters.conversations_reopened += 1

    def _place_events(
        self,
        spans: dict[int, list[tuple[int, int, int]]],
        covered: list[tuple[int, int, int, int]],
    ) -> list[tuple[int, list[int]]]:
        """System events belong to the conversation whose span holds them, or to none: they
        never open, extend or count in one. Runs once the plan's conversations exist.

        Returns (conversation id, event ids) for this batch's events; events ingested earlier
        that a conversation's span now reaches are attached here. A first load (nothing
        before it, and no indexes) needs only the spans it just made.
        """
        conn = self.conn
        earlier = self.first_new_id > 1
        if earlier:
            for chat_id, cid, after_ns, upto_ns in covered:
                conn.execute(
                    "UPDATE messages SET conversation_id = :cid WHERE chat_id = :c"
                    " AND date_ns > :a AND date_ns <= :u AND kind <> 'message' AND id < :first",
                    {
                        "cid": cid,
                        "c": chat_id,
                        "a": after_ns,
                        "u": upto_ns,
                        "first": self.first_new_id,
                    },
                )
        out: list[tuple[int, list[int]]] = []
        for chat_id, events in self.new_events.items():
            known = sorted(spans.get(chat_id, ()))
            starts = [k[0] for k in known]
            members: dict[int, list[int]] = defaultdict(list)
            for date_ns, mid in events:
                i = bisect.bisect_right(starts, date_ns) - 1
                if i >= 0 and known[i][1] >= date_ns:
                    members[known[i][2]].append(mid)
                    continue
                if not earlier:
                    continue
                # Spans do not overlap: only the latest one starting at or before it can hold it.
                row = conn.execute(
                    "SELECT id, end_ns FROM conversations WHERE chat_id = :c AND start_ns <= :d"
                    " ORDER BY start_ns DESC, id DESC LIMIT 1",
                    {"c": chat_id, "d": date_ns},
                ).fetchone()
                if row is not None and row[1] >= date_ns:
                    members[row[0]].append(mid)
            out.extend(members.items())
        return out

    def _refresh_contact_counts(self) -> set[int]:
        """Recompute counts only for the contacts this batch touched (all, on a big load)."""
        if not self.new_ids:
            return set()
        if self.first_new_id == 1:  # everything is new: one aggregate pass over all of it
            refresh_contacts(self.conn, None)
            return set()
        rows = self.conn.execute(
            "SELECT DISTINCT h.contact_id FROM messages m JOIN handles h ON h.id = m.handle_id"
            " WHERE m.id >= :first"
            " UNION SELECT DISTINCT h.contact_id FROM messages m"
            " JOIN chats c ON c.id = m.chat_id AND c.is_group = 0"
            " JOIN chat_participants p ON p.chat_id = c.id JOIN handles h ON h.id = p.handle_id"
            " WHERE m.id >= :first AND m.is_from_me = 1",
            {"first": self.first_new_id},
        ).fetchall()
        ids = sorted({r[0] for r in rows if r[0] is not None})
        refresh_contacts(self.conn, ids)
        return set(ids)


def refresh_chats(conn: sqlite3.Connection, chat_ids: list[int] | None) -> None:
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


def refresh_contacts(conn: sqlite3.Connection, contact_ids: list[int] | None) -> None:
    """Per contact: messages they sent plus mine in 1:1 chats with them, and the latest time."""
    only = "" if contact_ids is None else " AND h.contact_id IN (SELECT value FROM json_each(:ids))"
    params = {} if contact_ids is None else {"ids": msgspec.json.encode(contact_ids).decode()}
    target = "" if contact_ids is None else " WHERE id IN (SELECT value FROM json_each(:ids))"
    conn.execute(f"UPDATE contacts SET message_count = 0, last_message_ns = NULL{target}", params)
    conn.execute(
        f"""
        UPDATE contacts SET message_count = agg.n, last_message_ns = agg.last
        FROM (
            SELECT cid, count(*) AS n, max(date_ns) AS last FROM (
                SELECT h.contact_id AS cid, m.date_ns FROM messages m
                JOIN handles h ON h.id = m.handle_id
                WHERE m.is_from_me = 0 AND m.chat_id IS NOT NULL{only}
                UNION ALL
                SELECT h.contact_id, m.date_ns FROM messages m
                JOIN chats c ON c.id = m.chat_id AND c.is_group = 0
                JOIN chat_participants p ON p.chat_id = c.id
                JOIN handles h ON h.id = p.handle_id
                WHERE m.is_from_me = 1{only}
            ) GROUP BY cid
        ) AS agg
        WHERE contacts.id = agg.cid
        """,
        params,
    )
