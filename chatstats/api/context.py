"""Routes of the context retrievers (CONTRACT.md, "Search and context"): the definitions, and a
preview of what a definition (or an ad-hoc list of retrievers) would put into a prompt.

Handlers decode a strict body (unknown fields and wrong types are 400s), call
`ContextService`, and return its answer. Unknown definitions and scope ids are 404s; an
unknown retriever, a bad budget or a missing scope are 400s.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request

from chatstats.api import state
from chatstats.api.common import PreviewBody
from chatstats.context.definitions import Step, check_step
from chatstats.context.service import ContextService, PreviewRequest
from chatstats.errors import BadRequest

MAX_BODY_BYTES = 100_000


def service_of(request: Request) -> ContextService:
    return state.of(request).context


async def _body(request: Request) -> PreviewBody:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest("request body too large")
    try:
        body: PreviewBody = msgspec.json.decode(raw or b"{}", type=PreviewBody)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise BadRequest("request body must be a JSON object") from None
    return body


def _steps(body: PreviewBody) -> tuple[Step, ...] | None:
    if body.retrievers is None:
        return None
    out = []
    for i, spec in enumerate(body.retrievers):
        raw = spec if isinstance(spec, str) else msgspec.to_builtins(spec)
        if isinstance(raw, dict):
            raw = {k: v for k, v in raw.items() if v is not None}
        out.append(check_step(raw, f"retrievers[{i}]"))
    return tuple(out)


async def preview(request: Request) -> dict[str, Any]:
    body = await _body(request)
    req = PreviewRequest(
        definition=body.definition,
        steps=_steps(body),
        chat_id=body.chat_id,
        contact_id=body.contact_id,
        conversation_id=body.conversation_id,
        query=body.query,
        budget_tokens=body.budget_tokens,
    )
    return await service_of(request).preview(req)


async def list_definitions(request: Request) -> list[dict[str, Any]]:
    return await service_of(request).definitions()


ROUTES: list[tuple[Any, ...]] = [
    ("/api/context/definitions", list_definitions),
    ("/api/context/preview", preview, ("POST",)),
]
