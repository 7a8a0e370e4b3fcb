"""Routes of the iMessage data (CONTRACT.md, "iMessage data").

Each handler parses and checks its parameters, asks the library, and shapes the answer; the
app encodes it. Query parameters are strict: an integer is 1 to 19 ASCII digits within range,
anything else is a 400 rather than a guess. An empty parameter counts as absent.

Lists are newest first and page with `limit` (default 50, at most 500) and `before_id`, the id
of the last item of the previous page, except a conversation's messages, which read oldest
first like a transcript (see `conversation_messages`). A full page of a newest-first list
also carries `Link: <…&cursor=…>; rel="next"`: following it walks the list as its first page
saw it, each item exactly once even while live sync moves chats to the top (`before_id`
reads where the named item stands now, so a moving item can be skipped or repeated; see
`library.paging`). Times are ISO 8601 UTC with six fractional digits and a `Z`.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from starlette.requests import Request

from chatstats import __version__
from chatstats.api import state
from chatstats.errors import BadRequest, NotFound
from chatstats.library.service import Chat, Contact, Conversation, Library, Message, Page
from chatstats.library.store import MAX_ID

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

_DIGITS = re.compile(r"[0-9]{1,19}")
_EPOCH = datetime(1970, 1, 1)


def iso_time(ns: int | None) -> str | None:
    """`2024-10-15T12:34:56.789012Z`, exact to the microsecond (integer arithmetic, no float).
    Every SQLite integer (years 1677 to 2262 as ns) fits a datetime, so this cannot fail."""
    if ns is None:
        return None
    moment = _EPOCH + timedelta(microseconds=ns // 1000)
    return moment.isoformat(timespec="microseconds") + "Z"


# ---------------------------------------------------------------------------------------------
# Parameters


def _query_int(request: Request, name: str, *, lo: int = 1, hi: int = MAX_ID) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if _DIGITS.fullmatch(raw) is None or not lo <= int(raw) <= hi:
        raise BadRequest(f"{name} must be an integer from {lo} to {hi}")
    return int(raw)


def _limit(request: Request) -> int:
    value = _query_int(request, "limit", hi=MAX_LIMIT)
    return DEFAULT_LIMIT if value is None else value


def _path_id(request: Request) -> int:
    value: int = request.path_params["id"]
    if value > MAX_ID:
        raise NotFound("no such id")
    return value


def _cursor(request: Request) -> str | None:
    """The opaque `cursor` of a `Link: rel="next"` (checked by the library)."""
    return request.query_params.get("cursor") or None


def _library(request: Request) -> Library:
    return Library(state.of(request).db)


@dataclass(frozen=True, slots=True)
class Paged:
    """A page's JSON body and the relative URL of the page after it, for the `Link` header."""

    items: list[dict[str, Any]]
    next_url: str | None


def _paged(request: Request, page: Page[Any], items: list[dict[str, Any]]) -> Paged:
    """The same request with `cursor` in place of `before_id` (limit and filters kept)."""
    if page.next is None:
        return Paged(items, None)
    url = request.url.remove_query_params("before_id").include_query_params(cursor=page.next)
    return Paged(items, f"{url.path}?{url.query}")


# ---------------------------------------------------------------------------------------------
# Shapes (the wire form of each domain object; the live streams send the same shapes)


def chat_json(c: Chat) -> dict[str, Any]:
    return {
        "id": c.id,
        "guid": c.guid,
        "title": c.title,
        "is_group": c.is_group,
        "service": c.service,
        "participants": c.participants,
        "message_count": c.message_count,
        "last_message_time": iso_time(c.last_message_ns),
    }


def message_json(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "guid": m.guid,
        "chat_id": m.chat_id,
        "conversation_id": m.conversation_id,
        "text": m.text,
        "timestamp": iso_time(m.date_ns),
        "is_from_me": m.is_from_me,
        "sender": m.sender,
        "reply_to_guid": m.reply_to_guid,
        "edited": m.edited,
        "unsent": m.unsent,
        "kind": m.kind,
        "group_title": m.group_title,
        "reactions": m.reactions,
        "attachments": m.attachments,
    }


def contact_json(c: Contact) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "identifiers": c.identifiers,
        "message_count": c.message_count,
        "last_message_time": iso_time(c.last_message_ns),
    }


def conversation_json(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.id,
        "chat_id": c.chat_id,
        "start_time": iso_time(c.start_ns),
        "end_time": iso_time(c.end_ns),
        "message_count": c.message_count,
        "sealed": c.sealed,
    }


# ---------------------------------------------------------------------------------------------
# Handlers


async def health(request: Request) -> dict[str, Any]:
    """Answers without a token (the gate lets it through) so a launcher can poll readiness."""
    app_state = state.of(request)
    counts = await Library(app_state.db).counts()
    return {
        "status": "ok",
        "version": __version__,
        "pid": os.getpid(),
        "uptime_s": round((time.time_ns() - app_state.started_ns) / 1e9, 3),
        "import": app_state.import_status.snapshot(),
        "live": msgspec.to_builtins(app_state.live.status) if app_state.live else None,
        "sealer": _sealer_status(app_state.sealer),
        "analysis": await _analysis_status(app_state.analysis),
        "counts": counts,
    }


async def _analysis_status(service: Any) -> dict[str, Any] | None:
    """Whether analysis can run and how far it is (e.g. "no model configured")."""
    if service is None:
        return None
    s = await service.status()
    return {k: s[k] for k in ("state", "message", "model", "jobs", "in_flight", "pass_errors")}


def _sealer_status(sealer: Any) -> dict[str, Any] | None:
    if sealer is None:
        return None
    return {
        "next_due_time": iso_time(sealer.next_due_ns),
        "rounds": sealer.rounds,
        "sealed": sealer.sealed_total,
    }


async def list_chats(request: Request) -> Paged:
    """Newest activity first; chats without messages last (by id, descending)."""
    page = await _library(request).chats(
        _limit(request), _query_int(request, "before_id"), _cursor(request)
    )
    return _paged(request, page, [chat_json(c) for c in page.items])


async def get_chat(request: Request) -> dict[str, Any]:
    return chat_json(await _library(request).chat(_path_id(request)))


async def chat_messages(request: Request) -> Paged:
    """Newest first by (time, id)."""
    page = await _library(request).chat_messages(
        _path_id(request), _limit(request), _query_int(request, "before_id"), _cursor(request)
    )
    return _paged(request, page, [message_json(m) for m in page.items])


async def list_contacts(request: Request) -> Paged:
    """Most recently heard from first; contacts never messaged last (by id, descending)."""
    page = await _library(request).contacts(
        _limit(request), _query_int(request, "before_id"), _cursor(request)
    )
    return _paged(request, page, [contact_json(c) for c in page.items])


async def list_conversations(request: Request) -> Paged:
    """Newest start first, of one chat (`chat_id`) or of all."""
    page = await _library(request).conversations(
        _query_int(request, "chat_id"),
        _limit(request),
        _query_int(request, "before_id"),
        _cursor(request),
    )
    return _paged(request, page, [conversation_json(c) for c in page.items])


async def get_conversation(request: Request) -> dict[str, Any]:
    return conversation_json(await _library(request).conversation(_path_id(request)))


async def conversation_messages(request: Request) -> list[dict[str, Any]]:
    """A transcript: every page is oldest first. Without a cursor it starts at the beginning;
    `after_id` (the last id of the previous page) reads on; `before_id` (the first id of the
    previous page) reads back, returning the `limit` messages just before it."""
    messages = await _library(request).conversation_messages(
        _path_id(request),
        _limit(request),
        after_id=_query_int(request, "after_id"),
        before_id=_query_int(request, "before_id"),
    )
    return [message_json(m) for m in messages]


async def search(request: Request) -> Paged:
    """Messages containing every word of `q` (each taken literally), newest first; optional
    `chat_id`, `contact_id` (what that contact sent), `since`/`until` (ISO 8601), and `before_id` (or the `Link` header's `cursor`) to read on. Other modes:
    chatstats.api.search."""
    mode = request.query_params.get("mode") or "text"
    if mode != "text":
        from chatstats.api.search import search_by_meaning

        return await search_by_meaning(  # type: ignore[return-value]
            request,
            mode,
            _limit(request),
            _query_int(request, "chat_id"),
            _query_int(request, "contact_id"),
        )
    from chatstats.context.search import parse_time

    page = await _library(request).search(
        request.query_params.get("q", ""),
        _query_int(request, "chat_id"),
        _limit(request),
        _query_int(request, "before_id"),
        _cursor(request),
        contact_id=_query_int(request, "contact_id"),
        since_ns=parse_time(request.query_params.get("since"), "since"),
        until_ns=parse_time(request.query_params.get("until"), "until"),
    )
    return _paged(request, page, [message_json(m) for m in page.items])


ROUTES = [
    ("/api/health", health),
    ("/api/chats", list_chats),
    ("/api/chats/{id:int}", get_chat),
    ("/api/chats/{id:int}/messages", chat_messages),
    ("/api/contacts", list_contacts),
    ("/api/conversations", list_conversations),
    ("/api/conversations/{id:int}", get_conversation),
    ("/api/conversations/{id:int}/messages", conversation_messages),
    ("/api/search", search),
]
