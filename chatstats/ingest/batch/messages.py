"""New message rows: duplicates skipped by GUID, bodies decoded, senders attributed,
tapbacks set aside for `finish`, and each message's point kept for conversation grouping.
"""

from __future__ import annotations

from typing import Any

import msgspec

from chatstats.imessage import chatdb
from chatstats.imessage.chatdb import M_CHAT, M
from chatstats.imessage.dates import APPLE_EPOCH_NS, apple_to_unix_ns
from chatstats.ingest import conversations as conv
from chatstats.ingest.batch.base import BatchState
from chatstats.ingest.batch.edits import edit_state
from chatstats.ingest.decode import decode_body
from chatstats.ingest.reactions import Tapback

# A row with no date at all is placed at Apple's epoch rather than dropped.
_NO_DATE_NS = APPLE_EPOCH_NS


_INSERT_MESSAGE = (
    "INSERT INTO messages (id, guid, chat_id, handle_id, is_from_me, date_ns, text, subject,"
    " service, kind, group_title, other_handle_id, reply_to_guid, reply_to_part, edited,"
    " unsent, date_edited_ns, is_read, date_read_ns, is_delivered, date_delivered_ns,"
    " is_sent, balloon, effect, is_audio, body_status, source_rowid)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


class MessageRows(BatchState):
    """Writes new message rows."""

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
