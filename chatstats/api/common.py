"""What every route module shares: strict query parameters, ISO times, paging, and the wire
shape of each domain object (the live streams send the same shapes).

Why one module: routes never import each other or a store; what two routes both need lives
here. Query parameters are strict: an integer is 1 to 19 ASCII digits within range, anything
else is a 400 rather than a guess; an empty parameter counts as absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from starlette.requests import Request

from chatstats.api import state
from chatstats.context.service import MAX_BUDGET, MAX_QUERY_CHARS
from chatstats.errors import BadRequest, NotFound
from chatstats.library.service import Chat, Contact, Conversation, Library, Message, Page

# SQLite's largest integer: ids and `before_id` beyond it cannot name a row.
MAX_ID = 2**63 - 1
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


def query_int(request: Request, name: str, *, lo: int = 1, hi: int = MAX_ID) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if _DIGITS.fullmatch(raw) is None or not lo <= int(raw) <= hi:
        raise BadRequest(f"{name} must be an integer from {lo} to {hi}")
    return int(raw)


def limit(request: Request) -> int:
    value = query_int(request, "limit", hi=MAX_LIMIT)
    return DEFAULT_LIMIT if value is None else value


def path_id(request: Request) -> int:
    value: int = request.path_params["id"]
    if not 1 <= value <= MAX_ID:
        raise NotFound("no such id")
    return value


def cursor(request: Request) -> str | None:
    """The opaque `cursor` of a `Link: rel="next"` (checked by the library)."""
    return request.query_params.get("cursor") or None


def library(request: Request) -> Library:
    return state.of(request).library


@dataclass(frozen=True, slots=True)
class Paged:
    """A page's JSON body and the relative URL of the page after it, for the `Link` header."""

    items: list[dict[str, Any]]
    next_url: str | None


def paged(request: Request, page: Page[Any], items: list[dict[str, Any]]) -> Paged:
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


class RunRequest(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /api/analysis/runs`'s body; here because the OpenAPI schemas describe it too."""

    passes: list[str] | None = None
    chat_ids: list[int] | None = None
    limit: int | None = None
    kind: str = "global"
    force: bool = False


class BackfillRequest(msgspec.Struct, forbid_unknown_fields=True, rename={"pass_": "pass"}):
    """`POST /api/analysis/backfill`'s body; here because the OpenAPI schemas describe it too."""

    pass_: str | list[str] | None = None
    dry_run: bool = False
    limit: int | None = None


_ContextId = Annotated[int, Meta(ge=1, le=MAX_ID)]


class RetrieverSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One retriever of an ad-hoc list: its name, its share of what is left, its params."""

    retriever: Annotated[str, Meta(min_length=1, max_length=64)]
    share: Annotated[float, Meta(gt=0, le=1)] | None = None
    params: dict[str, Any] | None = None


class PreviewBody(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /api/context/preview`'s body; here because the OpenAPI schemas describe it too."""

    budget_tokens: Annotated[int, Meta(ge=1, le=MAX_BUDGET)]
    definition: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    retrievers: (
        Annotated[
            list[Annotated[str, Meta(min_length=1, max_length=64)] | RetrieverSpec],
            Meta(min_length=1, max_length=10),
        ]
        | None
    ) = None
    chat_id: _ContextId | None = None
    contact_id: _ContextId | None = None
    conversation_id: _ContextId | None = None
    query: Annotated[str, Meta(max_length=MAX_QUERY_CHARS)] | None = None


STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"


def _shipped() -> dict[str, Path]:
    """The page's files by their path under /static/: only what ships in the package, so no
    request path is ever joined onto the file system. Here, not in the web route, because the
    request schemas (`schemas.StaticFile`) enumerate the same files."""
    return {
        p.relative_to(STATIC_DIR).as_posix(): p
        for p in STATIC_DIR.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


STATIC_FILES = _shipped()
