"""`GET /api/search` (text, semantic and hybrid modes) and `GET /api/index/status`.

Text mode is the library's literal word search and pages like the other lists; the other
modes rank by meaning through the vector index and answer `limit` results, best first.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request

from chatstats.api import state
from chatstats.api.common import Paged, cursor, library, limit, message_json, paged, query_int
from chatstats.context.search import MODES, parse_time
from chatstats.errors import BadRequest, ChatStatsError
from chatstats.llm import embedding_usage


class IndexUnavailable(ChatStatsError):
    code = "index_unavailable"
    status = 503


def _index(request: Request) -> Any:
    found = state.of(request).search_index
    if found is None or not found.ready.is_set():
        raise IndexUnavailable("the vector index is not loaded yet; see /api/index/status")
    return found


async def search_by_meaning(
    request: Request, mode: str, limit: int, chat_id: int | None, contact_id: int | None
) -> list[dict[str, Any]]:
    """Best first, `limit` only (no paging): what the fused ranking says is most relevant."""
    if mode not in MODES:
        raise BadRequest("mode must be text, semantic or hybrid")
    if request.query_params.get("before_id"):
        raise BadRequest("before_id pages mode=text only")
    q = request.query_params.get("q", "")
    since = parse_time(request.query_params.get("since"), "since")
    until = parse_time(request.query_params.get("until"), "until")
    index = _index(request)
    hits = await anyio.to_thread.run_sync(
        lambda: index.search(
            q,
            mode,
            chat_id=chat_id,
            contact_id=contact_id,
            since_ns=since,
            until_ns=until,
            limit=limit,
        )
    )
    return [{**message_json(m), "score": score, "matched": matched} for m, score, matched in hits]


async def search(request: Request) -> Paged | list[dict[str, Any]]:
    """Messages containing every word of `q` (each taken literally), newest first; optional
    `chat_id`, `contact_id` (what that contact sent), `since`/`until` (ISO 8601), and
    `before_id` (or the `Link` header's `cursor`) to read on. `mode=semantic|hybrid` ranks by
    meaning instead (`search_by_meaning`)."""
    mode = request.query_params.get("mode") or "text"
    if mode != "text":
        return await search_by_meaning(
            request,
            mode,
            limit(request),
            query_int(request, "chat_id"),
            query_int(request, "contact_id"),
        )
    page = await library(request).search(
        request.query_params.get("q", ""),
        query_int(request, "chat_id"),
        limit(request),
        query_int(request, "before_id"),
        cursor(request),
        contact_id=query_int(request, "contact_id"),
        since_ns=parse_time(request.query_params.get("since"), "since"),
        until_ns=parse_time(request.query_params.get("until"), "until"),
    )
    return paged(request, page, [message_json(m) for m in page.items])


NO_USAGE = {"calls": 0, "prompt_tokens": 0, "cost": 0.0, "latency_ms": 0.0, "failed_calls": 0}


async def index_status(request: Request) -> dict[str, Any]:
    """The index's state, and `usage`: what its model's embedding calls cost so far, read
    from llm_calls (waiting records are written first, so the figures include the latest)."""
    app_state = state.of(request)
    found = app_state.search_index
    if found is None:
        return {
            "model": None,
            "dim": 0,
            "items": 0,
            "pending": 0,
            "building": False,
            "progress": 0.0,
            "built_at": None,
            "usage": dict(NO_USAGE),
        }
    described: dict[str, Any] = found.describe()
    if app_state.embed_calls is not None:
        await app_state.embed_calls.flush(app_state.db)
    described["usage"] = await app_state.db.read(embedding_usage, described["model"])
    return described


ROUTES = [("/api/search", search), ("/api/index/status", index_status)]
