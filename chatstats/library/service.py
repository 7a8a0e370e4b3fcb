"""What a person sees of their iMessage library: chats, messages, contacts, conversations.

Only ingest writes this data; everything here reads. Each public method is one unit of read
work run in one thread hop (`Database.read`): a page of messages needs its reactions and
attachments too, and three awaited statements would cost three hops.

Times stay Unix nanoseconds here; the HTTP layer decides how to show them.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from chatstats.db import Database
from chatstats.errors import BadRequest, NotFound
from chatstats.library import paging, store
from chatstats.library.paging import Keyset, Snapshot

T = TypeVar("T")

# Longest search text accepted: far beyond anything typed, short enough that the FTS5
# expression built from it stays small.
MAX_QUERY_CHARS = 1000


class Person(msgspec.Struct, frozen=True):
    contact_id: int | None
    name: str | None
    identifier: str | None


class Chat(msgspec.Struct, frozen=True):
    id: int
    guid: str
    title: str
    is_group: bool
    service: str | None
    participants: list[Person]
    message_count: int
    last_message_ns: int | None


class Reaction(msgspec.Struct, frozen=True):
    type: str
    emoji: str | None
    is_from_me: bool
    sender: Person | None


class Attachment(msgspec.Struct, frozen=True):
    filename: str | None
    transfer_name: str | None
    mime_type: str | None
    total_bytes: int


class Message(msgspec.Struct, frozen=True):
    id: int
    guid: str
    chat_id: int | None
    conversation_id: int | None
    text: str | None
    date_ns: int
    is_from_me: bool
    sender: Person | None
    reply_to_guid: str | None
    edited: bool
    unsent: bool
    kind: str
    group_title: str | None
    reactions: list[Reaction]
    attachments: list[Attachment]


class Contact(msgspec.Struct, frozen=True):
    id: int
    name: str | None
    identifiers: list[str]
    message_count: int
    last_message_ns: int | None


class Conversation(msgspec.Struct, frozen=True):
    id: int
    chat_id: int
    start_ns: int
    end_ns: int
    message_count: int
    sealed: bool


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list and the cursor of the page after it (None: this one was not full,
    so nothing follows)."""

    items: list[T]
    next: str | None


class Counts(msgspec.Struct, frozen=True):
    chats: int
    messages: int
    contacts: int
    conversations: int


def chat_title(display_name: str | None, is_group: bool, participants: list[Person]) -> str:
    """The name Messages.app would show: a group's own name, else who is in it.

    A person reachable at two addresses in one chat is named once.
    """
    if is_group and display_name:
        return display_name
    seen: set[tuple[str, Any]] = set()
    names: list[str] = []
    for p in participants:
        key = ("contact", p.contact_id) if p.contact_id is not None else ("handle", p.identifier)
        if key in seen:
            continue
        seen.add(key)
        names.append(p.name or p.identifier or "")
    return ", ".join(n for n in names if n) or display_name or ""


def search_terms(text: str) -> list[str]:
    """The words of a search box, or a BadRequest when there is nothing to search for."""
    if len(text) > MAX_QUERY_CHARS:
        raise BadRequest(f"q is longer than {MAX_QUERY_CHARS} characters")
    # FTS5 reads its query as a C string: a NUL would cut it (and its quoting) short.
    terms = text.replace("\x00", " ").split()
    if not terms:
        raise BadRequest("q must contain at least one word")
    return terms


class Library:
    """Read access to the iMessage domain of one app database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def counts(self) -> Counts:
        return await self._db.read(_counts)

    async def last_import_summary(self) -> Any:
        return await self._db.read(_last_import_summary)

    async def chats(
        self, limit: int, before_id: int | None = None, cursor: str | None = None
    ) -> Page[Chat]:
        """Newest activity first. `before_id` continues after a chat where it stands now;
        `cursor` (a page's `next`) continues the walk where its first page saw the list."""
        after = _position(before_id, cursor, "chats")
        return await self._db.read(_chats, limit, before_id, after)

    async def chat(self, chat_id: int) -> Chat:
        return await self._db.read(_chat, chat_id)

    async def chat_messages(
        self, chat_id: int, limit: int, before_id: int | None = None, cursor: str | None = None
    ) -> Page[Message]:
        after = _position(before_id, cursor, f"chat:{chat_id}:messages")
        return await self._db.read(_chat_messages, chat_id, limit, before_id, after)

    async def contacts(
        self, limit: int, before_id: int | None = None, cursor: str | None = None
    ) -> Page[Contact]:
        after = _position(before_id, cursor, "contacts")
        return await self._db.read(_contacts, limit, before_id, after)

    async def conversations(
        self,
        chat_id: int | None,
        limit: int,
        before_id: int | None = None,
        cursor: str | None = None,
    ) -> Page[Conversation]:
        after = _position(before_id, cursor, _conversations_list(chat_id))
        return await self._db.read(_conversations, chat_id, limit, before_id, after)

    async def conversation(self, conversation_id: int) -> Conversation:
        return await self._db.read(_conversation, conversation_id)

    async def conversation_messages(
        self,
        conversation_id: int,
        limit: int,
        *,
        after_id: int | None = None,
        before_id: int | None = None,
    ) -> list[Message]:
        """Chronological. From the start, or the `limit` messages after `after_id`, or the
        `limit` messages just before `before_id` (still oldest first)."""
        if after_id is not None and before_id is not None:
            raise BadRequest("give after_id or before_id, not both")
        return await self._db.read(
            _conversation_messages, conversation_id, limit, after_id, before_id
        )

    async def changes(
        self, message_ids: list[int], chat_ids: list[int], contact_ids: list[int]
    ) -> tuple[list[Message], list[Chat], list[Contact]]:
        """What live sync just wrote, in API shapes, in one read (it is published as is)."""
        return await self._db.read(_changes, message_ids, chat_ids, contact_ids)

    async def search(
        self,
        text: str,
        chat_id: int | None,
        limit: int,
        before_id: int | None = None,
        cursor: str | None = None,
        *,
        contact_id: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> Page[Message]:
        """Messages containing every word of `text`, newest first; `contact_id` keeps what
        that contact sent, `since_ns`/`until_ns` bound the time (until excluded)."""
        match = store.match_expression(search_terms(text))
        after = _position(before_id, cursor, "search")
        filters = {"contact_id": contact_id, "since_ns": since_ns, "until_ns": until_ns}
        return await self._db.read(_search, match, chat_id, limit, before_id, after, filters)


def _position(before_id: int | None, cursor: str | None, list_name: str) -> Keyset | None:
    if cursor is None:
        return None
    if before_id is not None:
        raise BadRequest("give before_id or cursor, not both")
    return paging.decode(cursor, list_name)


def _conversations_list(chat_id: int | None) -> str:
    return "conversations" if chat_id is None else f"chat:{chat_id}:conversations"


def _next(
    items: list[Any],
    limit: int,
    list_name: str,
    last_ns: int | None,
    snapshot: Snapshot | None = None,
) -> str | None:
    """The cursor after a full page's last item (`last_ns`: its sort time as served)."""
    if not items or len(items) < limit:
        return None
    return paging.encode(Keyset(list_name, last_ns, items[-1].id, snapshot))


# ---------------------------------------------------------------------------------------------
# Units of read work, each run on a reader connection in a worker thread. Those that run
# several statements for one answer open one read transaction, so all see the same commit.


def _counts(conn: sqlite3.Connection) -> Counts:
    row = store.counts(conn)
    return Counts(row["chats"], row["messages"], row["contacts"], row["conversations"])


def _last_import_summary(conn: sqlite3.Connection) -> Any:
    raw = store.last_import_summary(conn)
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def _person(contact_id: int | None, name: str | None, identifier: str | None) -> Person:
    return Person(contact_id=contact_id, name=name, identifier=identifier)


def _build_chats(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[Chat]:
    people: dict[int, list[Person]] = defaultdict(list)
    for p in store.participants(conn, [r["id"] for r in rows]):
        people[p["chat_id"]].append(_person(p["contact_id"], p["name"], p["identifier"]))
    chats = []
    for r in rows:
        members = people.get(r["id"], [])
        title = chat_title(r["display_name"], bool(r["is_group"]), members)
        chats.append(
            Chat(
                id=r["id"],
                guid=r["guid"],
                title=title or r["chat_identifier"] or r["guid"],
                is_group=bool(r["is_group"]),
                service=r["service"],
                participants=members,
                message_count=r["message_count"],
                last_message_ns=r["last_message_ns"],
            )
        )
    return chats


def _chats(
    conn: sqlite3.Connection, limit: int, before_id: int | None, after: Keyset | None
) -> Page[Chat]:
    conn.execute("BEGIN")
    snapshot, cursor = _snapshot_and_cursor(conn, "chats", after)
    if before_id is not None:
        row = store.chat(conn, before_id)
        if row is None:
            raise BadRequest("before_id does not name a chat")
        cursor = (row["last_message_ns"], row["id"])
    keyed = store.recent_chats(conn, limit, cursor, (snapshot.messages, snapshot.rows))
    chats = _build_chats(conn, [row for _ns, row in keyed])
    return Page(chats, _next(chats, limit, "chats", keyed[-1][0] if keyed else None, snapshot))


def _snapshot_and_cursor(
    conn: sqlite3.Connection, table: str, after: Keyset | None
) -> tuple[Snapshot, tuple[int | None, int] | None]:
    """The walk's snapshot (taken now on its first page) and where this page starts."""
    if after is None:
        return Snapshot(*store.snapshot(conn, table)), None
    if after.snapshot is None:
        raise BadRequest("cursor is not one this list handed out")
    return after.snapshot, (after.ns, after.id)


def _chat(conn: sqlite3.Connection, chat_id: int) -> Chat:
    row = store.chat(conn, chat_id)
    if row is None:
        raise NotFound(f"no chat {chat_id}")
    return _build_chats(conn, [row])[0]


def _build_messages(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[Message]:
    if not rows:
        return []
    reactions: dict[str, list[Reaction]] = defaultdict(list)
    for r in store.reactions(conn, [m["guid"] for m in rows]):
        sender = (
            None
            if r["is_from_me"] or r["handle_id"] is None
            else _person(r["contact_id"], r["name"], r["identifier"])
        )
        reactions[r["target_guid"]].append(
            Reaction(
                type=r["type"], emoji=r["emoji"], is_from_me=bool(r["is_from_me"]), sender=sender
            )
        )
    files: dict[int, list[Attachment]] = defaultdict(list)
    for a in store.attachments(conn, [m["id"] for m in rows]):
        files[a["message_id"]].append(
            Attachment(
                filename=a["filename"],
                transfer_name=a["transfer_name"],
                mime_type=a["mime_type"],
                total_bytes=a["total_bytes"],
            )
        )
    return [
        Message(
            id=m["id"],
            guid=m["guid"],
            chat_id=m["chat_id"],
            conversation_id=m["conversation_id"],
            text=m["text"],
            date_ns=m["date_ns"],
            is_from_me=bool(m["is_from_me"]),
            sender=(
                None
                if m["is_from_me"] or m["handle_id"] is None
                else _person(m["contact_id"], m["name"], m["identifier"])
            ),
            reply_to_guid=m["reply_to_guid"],
            edited=bool(m["edited"]),
            unsent=bool(m["unsent"]),
            kind=m["kind"],
            group_title=m["group_title"],
            reactions=reactions.get(m["guid"], []),
            attachments=files.get(m["id"], []),
        )
        for m in rows
    ]


def _message_cursor(
    conn: sqlite3.Connection, message_id: int, owner: str, owner_id: int, name: str
) -> tuple[int, int]:
    """(date_ns, id) of a message the client paged from; it must belong to the same list."""
    row = store.message_position(conn, message_id)
    if row is None or row[owner] != owner_id:
        raise BadRequest(f"{name} does not name a message of this {owner.removesuffix('_id')}")
    return (row["date_ns"], row["id"])


def _dated_cursor(after: Keyset | None) -> tuple[int, int] | None:
    """(time, id) of a cursor on a list whose items always have a time."""
    if after is None:
        return None
    if after.ns is None:
        raise BadRequest("cursor is not one this list handed out")
    return (after.ns, after.id)


def _chat_messages(
    conn: sqlite3.Connection,
    chat_id: int,
    limit: int,
    before_id: int | None,
    after: Keyset | None,
) -> Page[Message]:
    conn.execute("BEGIN")
    if not store.chat_exists(conn, chat_id):
        raise NotFound(f"no chat {chat_id}")
    cursor = _dated_cursor(after)
    if before_id is not None:
        cursor = _message_cursor(conn, before_id, "chat_id", chat_id, "before_id")
    messages = _build_messages(conn, store.chat_messages(conn, chat_id, limit, cursor))
    last_ns = messages[-1].date_ns if messages else None
    return Page(messages, _next(messages, limit, f"chat:{chat_id}:messages", last_ns))


def _contacts(
    conn: sqlite3.Connection, limit: int, before_id: int | None, after: Keyset | None
) -> Page[Contact]:
    conn.execute("BEGIN")
    snapshot, cursor = _snapshot_and_cursor(conn, "contacts", after)
    if before_id is not None:
        row = store.contact_cursor(conn, before_id)
        if row is None:
            raise BadRequest("before_id does not name a contact")
        cursor = (row["last_message_ns"], row["id"])
    keyed = store.recent_contacts(conn, limit, cursor, (snapshot.messages, snapshot.rows))
    contacts = _build_contacts(conn, [row for _ns, row in keyed])
    last_ns = keyed[-1][0] if keyed else None
    return Page(contacts, _next(contacts, limit, "contacts", last_ns, snapshot))


def _build_contacts(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[Contact]:
    identifiers: dict[int, list[str]] = defaultdict(list)
    for r in store.contact_identifiers(conn, [c["id"] for c in rows]):
        identifiers[r["contact_id"]].append(r["identifier"])
    return [
        Contact(
            id=c["id"],
            name=c["name"],
            identifiers=identifiers.get(c["id"], []),
            message_count=c["message_count"],
            last_message_ns=c["last_message_ns"],
        )
        for c in rows
    ]


def _changes(
    conn: sqlite3.Connection, message_ids: list[int], chat_ids: list[int], contact_ids: list[int]
) -> tuple[list[Message], list[Chat], list[Contact]]:
    messages = (
        _build_messages(conn, store.messages_by_ids(conn, message_ids)) if message_ids else []
    )
    chats = _build_chats(conn, store.chats_by_ids(conn, chat_ids)) if chat_ids else []
    contacts = (
        _build_contacts(conn, store.contacts_by_ids(conn, contact_ids)) if contact_ids else []
    )
    return messages, chats, contacts


def _to_conversation(r: sqlite3.Row) -> Conversation:
    return Conversation(
        id=r["id"],
        chat_id=r["chat_id"],
        start_ns=r["start_ns"],
        end_ns=r["end_ns"],
        message_count=r["message_count"],
        sealed=bool(r["sealed"]),
    )


def _conversations(
    conn: sqlite3.Connection,
    chat_id: int | None,
    limit: int,
    before_id: int | None,
    after: Keyset | None,
) -> Page[Conversation]:
    conn.execute("BEGIN")
    if chat_id is not None and not store.chat_exists(conn, chat_id):
        raise NotFound(f"no chat {chat_id}")
    cursor = _dated_cursor(after)
    if before_id is not None:
        row = store.conversation(conn, before_id)
        if row is None or (chat_id is not None and row["chat_id"] != chat_id):
            raise BadRequest("before_id does not name a conversation of this list")
        cursor = (row["start_ns"], row["id"])
    rows = store.recent_conversations(conn, chat_id, limit, cursor)
    found = [_to_conversation(r) for r in rows]
    last_ns = found[-1].start_ns if found else None
    return Page(found, _next(found, limit, _conversations_list(chat_id), last_ns))


def _conversation(conn: sqlite3.Connection, conversation_id: int) -> Conversation:
    row = store.conversation(conn, conversation_id)
    if row is None:
        raise _no_conversation(conn, conversation_id)
    return _to_conversation(row)


def _no_conversation(conn: sqlite3.Connection, conversation_id: int) -> NotFound:
    """A link to a conversation merged into another says where its messages went."""
    gone = store.removed_conversation(conn, conversation_id)
    if gone is not None and gone["merged_into"] is not None:
        return NotFound(
            f"conversation {conversation_id} was merged into conversation {gone['merged_into']}"
        )
    return NotFound(f"no conversation {conversation_id}")


def _conversation_messages(
    conn: sqlite3.Connection,
    conversation_id: int,
    limit: int,
    after_id: int | None,
    before_id: int | None,
) -> list[Message]:
    if store.conversation(conn, conversation_id) is None:
        raise _no_conversation(conn, conversation_id)
    cursor = None
    backward = before_id is not None
    if after_id is not None or before_id is not None:
        name = "before_id" if backward else "after_id"
        message_id = before_id if backward else after_id
        assert message_id is not None
        cursor = _message_cursor(conn, message_id, "conversation_id", conversation_id, name)
    rows = store.conversation_messages(conn, conversation_id, limit, cursor, backward=backward)
    if backward:
        rows.reverse()
    return _build_messages(conn, rows)


def _search(
    conn: sqlite3.Connection,
    match: str,
    chat_id: int | None,
    limit: int,
    before_id: int | None,
    after: Keyset | None,
    filters: dict[str, int | None] | None = None,
) -> Page[Message]:
    conn.execute("BEGIN")
    if chat_id is not None and not store.chat_exists(conn, chat_id):
        raise NotFound(f"no chat {chat_id}")
    cursor = _dated_cursor(after)
    if before_id is not None:
        row = store.message_position(conn, before_id)
        if row is None:
            raise BadRequest("before_id does not name a message")
        cursor = (row["date_ns"], row["id"])
    rows = store.search_messages(conn, match, chat_id, limit, cursor, **(filters or {}))
    found = _build_messages(conn, rows)
    last_ns = found[-1].date_ns if found else None
    return Page(found, _next(found, limit, "search", last_ns))
