"""Routes of the context retrievers (CONTRACT.md, "Search and context"): the definitions, and a
preview of what a definition (or an ad-hoc list of retrievers) would put into a prompt.

Handlers decode a strict body (unknown fields and wrong types are 400s), call
`ContextService`, and return its answer. Unknown definitions and scope ids are 404s; an
unknown retriever, a bad budget or a missing scope are 400s.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta
from starlette.requests import Request

from chatstats.api import state
from chatstats.context.definitions import Step, check_step
from chatstats.context.service import (
    MAX_BUDGET,
    MAX_QUERY_CHARS,
    ContextService,
    PreviewRequest,
)
from chatstats.errors import BadRequest

MAX_BODY_BYTES = 100_000
MAX_ID = 2**63 - 1

_Id = Annotated[int, Meta(ge=1, le=MAX_ID)]


class RetrieverSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One retriever of an ad-hoc list: its name, its share of what is left, its params."""

    retriever: Annotated[str, Meta(min_length=1, max_length=64)]
    share: Annotated[float, Meta(gt=0, le=1)] | None = None
    params: dict[str, Any] | None = None


class PreviewBody(msgspec.Struct, forbid_unknown_fields=True):
    budget_tokens: Annotated[int, Meta(ge=1, le=MAX_BUDGET)]
    definition: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    retrievers: (
        Annotated[
            list[Annotated[str, Meta(min_length=1, max_length=64)] | RetrieverSpec],
            Meta(min_length=1, max_length=10),
        ]
        | None
    ) = None
    chat_id: _Id | None = None
    contact_id: _Id | None = None
    conversation_id: _Id | None = None
    query: Annotated[str, Meta(max_length=MAX_QUERY_CHARS)] | None = None


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
