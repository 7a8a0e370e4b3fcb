"""Attachment rows: each joined to its message (this batch's by ROWID, older ones by GUID)
at its position in the body, with the transfer name, type and size.

The position orders a message's attachments as its body does. A guid of the form
`at_<part>_<message GUID>` says its part; a bare UUID (also written by Messages.app) says
nothing, so its position is where the body names it: the byte offset of the guid in the
message's attributedBody, as mautrix orders them. Either is the same in every batch and
every chunk, so attachments that arrive apart still sort as the body has them. One the body
does not name sorts after the rest (by ROWID, through the id tie-break).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from chatstats.imessage import chatdb
from chatstats.imessage.dates import apple_seconds_to_unix_ns
from chatstats.ingest.batch.base import BatchState

_AT_PREFIX = re.compile(r"^at_(\d+)_")
_UNPLACED = 2**31  # after every part number and body offset


class AttachmentRows(BatchState):
    """Writes attachment rows."""

    def add_attachments(self, chunk: list[tuple[Any, ...]]) -> None:
        """Attachment rows end with (message ROWID, message GUID). Messages of this batch
        are found through `by_rowid` (a race-mode load has no GUID index yet); older ones
        by GUID."""
        older = [r[-1] for r in chunk if r[-2] not in self.by_rowid]
        ids: dict[str, int] = {}
        # With no message stored before this batch (a first import) there is nothing older
        # to find: the lookup would only scan the messages (no GUID index yet) in vain.
        if older and self.first_new_id > 1:
            ids = dict(
                self.conn.execute(
                    "SELECT guid, id FROM messages WHERE guid IN (SELECT value FROM json_each(:g))",
                    {"g": msgspec.json.encode(older).decode()},
                ).fetchall()
            )
        rows = []
        A = chatdb.A
        at = chatdb.BODY_AT
        for r in chunk:
            mid = self.by_rowid.get(r[-2]) or ids.get(r[-1])
            m = _AT_PREFIX.match(r[A["guid"]] or "")
            position = int(m.group(1)) if m else (r[at] or _UNPLACED)
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
