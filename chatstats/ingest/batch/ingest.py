"""The batch writer: one class over the parts (messages, edits, attachments, conversations,
totals) and `finish`, which applies the tapbacks, indexes the new text and says what changed.
"""

from __future__ import annotations

import msgspec

from chatstats.ingest.batch.attachments import AttachmentRows
from chatstats.ingest.batch.edits import EditRows
from chatstats.ingest.batch.grouping import ConversationRows
from chatstats.ingest.batch.messages import MessageRows
from chatstats.ingest.batch.outcome import Outcome
from chatstats.ingest.batch.totals import TotalRows
from chatstats.ingest.reactions import apply_tapbacks


class Ingest(MessageRows, EditRows, AttachmentRows, ConversationRows, TotalRows):
    """Writes one batch of chat.db rows; lives for one transaction (see `BatchState`)."""

    def finish(self, *, fts: str = "insert") -> Outcome:
        """Conversations, reactions, search index and denormalised counts for the batch.
        `fts`: 'insert' the new rows' text, 'rebuild' the whole index (a load into an empty
        table), or 'later' (the first import's, from its helper: ingest/bulk.finish_fts)."""
        if self.reload_chats:
            self.reload_handles_and_chats()
        if self._early_timers is None:
            timers = self._assign_conversations()
        else:
            timers = self._early_timers
        targets = sorted({t.target_guid for t in self.tapbacks})
        self.counters.reactions_added += apply_tapbacks(self.conn, self.tapbacks)
        if fts == "rebuild":
            self.conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
        elif fts == "insert" and self.new_ids:
            # Every new row, empty ones too: the index then stays what 'rebuild' makes.
            self.conn.execute(
                "INSERT INTO messages_fts (rowid, text) SELECT id, text FROM messages"
                " WHERE id >= :first",
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
