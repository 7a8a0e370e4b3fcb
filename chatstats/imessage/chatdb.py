"""Read-only access to Apple's chat.db (or an iPhone backup's sms.db).

Rules that keep Messages.app undisturbed and every schema readable:
- open with `mode=ro` + `query_only` (never `immutable=1`: it hides rows still in the WAL);
- read in short keyset chunks, each statement fetched whole, so no read transaction stays
  open and Messages.app's checkpoints are never blocked;
- select columns by name after probing `PRAGMA table_info`; a column an older macOS lacks
  reads as NULL (that is normal, not an error).
"""

from __future__ import annotations

import plistlib
import re
import sqlite3
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from chatstats.errors import SourceDataError


class ChatDBError(SourceDataError):
    """chat.db is missing, locked, not a Messages database, or failed while being read."""


SQLITE_MAGIC = b"SQLite format 3\x00"

# Message columns in the order rows come back; absent ones are selected as NULL.
MESSAGE_COLUMNS = (
    "ROWID",
    "guid",
    "text",
    "attributedBody",
    "handle_id",
    "is_from_me",
    "date",
    "service",
    "subject",
    "item_type",
    "group_action_type",
    "group_title",
    "other_handle",
    "associated_message_guid",
    "associated_message_type",
    "associated_message_emoji",
    "thread_originator_guid",
    "thread_originator_part",
    "date_edited",
    "date_retracted",
    "message_summary_info",
    "is_read",
    "date_read",
    "is_delivered",
    "date_delivered",
    "is_sent",
    "balloon_bundle_id",
    "expressive_send_style_id",
    "is_audio_message",
)
M = {name: i for i, name in enumerate(MESSAGE_COLUMNS)}
# The chat a message belongs to is appended after the message columns.
M_CHAT = len(MESSAGE_COLUMNS)

# Columns Messages.app updates on existing rows; the live tail keeps a cursor on each.
CHANGE_COLUMNS = ("date_edited", "date_retracted", "date_read", "date_delivered")

ATTACHMENT_COLUMNS = (
    "ROWID",
    "guid",
    "filename",
    "transfer_name",
    "mime_type",
    "uti",
    "total_bytes",
    "is_sticker",
    "created_date",
)
A = {name: i for i, name in enumerate(ATTACHMENT_COLUMNS)}
# After those columns an attachment row carries the 1-based byte offset of its guid in its
# message's attributedBody (0 or NULL: not there), then the message's ROWID and GUID.
BODY_AT = len(ATTACHMENT_COLUMNS)


class Handle(NamedTuple):
    rowid: int
    identifier: str
    service: str
    person_centric_id: str | None


class Chat(NamedTuple):
    rowid: int
    guid: str
    style: int | None
    chat_identifier: str | None
    service: str | None
    room_name: str | None
    display_name: str | None


# text_factory for every connection that reads Apple's files or the rows copied from them:
# a stray invalid UTF-8 byte (a damaged row) reads as U+FFFD instead of failing the query,
# so one bad row can never stop an import, a live sync or a page of the API. (C-level call.)
LENIENT_TEXT = partial(str, encoding="utf-8", errors="replace")


def readonly_uri(path: Path | str) -> str:
    """An SQLite URI opening `path` read-only. The path is percent-encoded: `?`, `#` and `%`
    in a folder name would otherwise end the path or start an escape."""
    return f"file:{quote(str(path))}?mode=ro"


# How long a read waits for Messages.app to release a write lock before the import gives up
# with a clear "locked" error. Messages.app holds its locks for milliseconds; a lock held
# for seconds is a backup tool or a crash, worth telling the user about.
BUSY_TIMEOUT_MS = 5000


def open_source(path: Path, *, busy_timeout_ms: int | None = None) -> sqlite3.Connection:
    """Open chat.db read-only, or raise ChatDBError saying what is wrong and what to do.

    `busy_timeout_ms` defaults to BUSY_TIMEOUT_MS, read at call time so tests can shorten it.
    """
    timeout = BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
    if not path.exists():
        raise ChatDBError(f"Messages database not found: {path}")
    if path.is_dir():
        raise ChatDBError(f"expected a chat.db file, got a folder: {path}")
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except PermissionError:
        raise ChatDBError(
            f"permission denied reading {path}; on macOS grant Full Disk Access to the app"
        ) from None
    if head != SQLITE_MAGIC:
        raise ChatDBError(f"{path} is not an SQLite database (encrypted or damaged?)")
    try:
        conn = sqlite3.connect(
            readonly_uri(path), uri=True, isolation_level=None, check_same_thread=False
        )
        conn.text_factory = LENIENT_TEXT
        conn.execute("PRAGMA query_only=1")
        conn.execute(f"PRAGMA busy_timeout={int(timeout)}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        raise ChatDBError(f"cannot read {path}: {exc}") from None
    missing = {"message", "handle", "chat", "chat_message_join"} - tables
    if missing:
        conn.close()
        raise ChatDBError(
            f"{path} is not a Messages database (missing {', '.join(sorted(missing))})"
        )
    return conn


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}  # table is a constant


def _select_list(available: set[str], wanted: tuple[str, ...], alias: str) -> str:
    return ", ".join(
        f"{alias}.{c}" if c in available or c == "ROWID" else f"NULL AS {c}" for c in wanted
    )


class Reader:
    """Chunked reads of one source database; every call is its own short statement.

    Any SQLite failure while reading (locked past the busy timeout, a damaged page) becomes
    a ChatDBError naming the problem, so callers roll back and report instead of crashing.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        try:
            self._init()
        except sqlite3.Error as exc:
            raise ChatDBError(f"cannot read the Messages database: {exc}") from None

    def _with_chats(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Append each row's chat ROWID (the lowest, for a row in several chats; None for
        an orphan), read with one range query over chat_message_join."""
        if not rows:
            return rows
        lo, hi = rows[0][0], rows[-1][0]
        if hi - lo > 4 * len(rows) + 1000:  # sparse ROWIDs (changed rows): ask for them
            ids = ",".join(str(int(r[0])) for r in rows)
            pairs = self._q(
                "SELECT message_id, MIN(chat_id) FROM chat_message_join"
                f" WHERE message_id IN ({ids}) GROUP BY message_id"
            )
        else:
            pairs = self._q(
                "SELECT message_id, MIN(chat_id) FROM chat_message_join"
                " WHERE message_id BETWEEN :lo AND :hi GROUP BY message_id",
                {"lo": lo, "hi": hi},
            )
        chats = dict(pairs)
        get = chats.get
        return [(*r, get(r[0])) for r in rows]

    def _q(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        try:
            return self.conn.execute(sql, params or {}).fetchall()
        except sqlite3.Error as exc:
            raise ChatDBError(f"reading the Messages database failed: {exc}") from None

    def _init(self) -> None:
        conn = self.conn
        self.message_columns = columns(conn, "message")
        self.handle_columns = columns(conn, "handle")
        self.chat_columns = columns(conn, "chat")
        self.has_attachments = bool(columns(conn, "attachment")) and bool(
            columns(conn, "message_attachment_join")
        )
        select = _select_list(self.message_columns, MESSAGE_COLUMNS, "m")
        # A message normally has one chat; when it has several, the lowest chat id wins
        # (the importer counts these). Orphans (no join row) come back with chat NULL.
        # The chat of each row is looked up per chunk with one range query on the join
        # table (a correlated subquery per row cost ~60% more) and appended to the row.
        self._select_head = f"SELECT {select} FROM message m"
        self._messages_sql = (
            f"{self._select_head} WHERE m.ROWID > :after ORDER BY m.ROWID LIMIT :limit"
        )
        if self.has_attachments:
            acols = columns(conn, "attachment")
            aselect = _select_list(acols, ATTACHMENT_COLUMNS, "a")
            # Where the body names the attachment (its __kIMFileTransferGUIDAttributeName
            # run): the order of a message's attachments whose guid carries no part number.
            body_at = (
                "instr(m.attributedBody, CAST(a.guid AS BLOB))"
                if "attributedBody" in self.message_columns and "guid" in acols
                else "NULL"
            )
            self._attachments_sql = (
                f"SELECT {aselect}, {body_at} AS body_at, x.message_id,"
                " m.guid AS message_guid FROM attachment a"
                f" JOIN message_attachment_join x ON x.attachment_id = a.ROWID"
                f" JOIN message m ON m.ROWID = x.message_id"
                f" WHERE a.ROWID > :after ORDER BY a.ROWID LIMIT :limit"
            )

    def handles(self) -> list[Handle]:
        pcid = (
            "person_centric_id" if "person_centric_id" in columns(self.conn, "handle") else "NULL"
        )
        rows = self._q(
            f"SELECT ROWID, id, COALESCE(service, ''), {pcid} FROM handle ORDER BY ROWID"
        )
        return [Handle(*r) for r in rows]

    def chats(self) -> list[Chat]:
        have = self.chat_columns
        cols = (
            "ROWID",
            "guid",
            "style",
            "chat_identifier",
            "service_name",
            "room_name",
            "display_name",
        )
        rows = self._q(f"SELECT {_select_list(have, cols, 'c')} FROM chat c ORDER BY c.ROWID")
        return [Chat(*r) for r in rows]

    def chat_handles(self) -> list[tuple[int, int]]:
        return self._q("SELECT chat_id, handle_id FROM chat_handle_join")

    def max_message_rowid(self) -> int:
        return int(self._q("SELECT COALESCE(MAX(ROWID), 0) FROM message")[0][0])

    def count_messages_after(self, after: int, upto: int | None = None) -> int:
        return int(
            self._q(
                "SELECT count(*) FROM message WHERE ROWID > :after AND ROWID <= :upto",
                {"after": after, "upto": upto if upto is not None else 2**63 - 1},
            )[0][0]
        )

    def message_chunks(
        self, after: int, limit: int = 5000, upto: int | None = None
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Rows with after < ROWID (≤ upto) in ROWID order, `limit` per statement."""
        while True:
            rows = self._q(self._messages_sql, {"after": after, "limit": limit})
            if upto is not None:
                rows = [r for r in rows if r[0] <= upto]
            if not rows:
                return
            yield self._with_chats(rows)
            after = rows[-1][0]

    def change_marks(
        self, conn: sqlite3.Connection | None = None, table: str = "message"
    ) -> dict[str, int]:
        """The highest value of each column Messages.app updates in place (0 if absent).

        `conn`/`table` let the bulk import read them from chat.db ATTACHed to its own write
        transaction (`src.message`), the same snapshot its rows come from."""
        present = [c for c in CHANGE_COLUMNS if c in self.message_columns]
        marks = dict.fromkeys(CHANGE_COLUMNS, 0)
        if present:
            sql = "SELECT " + ", ".join(f"COALESCE(MAX({c}), 0)" for c in present)
            sql += f" FROM {table}"  # a constant from our own code
            row = conn.execute(sql).fetchone() if conn is not None else self._q(sql)[0]
            marks.update(zip(present, row, strict=True))
        return marks

    def changed_rows(
        self, marks: dict[str, int], upto_rowid: int, since_date: int | None = None
    ) -> list[tuple[Any, ...]]:
        """Rows at or below the ROWID watermark whose edit/unsend/receipt columns moved past
        the marks. `since_date` (Apple ns) narrows the scan to recent rows via the date index."""
        present = [c for c in CHANGE_COLUMNS if c in self.message_columns]
        if not present:
            return []
        moved = " OR ".join(f"COALESCE(m.{c}, 0) > :{c}" for c in present)
        # As a subquery, so SQLite must take the date index: with `m.date > :since` beside the
        # ROWID range it walks every row by ROWID instead (no statistics in chat.db), 150 ms
        # per live batch at 300k messages against 8 ms.
        window = (
            " AND m.ROWID IN (SELECT ROWID FROM message WHERE date > :since)"
            if since_date is not None
            else ""
        )
        params: dict[str, Any] = {c: marks.get(c, 0) for c in present}
        params.update(upto=upto_rowid, since=since_date)
        return self._with_chats(
            self._q(
                f"{self._select_head} WHERE m.ROWID <= :upto{window} AND ({moved})"
                " ORDER BY m.ROWID",
                params,
            )
        )

    def tapback_rows(self, after: int, upto: int, condition: str) -> list[tuple[Any, ...]]:
        """The tapback rows of a ROWID range (`condition` is a constant SQL predicate)."""
        return self._with_chats(
            self._q(
                f"{self._select_head} WHERE m.ROWID > :a AND m.ROWID <= :u AND {condition}"
                " ORDER BY m.ROWID",
                {"a": after, "u": upto},
            )
        )

    def rows_by_rowid(self, rowids: list[int]) -> list[tuple[Any, ...]]:
        """Fresh copies of specific rows (Messages.app corrects fields ms after inserting)."""
        if not rowids:
            return []
        ids = ",".join(str(int(r)) for r in rowids)
        return self._with_chats(
            self._q(f"{self._select_head} WHERE m.ROWID IN ({ids}) ORDER BY m.ROWID")
        )

    def attachment_chunks(
        self, after: int, limit: int = 5000, *, message_upto: int | None = None
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Attachment rows after ROWID `after`, stopping at the first one whose message lies
        beyond `message_upto` (not imported yet): the watermark must not pass it, or it
        would never be linked to its message. Rows end with (message ROWID, message GUID)."""
        if not self.has_attachments:
            return
        while True:
            rows = self._q(self._attachments_sql, {"after": after, "limit": limit})
            if message_upto is not None:
                for i, r in enumerate(rows):
                    if r[-2] > message_upto:
                        if i:
                            yield rows[:i]
                        return
            if not rows:
                return
            yield rows
            after = rows[-1][0]


_GROUP_IDENTIFIER = re.compile(r"^chat\d+$")


def is_group_chat(chat: Chat, participant_count: int) -> bool:
    """Decide group vs 1:1 from all the evidence, since each single signal has exceptions.

    The GUID marker (`;+;` group, `;-;` 1:1) is Apple's own routing key and survives the
    macOS 26 `any;` prefix; `room_name` / `chat<digits>` identifiers exist only for groups;
    `style` (43/45) is consensus but undocumented; several participants mean a group even
    when the other signals are missing (old or damaged rows).
    """
    votes = 0
    guid = chat.guid or ""
    if ";+;" in guid:
        votes += 2
    elif ";-;" in guid:
        votes -= 2
    if chat.room_name:
        votes += 1
    if chat.chat_identifier and _GROUP_IDENTIFIER.match(chat.chat_identifier):
        votes += 1
    if chat.style == 43:
        votes += 1
    elif chat.style == 45:
        votes -= 1
    if participant_count > 1:
        votes += 2
    return votes > 0


TAPBACK_TYPES = {
    0: "loved",
    1: "liked",
    2: "disliked",
    3: "laughed",
    4: "emphasized",
    5: "questioned",
    6: "emoji",
    7: "sticker",
}


def tapback(assoc_type: int | None) -> tuple[str, bool] | None:
    """(type, is_removal) for tapback rows, None for ordinary messages.

    2000–2007 add, 3000–3007 remove; 1000 is the legacy sticker placed on a message.
    """
    if not assoc_type:
        return None
    if 2000 <= assoc_type <= 2007:
        return TAPBACK_TYPES[assoc_type - 2000], False
    if 3000 <= assoc_type <= 3007:
        return TAPBACK_TYPES[assoc_type - 3000], True
    if assoc_type == 1000:
        return "sticker", False
    return None


_TARGET = re.compile(r"^(?:p:(\d+)/|bp:)?(.+)$")


def tapback_target(assoc_guid: str | None) -> tuple[str, int] | None:
    """`p:N/GUID` → (GUID, N); `bp:GUID` → (GUID, 0); a bare GUID → (first 36 chars, 0)."""
    if not assoc_guid:
        return None
    m = _TARGET.match(assoc_guid)
    if not m:
        return None
    part = int(m.group(1)) if m.group(1) else 0
    guid = m.group(2)
    if not assoc_guid.startswith(("p:", "bp:")):
        guid = guid[:36]
    return guid, part


def text_value(value: object) -> str | None:
    """A TEXT column's value as text even where a writer stored a BLOB (invalid UTF-8 read
    leniently) or a number: SQLite lets any row hold any type."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return LENIENT_TEXT(value)
    return str(value)


def reply_part(thread_originator_part: object) -> int | None:
    """The first colon-separated field of `thread_originator_part` is the target part."""
    part = text_value(thread_originator_part)
    if not part:
        return None
    head = part.split(":", 1)[0]
    return int(head) if head.isdigit() else None


def reply_guid(thread_originator_guid: object) -> str | None:
    """Some writers put `p:N/` in front of the GUID; strip it."""
    guid = text_value(thread_originator_guid)
    if not guid:
        return None
    target = tapback_target(guid)
    return target[0] if target else None


class SummaryFlags(NamedTuple):
    edited_parts: tuple[int, ...]
    unsent_parts: tuple[int, ...]
    parts: tuple[int, ...] = ()  # every part the message had (`otr`'s keys), if listed


def is_unsent(date_retracted: object, flags: SummaryFlags | None) -> bool:
    """The one unsent rule: the whole message was withdrawn. macOS before 26 sets
    date_retracted, 26 lists the withdrawn parts (`rp`). A multipart message may have had
    only some of its parts unsent: when the plist lists the message's parts (`otr`) and
    some are not in `rp`, the rest of the message is still there (Messages.app keeps them in
    the body) and it is not unsent, only changed (`edit_state` marks it edited). `flags`
    None (an unreadable plist) lists nothing: date_retracted decides. Used by the load and by
    the decoding helper's index, which must agree on it."""
    if flags is not None and flags.unsent_parts:
        return not flags.parts or set(flags.parts) <= set(flags.unsent_parts)
    return bool(date_retracted)


def summary_flags(blob: bytes | None) -> SummaryFlags | None:
    """Edited (`ep`), unsent (`rp`) and all (`otr`) part lists from message_summary_info;
    None if unreadable."""
    if not blob:
        return SummaryFlags((), ())
    try:
        info = plistlib.loads(blob)
    except Exception:  # plistlib raises a zoo of types on damaged data
        return None
    if not isinstance(info, dict):
        return None

    def parts(key: str) -> tuple[int, ...]:
        value = info.get(key)
        if not isinstance(value, list):
            return ()
        return tuple(int(v) for v in value if isinstance(v, int))

    ranges = info.get("otr")
    every = (
        tuple(sorted(int(k) for k in ranges if isinstance(k, str) and k.isdigit()))
        if isinstance(ranges, dict)
        else ()
    )
    return SummaryFlags(parts("ep"), parts("rp"), every)


# item_type / group_action_type → our message kind (reference/chatdb_semantics.md §6).
def message_kind(item_type: int | None, group_action_type: int | None) -> str:
    item_type = item_type or 0
    action = group_action_type or 0
    if item_type == 0:
        return "message"
    if item_type == 1:
        return "participant_removed" if action == 1 else "participant_added"
    if item_type == 2:
        return "renamed"
    if item_type == 3:
        return {0: "participant_left", 1: "photo_changed", 2: "photo_removed"}.get(
            action, "group_event"
        )
    if item_type == 4:
        return "location_sharing"
    if item_type == 5:
        return "audio_kept"
    if item_type == 6:
        return "shareplay"
    return "system"
