"""Write chat.db rows the way Messages.app does, for sample libraries and live simulations.

Two uses share one code path:

* **bulk** (`with writer.bulk(): ...`): the sample generator writes hundreds of thousands of
  rows. Message, join and attachment rows are buffered and inserted with `executemany`;
  ROWIDs are assigned by the writer so callers get them at once. Updates to a row still in
  the buffer (an edit, a read receipt) change the buffered row instead of issuing an UPDATE.
* **live** (outside `bulk()`): every public method is one short IMMEDIATE transaction that
  commits before returning, so a daemon tailing the WAL from another process sees each
  change promptly. As in Messages, rows are inserted and then updated in place: an outgoing
  message can be inserted unsent (`sent=False`) and later `mark_sent`, `deliver`ed, `read`.

All dates given to the writer are **Unix epoch nanoseconds**; the writer stores Apple's
form (ns since 2001-01-01 UTC, or whole seconds for pre-High-Sierra rows / the legacy
profile — see `seconds_before`). Columns a profile lacks are simply not written.
Semantics: shared/reference/chatdb_semantics.md (§ numbers below refer to it).
"""

from __future__ import annotations

import plistlib
import random
import sqlite3
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatstats.imessage.dates import APPLE_EPOCH_NS
from chatstats.imessage.typedstream_writer import encode_attributed_string, utf16_len
from chatstats.sample import chatdb_schema

__all__ = [
    "APPLE_EPOCH_NS",
    "TAPBACK_KINDS",
    "AttachmentSpec",
    "MessagesWriter",
    "from_apple",
    "guid_from_bits",
    "tapback_summary",
    "to_apple",
]

NS = 1_000_000_000

PART_KEY = "__kIMMessagePartAttributeName"
FILE_GUID_KEY = "__kIMFileTransferGUIDAttributeName"
FILENAME_KEY = "__kIMFilenameAttributeName"
DIRECTION_KEY = "__kIMBaseWritingDirectionAttributeName"

URL_BALLOON = "com.apple.messages.URLBalloonProvider"

# associated_message_type 2000–2007 (3000–3007 = removal of the same kind), §5.
TAPBACK_KINDS = {
    0: "loved",
    1: "liked",
    2: "disliked",
    3: "laughed",
    4: "emphasized",
    5: "questioned",
    6: "emoji",
    7: "sticker",
}
# Summary texts Messages stores on tapback rows (curly quotes). Removal wordings are the
# ones iOS displays [I]; readers must not parse them.
_ADD_VERBS = {
    0: "Loved",
    1: "Liked",
    2: "Disliked",
    3: "Laughed at",
    4: "Emphasized",
    5: "Questioned",
}
_REMOVE_NOUNS = {
    0: "a heart",
    1: "a like",
    2: "a dislike",
    3: "a laugh",
    4: "an exclamation",
    5: "a question mark",
    7: "a sticker",
}


def to_apple(unix_ns: int, seconds: bool = False) -> int:
    """Apple's stored value for a Unix-ns instant (floor to whole seconds when `seconds`)."""
    if seconds:
        return (unix_ns - APPLE_EPOCH_NS) // NS
    return unix_ns - APPLE_EPOCH_NS


def from_apple(value: int, seconds: bool = False) -> int:
    return value * NS + APPLE_EPOCH_NS if seconds else value + APPLE_EPOCH_NS


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def guid_from_bits(bits: int) -> str:
    """An uppercase random (version 4) UUID string, as Messages uses for GUIDs."""
    h = f"{(bits & _UUID4_CLEAR) | _UUID4_SET:032X}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def tapback_summary(kind: int, quoted: str, emoji: str | None = None) -> str:
    """The human-readable `text` of a tapback row, e.g. 'Loved “See you at 8”'."""
    base, removal = (kind - 3000, True) if kind >= 3000 else (kind - 2000, False)
    q = f"“{quoted}”"
    if not removal:
        if base == 6:
            return f"Reacted {emoji} to {q}"
        if base == 7:
            return f"Reacted with a sticker to {q}"
        return f"{_ADD_VERBS[base]} {q}"
    if base == 6:
        return f"Removed {emoji} from {q}"
    return f"Removed {_REMOVE_NOUNS[base]} from {q}"


@dataclass(frozen=True, slots=True)
class AttachmentSpec:
    """One file sent with a message. `filename="auto"` makes a realistic
    `~/Library/Messages/Attachments/xx/yy/<UUID>/<transfer_name>` path; None stores NULL
    (imessage-exporter's "No path provided" case)."""

    transfer_name: str | None
    mime_type: str | None
    uti: str | None
    total_bytes: int
    filename: str | None = "auto"
    is_sticker: bool = False
    hide: bool = False


# Message columns the writer fills, with what Messages puts there on insert. Everything
# else keeps the column DEFAULT (so date_edited is 0 on Sequoia but NULL on Sonoma, as in
# the real dumps); cache_roomnames / cache_has_attachments are left to the triggers.
# Columns whose value always equals their DEFAULT (is_emote, is_spam, …) are not bound at
# all: fewer parameters per row is a large share of bulk insert time.
_MESSAGE_DEFAULTS: dict[str, Any] = {
    "ROWID": None,
    "guid": None,
    "text": None,
    "handle_id": 0,
    "subject": None,
    "attributedBody": None,
    "version": 10,
    "service": None,
    "account": None,
    "account_guid": None,
    "date": 0,
    "date_read": 0,
    "date_delivered": 0,
    "is_delivered": 0,
    "is_finished": 1,
    "is_from_me": 0,
    "is_read": 0,
    "is_sent": 0,
    "has_dd_results": 0,
    "was_data_detected": 1,
    "is_audio_message": 0,
    "is_played": 0,
    "date_played": 0,
    "item_type": 0,
    "other_handle": 0,
    "group_title": None,
    "group_action_type": 0,
    "expire_state": 0,
    "associated_message_guid": None,
    "associated_message_type": 0,
    "balloon_bundle_id": None,
    "payload_data": None,
    "expressive_send_style_id": None,
    "associated_message_range_length": 0,
    "message_summary_info": None,
    "destination_caller_id": None,
    "reply_to_guid": None,
    "thread_originator_guid": None,
    "thread_originator_part": None,
    "part_count": None,
    "associated_message_emoji": None,
}


_ATTACHMENT_COLUMNS = (
    "ROWID",
    "guid",
    "created_date",
    "start_date",
    "filename",
    "uti",
    "mime_type",
    "transfer_state",
    "is_outgoing",
    "transfer_name",
    "total_bytes",
    "is_sticker",
    "hide_attachment",
    "original_guid",
)


class _Chat:
    __slots__ = ("guid", "handles", "is_group", "last_guid", "room_name", "rowid", "service")

    def __init__(self, rowid: int, guid: str, is_group: bool, service: str, room: str | None):
        self.rowid = rowid
        self.guid = guid
        self.is_group = is_group
        self.service = service
        self.room_name = room
        self.handles: list[int] = []
        self.last_guid: str | None = None


class _Info:
    """What later edits/unsends of a message need: its parts and dates (recent rows only)."""

    __slots__ = ("chat", "date", "guid", "parts", "seconds")

    def __init__(self, guid: str, parts: list[Any], date: int, chat: int | None, seconds: bool):
        self.guid = guid
        self.parts = parts  # list of str (text part) or AttachmentSpec, in body order
        self.date = date
        self.chat = chat
        self.seconds = seconds


class _Txn:
    """One public writer call: its own IMMEDIATE transaction when live, nothing in bulk.

    Nested calls (an event that also edits chat_handle_join) join the outer transaction.
    A plain class instead of @contextmanager because bulk loads enter it per row.
    """

    __slots__ = ("depth", "w")

    def __init__(self, writer: MessagesWriter) -> None:
        self.w = writer
        self.depth = 0

    def __enter__(self) -> None:
        self.depth += 1
        if self.depth == 1 and not self.w._bulk:
            self.w.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.depth -= 1
        if self.depth:
            return
        w = self.w
        if w._bulk:
            if exc_type is None and len(w._pending) >= w.BATCH:
                w._flush()
                w.conn.execute("COMMIT")
                w.conn.execute("BEGIN")
        elif exc_type is None:
            w.conn.execute("COMMIT")
        else:
            w.conn.execute("ROLLBACK")


class MessagesWriter:
    """Writes a chat.db like Messages.app: see the module docstring for bulk vs live use.

    `path`: the chat.db to create (create=True, must not exist) or to append to.
    `owner_phone` / `owner_email`: the database owner's addresses (account,
    destination_caller_id, chat.last_addressed_handle). `seed` makes GUIDs reproducible.
    `seconds_before`: rows dated before this Unix-ns instant store dates in seconds (old
    migrated rows, §2); the legacy profile always does. `indexes=False` defers the
    profile's indexes until `create_indexes()` (bulk loads are 2–3× faster that way).

    Methods return ROWIDs (and GUIDs for message rows) and take handles and chats by ROWID
    (`handle()` / `chat()` return them; `handles`, `chats`, `find_chat()` look them up).
    Not thread-safe: use one writer from one thread at a time.
    """

    RECENT = 50_000  # messages remembered for edit/unsend/tapback summaries
    BATCH = 20_000  # bulk rows per executemany batch (and per commit)
    DIRECTION_SHARE = 0.25  # bodies whose text runs also carry the writing direction

    def __init__(
        self,
        path: Path | str,
        profile: str = "sequoia",
        create: bool = True,
        *,
        owner_phone: str = "+14155550100",
        owner_email: str = "owner@icloud.com",
        seed: int | None = None,
        seconds_before: int | None = None,
        indexes: bool = True,
    ) -> None:
        self.path = Path(path)
        self.profile = chatdb_schema.profile(profile)
        self.rng = random.Random(seed)
        self.owner_phone = owner_phone
        self.owner_email = owner_email
        self.seconds_before = seconds_before
        if create and self.path.exists():
            raise FileExistsError(self.path)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        chatdb_schema.register_functions(self.conn)
        self.conn.execute("PRAGMA busy_timeout=10000")
        if create:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("BEGIN")
            chatdb_schema.create_schema(self.conn, profile, indexes=indexes)
            self.conn.execute("COMMIT")
        self._columns = {
            t: set(self._table_columns(t)) for t in ("message", "chat", "handle", "attachment")
        }
        self.has = self._columns["message"].__contains__
        self._att_cols = [c for c in _ATTACHMENT_COLUMNS if c in self._columns["attachment"]]
        self._att_sql = (
            f"INSERT INTO attachment ({', '.join(self._att_cols)})"
            f" VALUES ({', '.join('?' * len(self._att_cols))})"
        )
        self._prepare_message_sql()
        self._bulk = False
        self._txn_ctx = _Txn(self)
        self._pending: dict[int, list[Any]] = {}
        self._pending_att: list[tuple[Any, ...]] = []
        self._pending_cmj: list[tuple[int, int, int]] = []
        self._pending_maj: list[tuple[int, int]] = []
        self._recent: OrderedDict[int, _Info] = OrderedDict()
        self._recent_guids: dict[str, _Info] = {}
        self._blob_cache: dict[tuple[str, bool], bytes] = {}
        self.handles: dict[tuple[str, str], int] = {}
        self.handle_ids: dict[int, tuple[str, str]] = {}
        self.chats: dict[int, _Chat] = {}
        self._load_existing()
        self._next_message = self._next_rowid("message")
        self._next_attachment = self._next_rowid("attachment")
        self._accounts = {
            svc: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{svc}:{owner_email}")).upper()
            for svc in ("iMessage", "SMS", "RCS")
        }

    # ------------------------------------------------------------------ setup

    def _table_columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")]

    def _prepare_message_sql(self) -> None:
        present = self._columns["message"] | {"ROWID"}
        cols = [c for c in _MESSAGE_DEFAULTS if c in present]
        self._mcols = cols
        n = len(cols)
        # Absent columns map to a trailing scratch slot that is sliced off before insert.
        self._p = {c: cols.index(c) if c in present else n for c in _MESSAGE_DEFAULTS}
        self._template = [_MESSAGE_DEFAULTS[c] for c in cols] + [None]
        self._n = n
        self._msg_sql = f"INSERT INTO message ({', '.join(cols)}) VALUES ({', '.join('?' * n)})"

    def _next_rowid(self, table: str) -> int:
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,))
        seq = row.fetchone()
        top: int = self.conn.execute(f"SELECT COALESCE(MAX(ROWID), 0) FROM {table}").fetchone()[0]
        last: int = seq[0] if seq else 0
        return max(last, top) + 1

    def _load_existing(self) -> None:
        for rowid, ident, service in self.conn.execute("SELECT ROWID, id, service FROM handle"):
            self.handles[(ident, service)] = rowid
            self.handle_ids[rowid] = (ident, service)
        for rowid, guid, style, service, room in self.conn.execute(
            "SELECT ROWID, guid, style, service_name, room_name FROM chat"
        ):
            self.chats[rowid] = _Chat(rowid, guid, style == 43 or ";+;" in guid, service, room)
        for chat_id, handle_id in self.conn.execute(
            "SELECT chat_id, handle_id FROM chat_handle_join ORDER BY rowid"
        ):
            if chat_id in self.chats:
                self.chats[chat_id].handles.append(handle_id)

    def close(self) -> None:
        if self._bulk:
            raise RuntimeError("close() inside bulk()")
        self.conn.close()

    def __enter__(self) -> MessagesWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_indexes(self) -> None:
        """Add the indexes deferred with `indexes=False`."""
        self._flush()
        chatdb_schema.create_indexes(self.conn, self.profile.name)

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def bulk(self) -> Iterator[MessagesWriter]:
        """Buffer rows and commit in large batches (one writer, no concurrent writers)."""
        if self._bulk:
            yield self
            return
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("BEGIN")
        self._bulk = True
        try:
            yield self
            self._flush()
            self.conn.execute("COMMIT")
        except BaseException:
            self._pending.clear()
            self._pending_att.clear()
            self._pending_cmj.clear()
            self._pending_maj.clear()
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        finally:
            self._bulk = False
            self.conn.execute("PRAGMA synchronous=NORMAL")

    def _txn(self) -> _Txn:
        return self._txn_ctx

    def _flush(self) -> None:
        n = self._n
        if self._pending:
            self.conn.executemany(self._msg_sql, [r[:n] for r in self._pending.values()])
            self._pending.clear()
        if self._pending_att:
            self.conn.executemany(self._att_sql, self._pending_att)
            self._pending_att.clear()
        if self._pending_cmj:
            self.conn.executemany(
                "INSERT INTO chat_message_join (chat_id, message_id, message_date) VALUES (?, ?, ?)",
                self._pending_cmj,
            )
            self._pending_cmj.clear()
        if self._pending_maj:
            self.conn.executemany(
                "INSERT INTO message_attachment_join (message_id, attachment_id) VALUES (?, ?)",
                self._pending_maj,
            )
            self._pending_maj.clear()

    def checkpoint(self) -> None:
        """Fold the WAL into chat.db (what Messages does from time to time)."""
        self._flush()
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ------------------------------------------------------------------ helpers

    def new_guid(self) -> str:
        return guid_from_bits(self.rng.getrandbits(128))

    def stores_seconds(self, unix_ns: int) -> bool:
        """Whether a row dated `unix_ns` stores its dates in seconds (old rows, legacy)."""
        if not self.profile.ns_dates:
            return True
        return self.seconds_before is not None and unix_ns < self.seconds_before

    def stored_date_ns(self, unix_ns: int) -> int:
        """The Unix-ns instant a reader recovers from what the writer stores for `unix_ns`."""
        secs = self.stores_seconds(unix_ns)
        return from_apple(to_apple(unix_ns, secs), secs)

    def _account(self, service: str) -> tuple[str, str]:
        if service == "iMessage":
            return f"E:{self.owner_email}", self._accounts["iMessage"]
        return f"P:{self.owner_phone}", self._accounts.get(service, self._accounts["SMS"])

    def _info(self, rowid: int) -> _Info | None:
        return self._recent.get(rowid)

    def _remember(self, rowid: int, info: _Info) -> None:
        self._recent[rowid] = info
        self._recent_guids[info.guid] = info
        if len(self._recent) > self.RECENT:
            _, old = self._recent.popitem(last=False)
            self._recent_guids.pop(old.guid, None)

    def _body(
        self,
        parts: Sequence[Any],
        guid: str,
        mutable: bool = True,
        length_overrun: int = 0,
        attachment_guids: Sequence[str] | None = None,
    ) -> tuple[str, bytes, list[tuple[str, AttachmentSpec]]]:
        """(body string, attributedBody, [(attachment guid, spec)]) for parts in body order.

        `length_overrun` declares the text that many bytes longer than it is, as some real
        Messages.app bodies do (see `encode_attributed_string`). `attachment_guids` names
        the attachments, in body order, instead of `at_<part>_<message GUID>` (Messages.app
        also writes bare UUIDs)."""
        named = iter(attachment_guids or ())
        # Some real bodies also carry the natural writing direction on text runs (NSNumber q
        # -1, §6 of typedstream.md); readers must not depend on the dictionary's shape.
        direction = self.rng.random() < self.DIRECTION_SHARE
        if len(parts) == 1 and isinstance(parts[0], str) and mutable and not length_overrun:
            text = parts[0]
            blob = self._blob_cache.get((text, direction))
            if blob is None:
                text_runs: list[tuple[int, dict[str, object]]] | None = (
                    [(utf16_len(text), {DIRECTION_KEY: -1, PART_KEY: 0})]
                    if direction and text
                    else None
                )
                blob = encode_attributed_string(text, text_runs)
                if len(self._blob_cache) > 200_000:
                    self._blob_cache.clear()
                self._blob_cache[(text, direction)] = blob
            return text, blob, []
        chunks: list[str] = []
        runs: list[tuple[int, dict[str, object]]] = []
        atts: list[tuple[str, AttachmentSpec]] = []
        for i, part in enumerate(parts):
            if isinstance(part, str):
                chunks.append(part)
                if part:
                    attrs: dict[str, object] = (
                        {DIRECTION_KEY: -1, PART_KEY: i} if direction else {PART_KEY: i}
                    )
                    runs.append((utf16_len(part), attrs))
            else:
                att_guid = next(named, None) or f"at_{i}_{guid}"
                atts.append((att_guid, part))
                chunks.append("\ufffc")
                attrs = {PART_KEY: i, FILE_GUID_KEY: att_guid}
                if part.transfer_name:
                    attrs[FILENAME_KEY] = part.transfer_name
                runs.append((1, attrs))
        body = "".join(chunks)
        enc = "q" if atts else "i"
        blob = encode_attributed_string(
            body, runs, mutable=mutable, part_encoding=enc, length_overrun=length_overrun
        )
        return body, blob, atts

    def _attachment_path(self, name: str | None) -> str:
        r = self.rng.getrandbits(16)
        return (
            f"~/Library/Messages/Attachments/{r >> 8:02x}/{r & 0xFF:02x}/"
            f"{self.new_guid()}/{name or 'Attachment'}"
        )

    def _add_attachment(
        self, message_rowid: int, att_guid: str, spec: AttachmentSpec, date: int, from_me: bool
    ) -> int:
        rowid = self._next_attachment
        self._next_attachment += 1
        filename = (
            self._attachment_path(spec.transfer_name) if spec.filename == "auto" else spec.filename
        )
        values = {
            "ROWID": rowid,
            "guid": att_guid,
            "created_date": to_apple(date, seconds=True),  # attachment dates are seconds (§2)
            "start_date": 0,
            "filename": filename,
            "uti": spec.uti,
            "mime_type": spec.mime_type,
            "transfer_state": 5,  # finished
            "is_outgoing": int(from_me),
            "transfer_name": spec.transfer_name,
            "total_bytes": spec.total_bytes,
            "is_sticker": int(spec.is_sticker),
            "hide_attachment": int(spec.hide),
            "original_guid": att_guid,
        }
        row = tuple(values[c] for c in self._att_cols)
        if self._bulk:
            self._pending_att.append(row)
            self._pending_maj.append((message_rowid, rowid))
        else:
            self.conn.execute(self._att_sql, row)
            self.conn.execute(
                "INSERT INTO message_attachment_join (message_id, attachment_id) VALUES (?, ?)",
                (message_rowid, rowid),
            )
        return rowid

    def _insert(self, row: list[Any], chat: _Chat | None, apple_date: int) -> int:
        p = self._p
        if self._bulk:
            rowid = self._next_message
            self._next_message += 1
            row[p["ROWID"]] = rowid
            self._pending[rowid] = row
            if chat is not None:
                self._pending_cmj.append((chat.rowid, rowid, apple_date))
            return rowid
        cur = self.conn.execute(self._msg_sql, row[: self._n])
        inserted = cur.lastrowid
        assert inserted is not None
        rowid = inserted
        self._next_message = max(self._next_message, rowid + 1)
        if chat is not None:
            self.conn.execute(
                "INSERT INTO chat_message_join (chat_id, message_id, message_date) VALUES (?, ?, ?)",
                (chat.rowid, rowid, apple_date),
            )
        return rowid

    def _update(self, rowid: int, values: dict[str, Any]) -> None:
        row = self._pending.get(rowid)
        if row is not None:
            p, n = self._p, self._n
            if all(p.get(col, n) < n for col in values if self.has(col)):
                for col, value in values.items():
                    if col in p:
                        row[p[col]] = value
                return
            # A column the insert leaves to its DEFAULT (date_edited, date_retracted):
            # write the buffered rows, then update in place like Messages does.
            self._flush()
        present = self._columns["message"]
        cols = [c for c in values if c in present]
        if not cols:
            return
        sets = ", ".join(f"{c} = ?" for c in cols)
        self.conn.execute(
            f"UPDATE message SET {sets} WHERE ROWID = ?", [values[c] for c in cols] + [rowid]
        )

    def _row(self, rowid: int, *cols: str) -> tuple[Any, ...]:
        pending = self._pending.get(rowid)
        if pending is not None:
            return tuple(pending[self._p[c]] for c in cols)
        got = self.conn.execute(
            f"SELECT {', '.join(cols)} FROM message WHERE ROWID = ?", (rowid,)
        ).fetchone()
        if got is None:
            raise KeyError(f"no message with ROWID {rowid}")
        return tuple(got)

    def _base_row(
        self,
        guid: str,
        chat: _Chat | None,
        *,
        from_me: bool,
        sender: int | None,
        date: int,
        service: str | None,
        handle_id: int | None,
    ) -> tuple[list[Any], bool, int]:
        p = self._p
        row = self._template.copy()
        secs = self.stores_seconds(date)
        apple = to_apple(date, secs)
        svc = service or (chat.service if chat else "iMessage")
        account, account_guid = self._account(svc)
        if handle_id is None:
            if from_me:
                handle_id = chat.handles[0] if chat and not chat.is_group and chat.handles else 0
            else:
                handle_id = sender or 0
        row[p["guid"]] = guid
        row[p["handle_id"]] = handle_id
        row[p["service"]] = svc
        row[p["account"]] = account
        row[p["account_guid"]] = account_guid
        row[p["date"]] = apple
        row[p["is_from_me"]] = int(from_me)
        row[p["destination_caller_id"]] = self.owner_phone or self.owner_email
        if from_me:
            row[p["is_sent"]] = 1
            row[p["is_delivered"]] = 1
        else:
            row[p["is_delivered"]] = 1
        if chat is not None and chat.last_guid is not None:
            row[p["reply_to_guid"]] = chat.last_guid
        return row, secs, apple

    def _chat(self, chat: int | None) -> _Chat | None:
        if chat is None:
            return None
        try:
            return self.chats[chat]
        except KeyError:
            raise KeyError(f"no chat with ROWID {chat}") from None

    # ------------------------------------------------------------------ handles and chats

    def handle(
        self,
        identifier: str,
        service: str = "iMessage",
        *,
        uncanonicalized_id: str | None = None,
        country: str | None = "us",
        person_centric_id: str | None = None,
    ) -> int:
        """ROWID of the (identifier, service) handle, inserting it on first use (§7)."""
        key = (identifier, service)
        rowid = self.handles.get(key)
        if rowid is not None:
            return rowid
        cols = {"id": identifier, "country": country, "service": service}
        cols["uncanonicalized_id"] = uncanonicalized_id
        if "person_centric_id" in self._columns["handle"]:
            cols["person_centric_id"] = person_centric_id
        with self._txn():
            cur = self.conn.execute(
                f"INSERT INTO handle ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                list(cols.values()),
            )
        rowid = cur.lastrowid
        assert rowid is not None
        self.handles[key] = rowid
        self.handle_ids[rowid] = key
        return rowid

    def chat(
        self,
        participants: Sequence[int],
        *,
        service: str = "iMessage",
        group: bool | None = None,
        display_name: str | None = "",
        guid_prefix: str | None = None,
        room_name: str | None = None,
        group_id: str | None = None,
        properties: dict[str, Any] | None = None,
        is_archived: bool = False,
    ) -> int:
        """Create a chat with its chat_handle_join rows; returns its ROWID (§7, §13).

        1:1 chats get `<service>;-;<handle id>` (or `guid_prefix`, e.g. "any" for the
        macOS 26 form), style 45, no room_name; groups get `<service>;+;chat<digits>`,
        style 43, room_name = chat_identifier, a group_id UUID.
        """
        is_group = len(participants) > 1 if group is None else group
        prefix = guid_prefix or service
        if is_group:
            room = room_name or f"chat{self.rng.randrange(10**17, 10**18)}"
            guid = f"{prefix};+;{room}"
            identifier = room
            style = 43
            gid = group_id or self.new_guid()
        else:
            room = None
            identifier = self.handle_ids[participants[0]][0]
            guid = f"{prefix};-;{identifier}"
            style = 45
            gid = group_id or self.new_guid()
        cols: dict[str, Any] = {
            "guid": guid,
            "style": style,
            "state": 3,
            "account_id": self._accounts.get(service, self._accounts["SMS"]),
            "properties": plistlib.dumps(properties, fmt=plistlib.FMT_BINARY)
            if properties
            else None,
            "chat_identifier": identifier,
            "service_name": service,
            "room_name": room,
            "account_login": self._account(service)[0],
            "is_archived": int(is_archived),
            "last_addressed_handle": self.owner_phone,
            "display_name": display_name,
            "group_id": gid,
            "is_filtered": 0,
            "successful_query": 1,
            "original_group_id": gid,
        }
        have = self._columns["chat"]
        cols = {k: v for k, v in cols.items() if k in have}
        with self._txn():
            cur = self.conn.execute(
                f"INSERT INTO chat ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                list(cols.values()),
            )
            rowid = cur.lastrowid
            assert rowid is not None
            self.conn.executemany(
                "INSERT INTO chat_handle_join (chat_id, handle_id) VALUES (?, ?)",
                [(rowid, h) for h in participants],
            )
        info = _Chat(rowid, guid, is_group, service, room)
        info.handles = list(participants)
        self.chats[rowid] = info
        return rowid

    def chat_guid(self, chat: int) -> str:
        return self.chats[chat].guid

    def find_chat(self, guid: str) -> int | None:
        """ROWID of the chat with this GUID (e.g. 'iMessage;-;+15551234567'), if any."""
        return next((c.rowid for c in self.chats.values() if c.guid == guid), None)

    # ------------------------------------------------------------------ messages

    def message(
        self,
        chat: int | None,
        text: str | None,
        *,
        from_me: bool,
        sender: int | None = None,
        date: int,
        body: str = "attributed",
        attachments: Sequence[AttachmentSpec] = (),
        reply_to: str | None = None,
        reply_part: int = 0,
        service: str | None = None,
        effect: str | None = None,
        balloon: str | None = None,
        payload: bytes | None = None,
        audio: bool = False,
        subject: str | None = None,
        sent: bool = True,
        date_delivered: int | None = None,
        date_read: int | None = None,
        handle_id: int | None = None,
        corrupt: bytes | None = None,
        length_overrun: int = 0,
        guid: str | None = None,
        attachment_guids: Sequence[str] | None = None,
    ) -> tuple[int, str]:
        """Insert one message (and its attachments and chat link); returns (ROWID, GUID).

        `chat=None` writes an orphan (no chat_message_join). `sender` is the sender's handle
        ROWID for received messages; sent ones get handle_id 0 in groups and the recipient
        in 1:1 chats unless `handle_id` overrides it (some real rows carry 0, §3).
        `body`: "attributed" (text NULL, Ventura+ Macs), "text" (old rows), "both", "none".
        The body is the attachments' U+FFFC characters followed by `text`; `corrupt`
        replaces the attributedBody bytes (a damaged blob); `length_overrun` > 0 writes a
        blob whose string length prefix runs that many bytes past the text, a shape real
        Messages.app bodies have (the text is still recoverable). `sent=False` inserts an
        outgoing row not yet sent, as Messages does before the server acknowledges it.
        `attachment_guids` names the attachments (bare UUIDs, say) in body order.
        """
        if not from_me and sender is None and handle_id is None:
            raise ValueError("a received message needs `sender` (the sender's handle ROWID)")
        c = self._chat(chat)
        guid = guid or self.new_guid()
        parts: list[Any] = [*attachments]
        if text:
            parts.append(text)
        row, secs, apple = self._base_row(
            guid, c, from_me=from_me, sender=sender, date=date, service=service, handle_id=handle_id
        )
        p = self._p
        atts: list[tuple[str, AttachmentSpec]] = []
        if parts:
            body_text, blob, atts = self._body(
                parts, guid, length_overrun=length_overrun, attachment_guids=attachment_guids
            )
            if body in ("attributed", "both"):
                row[p["attributedBody"]] = corrupt if corrupt is not None else blob
            if body in ("text", "both"):
                row[p["text"]] = body_text
            if body == "none":
                atts = [(f"at_{i}_{guid}", a) for i, a in enumerate(attachments)]
            row[p["part_count"]] = len(parts)
        if from_me and not sent:
            row[p["is_sent"]] = 0
            row[p["is_delivered"]] = 0
            row[p["is_finished"]] = 0
        if date_delivered is not None:
            row[p["date_delivered"]] = to_apple(date_delivered, secs)
        if date_read is not None:
            row[p["is_read"]] = 1
            row[p["date_read"]] = to_apple(date_read, secs)
        if reply_to is not None:
            target = self._recent_by_guid(reply_to)
            length = utf16_len(target) if target else 0
            row[p["thread_originator_guid"]] = reply_to
            row[p["thread_originator_part"]] = f"{reply_part}:0:{length}"
        if effect:
            row[p["expressive_send_style_id"]] = effect
        if balloon:
            row[p["balloon_bundle_id"]] = balloon
            row[p["payload_data"]] = payload
            row[p["has_dd_results"]] = 1
        if audio:
            row[p["is_audio_message"]] = 1
            row[p["expire_state"]] = 1 if from_me else 0
        if subject is not None:
            row[p["subject"]] = subject
        with self._txn():
            rowid = self._insert(row, c, apple)
            for att_guid, spec in atts:
                self._add_attachment(rowid, att_guid, spec, date, from_me)
        if c is not None:
            c.last_guid = guid
        self._remember(rowid, _Info(guid, parts, date, chat, secs))
        return rowid, guid

    def _recent_by_guid(self, guid: str) -> str | None:
        # Only used for thread_originator_part's length field; a miss just writes 0.
        info = self._recent_guids.get(guid)
        if info is None:
            return None
        return next((x for x in info.parts if isinstance(x, str)), None)

    def tapback(
        self,
        chat: int,
        target_guid: str,
        kind: int,
        *,
        part: int = 0,
        emoji: str | None = None,
        from_me: bool,
        sender: int | None = None,
        date: int,
        target_form: str = "p",
        quoted: str = "a message",
        sticker: AttachmentSpec | None = None,
        body: str = "both",
    ) -> tuple[int, str]:
        """Insert a tapback row (kind 2000–2007 add, 3000–3007 remove), §5.

        `target_form`: "p" → `p:<part>/<GUID>`, "bp" → `bp:<GUID>` (balloons), "bare" →
        the GUID alone. `quoted` is the reacted-to text for the summary text; a sticker
        tapback (2007) carries its image as an attachment after the summary text.
        """
        if not (2000 <= kind <= 2007 or 3000 <= kind <= 3007):
            raise ValueError(f"not a tapback kind: {kind}")
        base = kind % 1000
        if base in (6,) and not emoji:
            raise ValueError("emoji tapbacks need `emoji`")
        if target_form == "p":
            assoc = f"p:{part}/{target_guid}"
        elif target_form == "bp":
            assoc = f"bp:{target_guid}"
        elif target_form == "bare":
            assoc = target_guid
        else:
            raise ValueError(f"unknown target_form {target_form!r}")
        c = self._chat(chat)
        guid = self.new_guid()
        summary = tapback_summary(kind, quoted, emoji)
        parts: list[Any] = [summary]
        if sticker is not None and kind == 2007:
            parts.append(sticker)
        row, _secs, apple = self._base_row(
            guid, c, from_me=from_me, sender=sender, date=date, service=None, handle_id=None
        )
        p = self._p
        body_text, blob, atts = self._body(parts, guid)
        if body in ("attributed", "both"):
            row[p["attributedBody"]] = blob
        if body in ("text", "both"):
            row[p["text"]] = body_text
        row[p["associated_message_guid"]] = assoc
        row[p["associated_message_type"]] = kind
        row[p["associated_message_range_length"]] = utf16_len(quoted)
        if base == 6:
            row[p["associated_message_emoji"]] = emoji
        row[p["part_count"]] = len(parts)
        if not from_me:
            row[p["is_read"]] = 1
            row[p["date_read"]] = apple
        with self._txn():
            rowid = self._insert(row, c, apple)
            for att_guid, spec in atts:
                self._add_attachment(rowid, att_guid, spec, date, from_me)
        return rowid, guid

    # ------------------------------------------------------------------ system events

    def _event(
        self,
        chat: int,
        *,
        item_type: int,
        action: int = 0,
        other: int = 0,
        title: str | None = None,
        from_me: bool,
        sender: int | None,
        date: int,
        attachment: AttachmentSpec | None = None,
    ) -> tuple[int, str]:
        c = self._chat(chat)
        guid = self.new_guid()
        row, _secs, apple = self._base_row(
            guid, c, from_me=from_me, sender=sender, date=date, service=None, handle_id=None
        )
        p = self._p
        if from_me:
            row[p["handle_id"]] = 0
        row[p["item_type"]] = item_type
        row[p["group_action_type"]] = action
        row[p["other_handle"]] = other
        row[p["group_title"]] = title
        row[p["is_read"]] = 1
        row[p["was_data_detected"]] = 0
        with self._txn():
            rowid = self._insert(row, c, apple)
            if attachment is not None:
                self._add_attachment(rowid, f"at_0_{guid}", attachment, date, from_me)
        return rowid, guid

    def rename_group(
        self, chat: int, title: str, *, from_me: bool, sender: int | None = None, date: int
    ) -> tuple[int, str]:
        """item_type 2 with group_title; chat.display_name follows (§6)."""
        with self._txn():
            out = self._event(
                chat, item_type=2, title=title, from_me=from_me, sender=sender, date=date
            )
            self.conn.execute("UPDATE chat SET display_name = ? WHERE ROWID = ?", (title, chat))
        return out

    def add_member(
        self, chat: int, handle: int, *, from_me: bool, sender: int | None = None, date: int
    ) -> tuple[int, str]:
        """item_type 1 / group_action_type 0, other_handle = the added handle."""
        with self._txn():
            out = self._event(
                chat, item_type=1, action=0, other=handle, from_me=from_me, sender=sender, date=date
            )
            self.conn.execute(
                "INSERT OR IGNORE INTO chat_handle_join (chat_id, handle_id) VALUES (?, ?)",
                (chat, handle),
            )
        if handle not in self.chats[chat].handles:
            self.chats[chat].handles.append(handle)
        return out

    def remove_member(
        self, chat: int, handle: int, *, from_me: bool, sender: int | None = None, date: int
    ) -> tuple[int, str]:
        """item_type 1 / group_action_type 1, other_handle = the removed handle."""
        with self._txn():
            out = self._event(
                chat, item_type=1, action=1, other=handle, from_me=from_me, sender=sender, date=date
            )
            self._drop_member(chat, handle)
        return out

    def leave_group(
        self, chat: int, *, from_me: bool, sender: int | None = None, date: int
    ) -> tuple[int, str]:
        """item_type 3 / group_action_type 0; handle_id = who left (0 = the owner)."""
        with self._txn():
            out = self._event(
                chat, item_type=3, action=0, from_me=from_me, sender=sender, date=date
            )
            if not from_me and sender is not None:
                self._drop_member(chat, sender)
        return out

    def set_group_photo(
        self,
        chat: int,
        photo: AttachmentSpec,
        *,
        from_me: bool,
        sender: int | None = None,
        date: int,
    ) -> tuple[int, str]:
        """item_type 3 / group_action_type 1 with the image linked via message_attachment_join."""
        with self._txn():
            out = self._event(
                chat,
                item_type=3,
                action=1,
                from_me=from_me,
                sender=sender,
                date=date,
                attachment=photo,
            )
            props = plistlib.dumps({"groupPhotoGuid": f"at_0_{out[1]}"}, fmt=plistlib.FMT_BINARY)
            self.conn.execute("UPDATE chat SET properties = ? WHERE ROWID = ?", (props, chat))
        return out

    def remove_group_photo(
        self, chat: int, *, from_me: bool, sender: int | None = None, date: int
    ) -> tuple[int, str]:
        """item_type 3 / group_action_type 2."""
        return self._event(chat, item_type=3, action=2, from_me=from_me, sender=sender, date=date)

    def _drop_member(self, chat: int, handle: int) -> None:
        self._flush()  # the delete trigger looks at message rows for this handle
        self.conn.execute(
            "DELETE FROM chat_handle_join WHERE chat_id = ? AND handle_id = ?", (chat, handle)
        )
        info = self.chats[chat]
        if handle in info.handles:
            info.handles.remove(handle)

    # ------------------------------------------------------------------ updates in place

    def mark_sent(self, rowid: int) -> None:
        with self._txn():
            self._update(rowid, {"is_sent": 1, "is_finished": 1})

    def deliver(self, rowid: int, date: int) -> None:
        """Delivery receipt: is_delivered = 1, date_delivered (sent rows also become sent)."""
        (from_me,) = self._row(rowid, "is_from_me")
        values: dict[str, Any] = {
            "is_delivered": 1,
            "date_delivered": to_apple(date, self.stores_seconds(date)),
        }
        if from_me:
            values.update(is_sent=1, is_finished=1)
        with self._txn():
            self._update(rowid, values)

    def read(self, rowid: int, date: int) -> None:
        """Read receipt (sent rows) or the owner reading (received rows): is_read, date_read."""
        with self._txn():
            self._update(
                rowid, {"is_read": 1, "date_read": to_apple(date, self.stores_seconds(date))}
            )

    def play(self, rowid: int, date: int) -> None:
        with self._txn():
            self._update(
                rowid, {"is_played": 1, "date_played": to_apple(date, self.stores_seconds(date))}
            )

    def fail(self, rowid: int, error: int = 4) -> None:
        """A failed send: error != 0 (fires Messages' update_last_failed_message_date trigger)."""
        with self._txn():
            self._update(rowid, {"error": error, "is_finished": 1, "is_sent": 0})

    def _parts_of(self, rowid: int) -> tuple[_Info | None, list[Any]]:
        info = self._info(rowid)
        if info is not None:
            return info, list(info.parts)
        text, blob, _date = self._row(rowid, "text", "attributedBody", "date")
        body = None
        if blob:
            from chatstats.imessage.typedstream import TypedStreamError, extract_text

            try:
                body = extract_text(blob)
            except TypedStreamError:
                body = None
        if body is None:
            body = text
        if body is None:
            raise ValueError(f"message {rowid} has no readable body to edit")
        return None, [body]

    def _summary(self, rowid: int) -> dict[str, Any]:
        (blob,) = self._row(rowid, "message_summary_info")
        if blob:
            try:
                data = plistlib.loads(blob)
                if isinstance(data, dict):
                    return data
            except Exception:  # a damaged plist is replaced, as Messages would rewrite it
                pass
        return {}

    @staticmethod
    def _otr(parts: Sequence[Any]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        lo = 0
        for i, part in enumerate(parts):
            le = utf16_len(part) if isinstance(part, str) else 1
            out[str(i)] = {"lo": lo, "le": le}
            lo += le
        return out

    def edit(self, rowid: int, new_text: str, date: int, *, part: int | None = None) -> None:
        """Edit a text part (§9): date_edited, message_summary_info history, new body.

        The history (`ec`) keeps every version as a non-mutable NSAttributedString
        typedstream with its time in float seconds since 2001; the first edit also
        records the original. Like Ventura+ Messages, the `text` column is cleared.
        """
        if not self.has("date_edited"):
            raise NotImplementedError(f"profile {self.profile.name} has no edit columns")
        info, parts = self._parts_of(rowid)
        if part is None:
            part = max(i for i, x in enumerate(parts) if isinstance(x, str))
        if not isinstance(parts[part], str):
            raise ValueError(f"part {part} of message {rowid} is not text")
        old = parts[part]
        guid = info.guid if info else self._row(rowid, "guid")[0]
        orig_date = info.date if info else from_apple(self._row(rowid, "date")[0])
        summary = self._summary(rowid)
        history = summary.setdefault("ec", {}).setdefault(str(part), [])
        if not history:
            history.append(
                {
                    "d": (orig_date - APPLE_EPOCH_NS) / NS,
                    "t": encode_attributed_string(old, mutable=False),
                }
            )
        entry: dict[str, Any] = {
            "d": (date - APPLE_EPOCH_NS) / NS,
            "t": encode_attributed_string(new_text, mutable=False),
        }
        if len(history) % 2:
            entry["bcg"] = self.new_guid()
        history.append(entry)
        parts[part] = new_text
        ep = set(summary.get("ep", []))
        ep.add(part)
        ordered = {
            "otr": self._otr(parts),
            "ec": summary["ec"],
            "ep": sorted(ep),
            **{k: v for k, v in summary.items() if k not in ("otr", "ec", "ep", "ust", "amc")},
            "ust": True,
            "amc": 0,
        }
        _body_text, blob, _ = self._body(parts, guid)
        with self._txn():
            self._update(
                rowid,
                {
                    "date_edited": to_apple(date),
                    "message_summary_info": plistlib.dumps(ordered, fmt=plistlib.FMT_BINARY),
                    "attributedBody": blob,
                    "text": None,
                },
            )
        if info is not None:
            info.parts = parts

    def unsend(
        self, rowid: int, date: int, *, macos26: bool = False, parts: Sequence[int] | None = None
    ) -> None:
        """Undo Send (§9): body cleared, `rp` lists the withdrawn parts, date_edited set;
        date_retracted too, except on macOS 26 which stopped writing it."""
        if not self.has("date_edited"):
            raise NotImplementedError(f"profile {self.profile.name} has no unsend columns")
        info, body_parts = self._parts_of(rowid)
        withdrawn = sorted(range(len(body_parts)) if parts is None else set(parts))
        summary = self._summary(rowid)
        summary["otr"] = self._otr(body_parts)
        summary["rp"] = sorted(set(summary.get("rp", [])) | set(withdrawn))
        summary["ust"] = True
        summary["amc"] = 0
        values: dict[str, Any] = {
            "date_edited": to_apple(date),
            "message_summary_info": plistlib.dumps(summary, fmt=plistlib.FMT_BINARY),
        }
        remaining = [x for i, x in enumerate(body_parts) if i not in withdrawn]
        if remaining:
            guid = info.guid if info else self._row(rowid, "guid")[0]
            _body_text, blob, _ = self._body(remaining, guid)
            values.update(attributedBody=blob, text=None)
        else:
            values.update(attributedBody=None, text=None, part_count=0)
        if not macos26:
            values["date_retracted"] = to_apple(date)
        with self._txn():
            self._update(rowid, values)
        if info is not None:
            info.parts = remaining

    def delete(self, rowid: int) -> None:
        """Delete a message as Messages does: drop its chat link and let the triggers remove
        the row and log its GUID in deleted_messages / sync_deleted_messages."""
        with self._txn():
            self._flush()
            linked = self.conn.execute(
                "SELECT COUNT(*) FROM chat_message_join WHERE message_id = ?", (rowid,)
            ).fetchone()[0]
            if linked:
                self.conn.execute("DELETE FROM chat_message_join WHERE message_id = ?", (rowid,))
            else:
                self.conn.execute("DELETE FROM message WHERE ROWID = ?", (rowid,))
        info = self._recent.pop(rowid, None)
        if info is not None:
            self._recent_guids.pop(info.guid, None)

    def set_property(self, key: str, value: str) -> None:
        """A `_SqliteDatabaseProperties` entry (e.g. `_ClientVersion`)."""
        with self._txn():
            self.conn.execute(
                "INSERT OR REPLACE INTO _SqliteDatabaseProperties (key, value) VALUES (?, ?)",
                (key, value),
            )
