"""SSE 1–3 (CONTRACT.md): a chat's messages, the chat list and the contact list, live.

Each stream subscribes to message_hub *before* reading its `initial` page, so nothing
committed in between can fall into a gap; the price is that an update may repeat what
`initial` already showed, and those repeats are dropped here (see `_Covered`). Unlike the
seeds, `initial` is a bounded page, newest first (`limit`, `complete`, `next_cursor`): older
history is paged over REST with `before_id` or, stable while the list moves, with
`?cursor=<next_cursor>`, and a chat of 100k messages no longer means a 50 MB event.

Events: `initial`, `ready`, then `update` per hub payload, `heartbeat` on the interval, and
`error` (`{"code", "message"}`) before closing when something fails. A client that falls so
far behind that its inbox overflowed gets `error` with code `lagged` and is closed: updates
were lost, and reconnecting (a fresh `initial`) is the only way to be whole again.

What ingest publishes (`MessageHub.publish_*`): a list of service structs
(`library.service.Message`/`Chat`/`Contact`, shaped here exactly like the REST answers) or
of dicts already in that shape, or a mapping `{"messages" | "chats" | "contacts": [...]}`.
A bare mapping without that key counts as one item (the seeds' partial chat updates).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from chatstats.api import live_stats, state
from chatstats.api.common import MAX_ID, chat_json, contact_json, message_json
from chatstats.api.sse import EventSourceResponse, ServerSentEvent, error_event, event_stream
from chatstats.errors import NotFound
from chatstats.events.hub import Subscription
from chatstats.library.service import Chat, Contact, Message

INITIAL_LIMIT = 50

_encode = msgspec.json.Encoder().encode


class _Covered:
    """Which versions of which items the client already has.

    An update is a repeat when it carries an item the client has seen in exactly this shape,
    or an item of `initial` that was already waiting in the inbox when `initial` was read
    (published after its commit, so the read saw it). The second rule catches repeats even
    when a publisher's dicts differ in shape from ours; it could hide an edit committed in
    the microseconds between the read's snapshot and its end, which is accepted.
    """

    def __init__(self, initial: list[dict[str, Any]], waiting: int) -> None:
        self._waiting = waiting
        self._taken = 0
        self._initial_ids = {_key(item) for item in initial} - {None}
        self._seen: dict[Any, int] = {}
        self.note(initial)

    def note(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            key = _key(item)
            if key is not None:
                self._seen[key] = hash(_encode(item))

    def fresh(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self._taken += 1
        early = self._taken <= self._waiting
        out = []
        for item in items:
            key = _key(item)
            if key is not None:
                if early and key in self._initial_ids:
                    continue
                if self._seen.get(key) == hash(_encode(item)):
                    continue
            out.append(item)
        self.note(out)
        return out


def _key(item: Mapping[str, Any]) -> Any:
    key = item.get("id")
    return key if isinstance(key, int | str) else None


def _items(
    payload: Any, key: str, struct: type[msgspec.Struct], shape: Callable[[Any], dict[str, Any]]
) -> list[dict[str, Any]]:
    if isinstance(payload, Mapping):
        raw = payload.get(key, [payload])
    elif isinstance(payload, struct):
        raw = [payload]
    elif isinstance(payload, list | tuple):
        raw = payload
    else:
        raw = []
    # Live sync publishes {key: [structs], "stats": {id: counts}}: read once per batch.
    stats = payload.get("stats") if isinstance(payload, Mapping) else None
    out = []
    for item in raw if isinstance(raw, list | tuple) else ():
        if isinstance(item, struct):
            shaped = shape(item)
            if isinstance(stats, Mapping) and shaped.get("id") in stats:
                shaped["stats"] = stats[shaped["id"]]
            out.append(shaped)
        elif isinstance(item, Mapping):
            out.append(dict(item))
    return out


async def _follow(
    subscribe: Callable[[], Subscription],
    initial: Callable[[], Awaitable[tuple[list[dict[str, Any]], str | None]]],
    key: str,
    struct: type[msgspec.Struct],
    shape: Callable[[Any], dict[str, Any]],
    extra: dict[str, Any],
) -> AsyncIterator[ServerSentEvent]:
    ids = itertools.count(1)
    with subscribe() as sub:  # first, so nothing committed during the read is missed
        items, next_cursor = await initial()
        covered = _Covered(items, sub.enqueued)
        page = {
            key: items,
            "limit": INITIAL_LIMIT,
            "complete": len(items) < INITIAL_LIMIT,
            "next_cursor": next_cursor,
        }
        yield ServerSentEvent(id=next(ids), event="initial", data={**extra, **page})
        yield ServerSentEvent(id=next(ids), event="ready", data=extra)
        async for payload in sub:
            if sub.dropped:
                yield error_event("lagged", "updates were dropped; reconnect to resync", next(ids))
                return
            fresh = covered.fresh(_items(payload, key, struct, shape))
            if fresh:
                yield ServerSentEvent(id=next(ids), event="update", data={**extra, key: fresh})


# ---------------------------------------------------------------------------------------------
# Routes


async def chat_messages(request: Request) -> EventSourceResponse:
    """SSE 1. 404 (JSON, before any stream) for an unknown chat."""
    app_state = state.of(request)
    chat_id: int = request.path_params["chat_id"]
    if chat_id > MAX_ID:
        raise NotFound(f"no chat {chat_id}")
    library = app_state.library
    await library.chat(chat_id)  # NotFound → 404

    async def newest() -> tuple[list[dict[str, Any]], str | None]:
        page = await library.chat_messages(chat_id, INITIAL_LIMIT)
        return [message_json(m) for m in page.items], page.next

    return event_stream(
        request,
        _follow(
            lambda: app_state.hub.subscribe_chat(chat_id),
            newest,
            "messages",
            Message,
            message_json,
            {"chat_id": chat_id},
        ),
    )


async def chats(request: Request) -> EventSourceResponse:
    """SSE 2: the first page of the chat list, then its changes."""
    app_state = state.of(request)
    library = app_state.library

    async def first_page() -> tuple[list[dict[str, Any]], str | None]:
        page = await library.chats(INITIAL_LIMIT)
        return await live_stats.chats_with_stats(app_state.db, page.items), page.next

    return event_stream(
        request,
        _follow(app_state.hub.subscribe_chats, first_page, "chats", Chat, chat_json, {}),
    )


async def contacts(request: Request) -> EventSourceResponse:
    """SSE 3: the first page of the contact list, then its changes."""
    app_state = state.of(request)
    library = app_state.library

    async def first_page() -> tuple[list[dict[str, Any]], str | None]:
        page = await library.contacts(INITIAL_LIMIT)
        return await live_stats.contacts_with_stats(app_state.db, page.items), page.next

    return event_stream(
        request,
        _follow(
            app_state.hub.subscribe_contacts, first_page, "contacts", Contact, contact_json, {}
        ),
    )


ROUTES = [
    Route("/api/live-sync/stream/chat/{chat_id:int}/messages", chat_messages, methods=["GET"]),
    Route("/api/live-sync/stream/chats", chats, methods=["GET"]),
    Route("/api/live-sync/stream/contacts", contacts, methods=["GET"]),
]
