"""Routes of the AI chatbot (CONTRACT.md, "AI chatbot"): threads, turns as SSE, documents.

Handlers parse and check, call `ChatbotService`, and shape the answer. A turn's request is
checked (thread exists, content valid) and its user message committed before the stream
starts, so a bad request is an ordinary JSON error and an accepted one is never lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatstats.api import state
from chatstats.api.common import iso_time
from chatstats.api.common import limit as _limit
from chatstats.api.common import path_id as _path_id
from chatstats.api.common import query_int as _query_int
from chatstats.api.sse import EventSourceResponse, ServerSentEvent
from chatstats.chatbot.service import (
    ChatbotService,
    check_content,
    check_contexts,
    check_title,
)
from chatstats.chatbot.turn import Turn
from chatstats.errors import BadRequest

MAX_BODY_BYTES = 200_000


# SSE event names of a turn (CONTRACT.md): each data is JSON.
TURN_STARTED = "turn_started"
TOOL_CALL = "tool_call"
TOOL_RESULT = "tool_result"
DELTA = "delta"
MESSAGE = "message"
ERROR = "error"


async def service_of(request: Request) -> ChatbotService:
    """One service per app, made at first use; making it closes turns a crash left open."""
    app = request.app
    svc: ChatbotService | None = getattr(app.state, "chatbot", None)
    if svc is None:  # no await before it is set: two first requests cannot make two
        st = state.of(request)
        assert st.bus is not None
        svc = ChatbotService(
            st.db,
            st.bus,
            st.settings,
            metrics=st.metrics,
            search_index=lambda: _loaded_index(st),
        )
        app.state.chatbot = svc
    await svc.recover()
    return svc


def _loaded_index(st: state.AppState) -> Any:
    """The daemon's vector index once it serves; None before (search then says it matched
    words only)."""
    found = getattr(st, "search_index", None)
    if found is None or not found.ready.is_set():
        return None
    return found.index


# ---------------------------------------------------------------------------------------------
# Parameters and bodies


async def _body(request: Request, allowed: set[str]) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest("request body too large")
    if not raw.strip():
        raw = b"{}"
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise BadRequest("request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0][:40]!r}")
    return body


# ---------------------------------------------------------------------------------------------
# Shapes


def thread_json(t: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": t["id"],
        "title": t["title"],
        "contexts": t["contexts"],
        "message_count": t["message_count"],
        "total_tokens": t["total_tokens"],
        "total_cost": t["total_cost"],
        "created_at": iso_time(t["created_ns"]),
        "updated_at": iso_time(t["updated_ns"]),
    }


def message_json(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": m["id"],
        "thread_id": m["thread_id"],
        "workflow_id": m["workflow_id"],
        "role": m["role"],
        "content": m["content"],
        "status": m["status"],
        "error_code": m["error_code"],
        "model": m["model"],
        "provider": m["provider"],
        "prompt_tokens": m["prompt_tokens"],
        "completion_tokens": m["completion_tokens"],
        "total_tokens": m["total_tokens"],
        "cost": m["cost"],
        "response_time_ms": m["response_time_ms"],
        "tool_calls": m["tool_calls"],
        "citations": m["citations"],
        "created_at": iso_time(m["created_ns"]),
    }


def document_json(d: dict[str, Any]) -> dict[str, Any]:
    out = {
        "id": d["id"],
        "thread_id": d["thread_id"],
        "title": d["title"],
        "contexts": d["contexts"],
        "read_count": d["read_count"],
        "last_read_at": iso_time(d["last_read_ns"]),
        "created_at": iso_time(d["created_ns"]),
    }
    if "content" in d:
        out["content"] = d["content"]
    return out


# ---------------------------------------------------------------------------------------------
# Handlers


async def create_thread(request: Request) -> dict[str, Any]:
    body = await _body(request, {"title", "contexts"})
    # Absent or null means "none"; any other value must have the right type ({} is no list).
    title = check_title("" if body.get("title") is None else body["title"])
    contexts = check_contexts([] if body.get("contexts") is None else body["contexts"])
    svc = await service_of(request)
    return thread_json(await svc.create_thread(title, contexts))


async def list_threads(request: Request) -> list[dict[str, Any]]:
    svc = await service_of(request)
    items = await svc.threads(_limit(request), _query_int(request, "before_id"))
    return [thread_json(t) for t in items]


async def get_thread(request: Request) -> dict[str, Any]:
    svc = await service_of(request)
    return thread_json(await svc.thread(_path_id(request)))


async def update_thread(request: Request) -> dict[str, Any]:
    thread_id = _path_id(request)
    body = await _body(request, {"title", "contexts"})
    title = check_title(body["title"]) if body.get("title") is not None else None
    contexts = check_contexts(body["contexts"]) if body.get("contexts") is not None else None
    svc = await service_of(request)
    return thread_json(await svc.update_thread(thread_id, title, contexts))


async def list_messages(request: Request) -> list[dict[str, Any]]:
    svc = await service_of(request)
    items = await svc.messages(_path_id(request), _limit(request), _query_int(request, "after_id"))
    return [message_json(m) for m in items]


async def list_documents(request: Request) -> list[dict[str, Any]]:
    svc = await service_of(request)
    items = await svc.documents(
        _limit(request), _query_int(request, "before_id"), _query_int(request, "thread_id")
    )
    return [document_json(d) for d in items]


async def get_document(request: Request) -> dict[str, Any]:
    svc = await service_of(request)
    return document_json(await svc.document(_path_id(request)))


async def read_document(request: Request) -> dict[str, Any]:
    svc = await service_of(request)
    return document_json(await svc.read_document(_path_id(request)))


class _TurnEvents:
    """The turn as ServerSentEvents; closing it closes (and so stores) the turn."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn

    def __aiter__(self) -> AsyncIterator[ServerSentEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[ServerSentEvent]:
        async for name, data in self.turn:
            if name == DELTA:
                yield ServerSentEvent(event=DELTA, data=data)
            elif name == TOOL_CALL:
                yield ServerSentEvent(event=TOOL_CALL, data=data)
            elif name == TOOL_RESULT:
                yield ServerSentEvent(event=TOOL_RESULT, data=data)
            elif name == TURN_STARTED:
                yield ServerSentEvent(event=TURN_STARTED, data=data)
            elif name == MESSAGE:
                yield ServerSentEvent(event=MESSAGE, data=message_json(data))
            else:
                yield ServerSentEvent(event=ERROR, data=data)

    async def aclose(self) -> None:
        await self.turn.aclose()


async def post_message(request: Request) -> Response:
    thread_id = _path_id(request)
    body = await _body(request, {"content"})
    content = check_content(body.get("content"))
    svc = await service_of(request)
    st = state.of(request)
    turn = await svc.start_turn(thread_id, content, st.shutdown)
    return EventSourceResponse(
        _TurnEvents(turn),
        heartbeat_seconds=st.settings.heartbeat_seconds,
        shutdown=st.shutdown,
    )


JSON_ROUTES: list[tuple[Any, ...]] = [
    ("/api/chatbot/threads", list_threads),
    ("/api/chatbot/threads", create_thread, ("POST",)),
    ("/api/chatbot/threads/{id:int}", get_thread),
    ("/api/chatbot/threads/{id:int}", update_thread, ("PATCH",)),
    ("/api/chatbot/threads/{id:int}/messages", list_messages),
    ("/api/chatbot/documents", list_documents),
    ("/api/chatbot/documents/{id:int}", get_document),
    ("/api/chatbot/documents/{id:int}/read", read_document, ("POST",)),
]

ROUTES = [Route("/api/chatbot/threads/{id:int}/messages", post_message, methods=["POST"])]
