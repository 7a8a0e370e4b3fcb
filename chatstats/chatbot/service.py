"""Threads, documents and turns: the chatbot's domain logic over its store and the gateway.

A turn, in order (seed 003's checklist, every box):

1. one write transaction: the user's message (thread aggregates +1 message), the
   `thread_workflows` row (running) and `workflow_started`; in-memory tracking starts;
2. up to MAX_STEPS steps, each one streamed model call through `chatstats.llm` with the
   tools offered (the last step offers none, so the loop ends with an answer). Each call's
   accounting row is written as soon as it ends, with `model_response`, in one transaction;
   each tool call runs on a read connection off the loop, its output bounded, and is
   followed by `tool_called`;
3. one write transaction: the assistant message, whose tokens and cost are summed in SQL
   over the turn's `llm_calls` rows (`run_id` = the workflow id), the thread's aggregates
   moved by exactly those numbers, the workflow row finished, and `workflow_completed` or
   `workflow_failed`; tracking finishes and metrics move.

Whatever ends a turn early (a model error, a bad tool call that exhausts the steps, the
client leaving, shutdown) still runs step 3, shielded from cancellation: the answer is
stored as `error` (no text) or `partial` (the text streamed so far), accounted. A turn cut
by a crash is closed the same way when the service next starts (`recover`). The user's
message is committed before anything can fail, so it is never lost.

Nothing here logs or emits message text, prompts or outputs: ids, counts, codes, times.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import anyio

from chatstats import llm, log
from chatstats.chatbot import store, workflow
from chatstats.chatbot.tools import Scope, ToolError, ToolOutput, run_read_tool
from chatstats.chatbot.tracking import Tracker
from chatstats.chatbot.turn import TOOL_MAX_TOKENS, Turn
from chatstats.config import Settings
from chatstats.db import Database
from chatstats.errors import BadRequest, NotFound
from chatstats.events.bus import EventBus
from chatstats.metrics import REGISTRY, Metrics

logger = log.get(__name__)

MAX_CONTENT_CHARS = 20_000
MAX_TITLE_CHARS = 200
MAX_CONTEXTS = 50
MAX_DOCUMENT_CHARS = 100_000


def check_contexts(raw: Any) -> list[store.Context]:
    """`[{chat_id: n} | {contact_id: n}]`, each exactly one positive integer key."""
    if not isinstance(raw, list):
        raise BadRequest("contexts must be a list of {chat_id} or {contact_id} objects")
    if len(raw) > MAX_CONTEXTS:
        raise BadRequest(f"at most {MAX_CONTEXTS} contexts")
    out: list[store.Context] = []
    for item in raw:
        if not isinstance(item, dict) or len(item) != 1:
            raise BadRequest("each context must be {chat_id: n} or {contact_id: n}")
        ((key, value),) = item.items()
        if key not in ("chat_id", "contact_id"):
            raise BadRequest("each context must be {chat_id: n} or {contact_id: n}")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
            raise BadRequest(f"{key} must be a positive integer")
        out.append({key: value})
    return out


def check_title(raw: Any) -> str:
    if not isinstance(raw, str) or len(raw) > MAX_TITLE_CHARS:
        raise BadRequest(f"title must be a string of at most {MAX_TITLE_CHARS} characters")
    return raw.strip()


def check_content(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise BadRequest("content must be a non-empty string")
    if len(raw) > MAX_CONTENT_CHARS:
        raise BadRequest(f"content must be at most {MAX_CONTENT_CHARS} characters")
    return raw


class ChatbotService:
    """Threads, documents and turns over the one writer and the reader pool."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        settings: Settings | None,
        *,
        config: llm.LLMConfig | None = None,
        metrics: Metrics | None = None,
        search_index: Callable[[], Any] | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.settings = settings or Settings()
        self.config = config if config is not None else llm.configured(settings)
        self.tracker = Tracker(metrics or REGISTRY)
        self.search_index = search_index or (lambda: None)
        self._recovered = False
        self._recover_lock = anyio.Lock()

    # -- startup -----------------------------------------------------------------------------

    async def recover(self) -> int:
        """Close the turns a crash left running: each gets its accounted `error` message
        (code `interrupted`) and `workflow_failed`. Once per service; returns how many."""
        if self._recovered:
            return 0
        async with self._recover_lock:
            if self._recovered:
                return 0
            running = await self.db.read(store.running_workflows)
            for wf in running:
                await self.bus.write(
                    workflow.finish_tx,
                    wf["id"],
                    wf["thread_id"],
                    "",
                    "error",
                    "interrupted",
                    wf["model"],
                    wf["llm_calls"],
                    wf["tool_calls"],
                    [],
                    None,
                )
                logger.warning("chatbot_turn_recovered", workflow_id=wf["id"])
            self._recovered = True
            return len(running)

    # -- threads ------------------------------------------------------------------------------

    async def create_thread(self, title: str, contexts: list[store.Context]) -> dict[str, Any]:
        def tx(conn: sqlite3.Connection) -> dict[str, Any]:
            missing = store.missing_context(conn, contexts)
            if missing:
                raise NotFound(missing)
            thread_id = store.create_thread(conn, title, contexts, time.time_ns())
            found = store.thread(conn, thread_id)
            assert found is not None
            return found

        return await self.db.write(tx)

    async def update_thread(
        self, thread_id: int, title: str | None, contexts: list[store.Context] | None
    ) -> dict[str, Any]:
        def tx(conn: sqlite3.Connection) -> dict[str, Any]:
            missing = store.missing_context(conn, contexts or [])
            if missing:
                raise NotFound(missing)
            if not store.update_thread(conn, thread_id, title, contexts, time.time_ns()):
                raise NotFound(f"no thread {thread_id}")
            found = store.thread(conn, thread_id)
            assert found is not None
            return found

        return await self.db.write(tx)

    async def thread(self, thread_id: int) -> dict[str, Any]:
        found = await self.db.read(store.thread, thread_id)
        if found is None:
            raise NotFound(f"no thread {thread_id}")
        return found

    async def threads(self, limit: int, before_id: int | None) -> list[dict[str, Any]]:
        return await self.db.read(store.threads, limit, before_id)

    async def messages(
        self, thread_id: int, limit: int, after_id: int | None
    ) -> list[dict[str, Any]]:
        def read(conn: sqlite3.Connection) -> list[dict[str, Any]] | None:
            if not store.thread_exists(conn, thread_id):
                return None
            return store.messages(conn, thread_id, limit, after_id)

        found = await self.db.read(read)
        if found is None:
            raise NotFound(f"no thread {thread_id}")
        return found

    # -- documents ----------------------------------------------------------------------------

    async def documents(
        self, limit: int, before_id: int | None, thread_id: int | None
    ) -> list[dict[str, Any]]:
        return await self.db.read(store.documents, limit, before_id, thread_id)

    async def document(self, document_id: int) -> dict[str, Any]:
        found = await self.db.read(store.document, document_id)
        if found is None:
            raise NotFound(f"no document {document_id}")
        return found

    async def read_document(self, document_id: int) -> dict[str, Any]:
        def tx(conn: sqlite3.Connection) -> dict[str, Any] | None:
            if not store.read_document(conn, document_id, time.time_ns()):
                return None
            return store.document(conn, document_id)

        found = await self.db.write(tx)
        if found is None:
            raise NotFound(f"no document {document_id}")
        return found

    # -- turns --------------------------------------------------------------------------------

    async def start_turn(
        self, thread_id: int, content: str, shutdown: anyio.Event | None = None
    ) -> Turn:
        """Commit the user's message and the workflow row; the Turn streams the rest.
        `shutdown` (the daemon's) tells a turn cut by shutdown from one its client left."""
        await self.recover()
        workflow_id = secrets.token_hex(8)
        model = self.config.model if self.config is not None else None
        began = time.perf_counter()
        user = await self.bus.write(workflow.start_tx, workflow_id, thread_id, content, model)
        if user is None:
            raise NotFound(f"no thread {thread_id}")
        wf = self.tracker.start(workflow_id, thread_id, model)
        return Turn(self, wf, user, began, shutdown)

    def _run_tool_sync(
        self,
        conn: sqlite3.Connection,
        name: str,
        arguments: dict[str, Any],
        scope: Scope | None,
        max_tokens: int = TOOL_MAX_TOKENS,
    ) -> ToolOutput:
        return run_read_tool(
            conn,
            name,
            arguments,
            settings=self.settings,
            scope=scope,
            max_tokens=max_tokens,
            index=self.search_index(),
        )

    async def create_document(
        self, thread_id: int, workflow_id: str, arguments: dict[str, Any]
    ) -> ToolOutput:
        title, content = arguments.get("title"), arguments.get("content")
        if set(arguments) - {"title", "content"}:
            raise ToolError("create_document takes only title and content")
        if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE_CHARS:
            raise ToolError(f"title must be a non-empty string of at most {MAX_TITLE_CHARS} chars")
        if not isinstance(content, str) or not content.strip():
            raise ToolError("content must be a non-empty string")
        if len(content) > MAX_DOCUMENT_CHARS:
            raise ToolError(f"content must be at most {MAX_DOCUMENT_CHARS} characters")
        document_id = await self.db.write(
            store.create_document, thread_id, workflow_id, title.strip(), content, time.time_ns()
        )
        return ToolOutput(
            content=json.dumps({"document_id": document_id, "title": title.strip()}),
            count=1,
            citations=[],
        )
