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
import time
from typing import Any

import msgspec
from starlette.requests import Request

from chatstats import __version__
from chatstats.api import state
from chatstats.api.common import (
    Paged,
    chat_json,
    contact_json,
    conversation_json,
    cursor,
    iso_time,
    library,
    limit,
    message_json,
    paged,
    path_id,
    query_int,
)

# ---------------------------------------------------------------------------------------------
# Handlers


async def health(request: Request) -> dict[str, Any]:
    """Answers without a token (the gate lets it through) so a launcher can poll readiness."""
    app_state = state.of(request)
    live = app_state.live
    counts = await app_state.library.counts()
    return {
        "status": "ok",
        "version": __version__,
        "pid": os.getpid(),
        "uptime_s": round((time.time_ns() - app_state.started_ns) / 1e9, 3),
        "import": app_state.import_status.snapshot(),
        "live": msgspec.to_builtins(live.tail.status) if live else None,
        "sealer": _sealer_status(live.sealer if live else None),
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
    page = await library(request).chats(
        limit(request), query_int(request, "before_id"), cursor(request)
    )
    return paged(request, page, [chat_json(c) for c in page.items])


async def get_chat(request: Request) -> dict[str, Any]:
    return chat_json(await library(request).chat(path_id(request)))


async def chat_messages(request: Request) -> Paged:
    """Newest first by (time, id)."""
    page = await library(request).chat_messages(
        path_id(request), limit(request), query_int(request, "before_id"), cursor(request)
    )
    return paged(request, page, [message_json(m) for m in page.items])


async def list_contacts(request: Request) -> Paged:
    """Most recently heard from first; contacts never messaged last (by id, descending)."""
    page = await library(request).contacts(
        limit(request), query_int(request, "before_id"), cursor(request)
    )
    return paged(request, page, [contact_json(c) for c in page.items])


async def list_conversations(request: Request) -> Paged:
    """Newest start first, of one chat (`chat_id`) or of all."""
    page = await library(request).conversations(
        query_int(request, "chat_id"),
        limit(request),
        query_int(request, "before_id"),
        cursor(request),
    )
    return paged(request, page, [conversation_json(c) for c in page.items])


async def get_conversation(request: Request) -> dict[str, Any]:
    return conversation_json(await library(request).conversation(path_id(request)))


async def conversation_messages(request: Request) -> list[dict[str, Any]]:
    """A transcript: every page is oldest first. Without a cursor it starts at the beginning;
    `after_id` (the last id of the previous page) reads on; `before_id` (the first id of the
    previous page) reads back, returning the `limit` messages just before it."""
    messages = await library(request).conversation_messages(
        path_id(request),
        limit(request),
        after_id=query_int(request, "after_id"),
        before_id=query_int(request, "before_id"),
    )
    return [message_json(m) for m in messages]


ROUTES = [
    ("/api/health", health),
    ("/api/chats", list_chats),
    ("/api/chats/{id:int}", get_chat),
    ("/api/chats/{id:int}/messages", chat_messages),
    ("/api/contacts", list_contacts),
    ("/api/conversations", list_conversations),
    ("/api/conversations/{id:int}", get_conversation),
    ("/api/conversations/{id:int}/messages", conversation_messages),
]
