"""`GET /api/search` in semantic and hybrid modes, and `GET /api/index/status`."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request

from chatstats.api import state
from chatstats.context.search import MODES, parse_time
from chatstats.errors import BadRequest, ChatStatsError


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
    from chatstats.api.common import message_json

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


async def index_status(request: Request) -> dict[str, Any]:
    found = state.of(request).search_index
    if found is None:
        return {
            "model": None,
            "dim": 0,
            "items": 0,
            "pending": 0,
            "building": False,
            "progress": 0.0,
            "built_at": None,
        }
    described: dict[str, Any] = found.index.describe()
    return described


ROUTES = [("/api/index/status", index_status)]
