"""Attachment rows: each joined to its message (this batch's by ROWID, older ones by GUID)
at its position in the body, with the transfer name, type and size.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import msgspec

from chatstats.imessage import chatdb
from chatstats.imessage.dates import apple_seconds_to_unix_ns
from chatstats.ingest.batch.base import BatchState

_AT_PREFIX = re.compile(r"^at_(\d+)_")


class AttachmentRows(BatchState):
    """Writes attachment rows."""

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
