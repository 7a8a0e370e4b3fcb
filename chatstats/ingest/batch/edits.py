"""Rows Messages.app changed in place after ingest (edits, unsends, receipts, corrections),
found by the live tail's change scan and written over the stored message; `edit_state`
reads a row's edited/unsent flags for new rows too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from chatstats.imessage import chatdb
from chatstats.imessage.chatdb import M
from chatstats.imessage.dates import apple_to_unix_ns
from chatstats.ingest.batch.base import BatchState
from chatstats.ingest.batch.outcome import Counters
from chatstats.ingest.decode import decode_body


def edit_state(row: Sequence[Any], counters: Counters) -> tuple[int, int]:
    """(edited, unsent): macOS 26 marks an unsend with date_edited and `rp`, older ones
    with date_retracted; the plist is the authority when present (NULL on most rows). A
    partial unsend (`chatdb.is_unsent`) is an edit of what remains."""
    date_edited = row[M["date_edited"]]
    date_retracted = row[M["date_retracted"]]
    info = row[M["message_summary_info"]]
    if not (date_edited or date_retracted or info):
        return 0, 0
    flags = chatdb.summary_flags(info)
    if flags is None:
        counters.summaries_unreadable += 1
        flags = chatdb.SummaryFlags((), ())
    unsent = 1 if chatdb.is_unsent(date_retracted, flags) else 0
    # A message with only some parts unsent is what is left of it: changed, so edited.
    edited = 1 if flags.edited_parts or (not unsent and (date_edited or flags.unsent_parts)) else 0
    return edited, unsent


class EditRows(BatchState):
    """Writes changes to stored messages."""

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
                # The index holds every message, empty ones too, as 'rebuild' makes it;
                # databases whose live batches left empty rows out are taken as they are
                # (the row's size record says whether it is in). Deleting a row that is not
                # in, or inserting one that is, leaves FTS5's index inconsistent.
                if self.conn.execute(
                    "SELECT 1 FROM messages_fts_docsize WHERE id = :id", {"id": mid}
                ).fetchone():
                    self.conn.execute(
                        "INSERT INTO messages_fts (messages_fts, rowid, text)"
                        " VALUES ('delete', :id, :t)",
                        {"id": mid, "t": old[2] or ""},
                    )
                self.conn.execute(
                    "INSERT INTO messages_fts (rowid, text) VALUES (:id, :t)",
                    {"id": mid, "t": new[0]},
                )
            self.changed_ids.append(mid)
            self.counters.messages_changed += 1
