"""Context assembly: a definition's retrievers (or an ad-hoc list) over a scope, in one budget.

The budget is split in the definition's order: each retriever gets its `share` of what is left
(no share: an equal part among the retrievers still to run), and whatever it leaves unused
goes on to the next, so a chat without analyses gives their room to its conversations.
Sections are joined by a blank line (one token, reserved before each section but the first),
and the whole text is counted once more: `tokens` is the real cl100k count of `text`, never
above `budget_tokens`.

Reads run on one reader connection off the event loop; seeding runs on the writer. Logs carry
names, ids and counts, never content.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from chatstats import log
from chatstats.context import definitions as defs
from chatstats.context import retrievers, store
from chatstats.context.retrievers import Context, Retrieved, Scope
from chatstats.db import Database
from chatstats.errors import BadRequest, NotFound
from chatstats.llm import tokens

logger = log.get(__name__)

MAX_BUDGET = 1_000_000
MAX_QUERY_CHARS = 1000
SECTION_SEP = "\n\n"


@dataclass(frozen=True)
class PreviewRequest:
    """A checked request (the route checks types; this checks meaning)."""

    definition: str | None
    steps: tuple[defs.Step, ...] | None
    chat_id: int | None
    contact_id: int | None
    conversation_id: int | None
    query: str | None
    budget_tokens: int


class ContextService:
    def __init__(self, db: Database, index: Callable[[], Any] = lambda: None) -> None:
        self._db = db
        self._index = index
        self._seeded = False
        self._lock = anyio.Lock()

    async def seed(self, path: Any = None) -> dict[str, int]:
        """Load the definitions file and make the table match it (idempotent)."""
        async with self._lock:
            found = await anyio.to_thread.run_sync(defs.load, path)
            counts = await self._db.write(defs.seed, found)
            self._seeded = True
        logger.info("context_definitions_seeded", **counts)
        return counts

    async def _ready(self) -> None:
        """Apps built without the daemon (tests, tools) seed at first use; a bad file is
        logged once and the table is served as it stands."""
        if self._seeded:
            return
        try:
            await self.seed()
        except defs.DefinitionsError as exc:
            self._seeded = True
            logger.error("context_seed_failed", code=exc.code, error=exc.message)

    async def definitions(self) -> list[dict[str, Any]]:
        await self._ready()
        rows = await self._db.read(store.definitions)
        return [_definition_json(r) for r in rows]

    async def preview(self, request: PreviewRequest) -> dict[str, Any]:
        await self._ready()
        ctx = Context(index=self._index)
        answer = await self._db.read(_preview, request, ctx)
        logger.info(
            "context_preview",
            definition=request.definition,
            budget=request.budget_tokens,
            tokens=answer["tokens"],
            items=len(answer["items"]),
        )
        return answer


def _definition_json(row: sqlite3.Row) -> dict[str, Any]:
    d = defs.from_row(row)
    return {**d.json(), "seeded_at_ns": row["seeded_ns"]}


def check_budget(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BUDGET:
        raise BadRequest(f"budget_tokens must be an integer from 1 to {MAX_BUDGET}")
    return value


def _scope(conn: sqlite3.Connection, req: PreviewRequest) -> Scope:
    if req.chat_id is not None and req.contact_id is not None:
        raise BadRequest("give chat_id or contact_id, not both")
    chat_ids: tuple[int, ...] = ()
    if req.chat_id is not None:
        if not store.chat_exists(conn, req.chat_id):
            raise NotFound(f"no chat {req.chat_id}")
        chat_ids = (req.chat_id,)
    if req.contact_id is not None:
        if not store.contact_exists(conn, req.contact_id):
            raise NotFound(f"no contact {req.contact_id}")
        chat_ids = tuple(store.contact_chats(conn, req.contact_id))
    if req.conversation_id is not None:
        chat = store.conversation_chat(conn, req.conversation_id)
        if chat is None:
            raise NotFound(f"no conversation {req.conversation_id}")
        if chat_ids and chat not in chat_ids:
            raise BadRequest(f"conversation {req.conversation_id} is not in the scope given")
        chat_ids = (chat,)
    query = req.query.strip() if req.query else None
    return Scope(req.chat_id, req.contact_id, req.conversation_id, chat_ids, query or None)


def _plan(conn: sqlite3.Connection, req: PreviewRequest, scope: Scope) -> list[defs.Step]:
    if (req.definition is None) == (req.steps is None):
        raise BadRequest("give a definition or a list of retrievers (one of the two)")
    if req.steps is not None:
        steps = list(req.steps)
        needs: tuple[str, ...] = ()
    else:
        assert req.definition is not None
        row = store.definition(conn, req.definition)
        if row is None:
            raise NotFound(f"no context definition {req.definition[:64]!r}")
        found = defs.from_row(row)
        steps, needs = list(found.steps), found.scopes
    if needs and not scope.kinds & set(needs):
        wanted = " or ".join(f"{n}_id" for n in needs)
        raise BadRequest(f"definition {req.definition} needs {wanted}")
    # Ad-hoc lists (and definitions open to any scope): every retriever but user_name reads chats.
    if not needs and not scope.chat_ids and any(s.retriever != "user_name" for s in steps):
        raise BadRequest("these retrievers need chat_id, contact_id or conversation_id")
    return steps


def _preview(conn: sqlite3.Connection, req: PreviewRequest, ctx: Context) -> dict[str, Any]:
    budget = check_budget(req.budget_tokens)
    scope = _scope(conn, req)
    steps = _plan(conn, req, scope)
    sections: list[Retrieved] = []
    used = 0
    for i, step in enumerate(steps):
        reserve = 1 if any(s.parts for s in sections) else 0  # the blank line before it
        left = budget - used - reserve
        later = len(steps) - i
        share = step.share if step.share is not None else 1 / later
        allot = left if i == len(steps) - 1 else int(left * share)
        got = retrievers.run(step.retriever, conn, scope, max(0, allot), step.params, ctx)
        sections.append(got)
        if got.parts:
            used += got.tokens + reserve
    text = _join(sections)
    while text and tokens.count(text) > budget:  # a seam merged tokens: give up a piece
        last = next(s for s in reversed(sections) if s.parts)
        last.pop_one()
        text = _join(sections)
    items, dropped = [], []
    for s in sections:
        items += [{"retriever": s.retriever, **it} for it in s.items]
        dropped += [{"retriever": s.retriever, **d} for d in s.dropped]
    return {
        "definition": req.definition,
        "budget_tokens": budget,
        "tokens": tokens.count(text),
        "text": text,
        "items": items,
        "retrievers": [
            {
                "name": s.retriever,
                "budget_tokens": s.budget,
                "tokens": s.tokens,
                "items": len(s.items),
                "dropped": s.dropped_count,
            }
            for s in sections
        ],
        "dropped": dropped,
    }


def _join(sections: list[Retrieved]) -> str:
    return SECTION_SEP.join(s.text for s in sections if s.parts)
