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

import functools
import json
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from chatstats import llm, log
from chatstats.chatbot import store
from chatstats.chatbot.tools import READ_TOOLS, Scope, Tool, ToolError, ToolOutput, run_read_tool
from chatstats.chatbot.tracking import Tracker, Workflow
from chatstats.config import Settings
from chatstats.db import Database
from chatstats.errors import BadRequest, ChatStatsError, NotFound
from chatstats.events.bus import EventBus, append
from chatstats.metrics import REGISTRY, Metrics

logger = log.get(__name__)

PURPOSE = "chatbot"
MAX_STEPS = 6
MAX_TOOL_CALLS_PER_STEP = 4
TOOL_MAX_TOKENS = 2000
HISTORY_MESSAGES = 20
HISTORY_CHARS = 4000
MAX_CONTENT_CHARS = 20_000
MAX_TITLE_CHARS = 200
MAX_CONTEXTS = 50
MAX_DOCUMENT_CHARS = 100_000
MAX_CITATIONS = 50

# Event types on the event log (scope `thread:{id}`, run_id = workflow id).
WORKFLOW_STARTED = "workflow_started"
MODEL_RESPONSE = "model_response"
TOOL_CALLED = "tool_called"
WORKFLOW_COMPLETED = "workflow_completed"
WORKFLOW_FAILED = "workflow_failed"

CREATE_DOCUMENT = "create_document"


def prompts_dir() -> Path:
    """Prompts ship inside the wheel as chatstats/_prompts, or sit at the repo root: the
    system prompt in `chatbot/`, tool descriptions in `tools/` (beside the read tools')."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_prompts"
    return packaged if packaged.is_dir() else here.parent / "prompts"


@functools.cache
def prompt(path: str) -> str:
    return (prompts_dir() / f"{path}.md").read_text(encoding="utf-8").strip()


@functools.cache
def document_tool() -> Tool:
    return Tool(
        name=CREATE_DOCUMENT,
        description=prompt(f"tools/{CREATE_DOCUMENT}"),
        parameters={
            "type": "object",
            "properties": {
                "title": {"type": "string", "description": "A short title."},
                "content": {"type": "string", "description": "The document's full text."},
            },
            "required": ["title", "content"],
            "additionalProperties": False,
        },
    )


def tool_specs() -> list[dict[str, Any]]:
    """The tools a turn offers, in OpenAI's function format (what LiteLLM passes on)."""
    tools = [*READ_TOOLS.values(), document_tool()]
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]


class TurnError(ChatStatsError):
    """Why a turn ended without an answer, as the stream's `error` event says it."""

    code = "turn_failed"
    status = 502

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _scope(contexts: list[store.Context]) -> Scope | None:
    chats = tuple(c["chat_id"] for c in contexts if "chat_id" in c)
    contacts = tuple(c["contact_id"] for c in contexts if "contact_id" in c)
    return Scope(chat_ids=chats, contact_ids=contacts) if chats or contacts else None


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
        async with self._recover_lock:
            if self._recovered:
                return 0
            running = await self.db.read(store.running_workflows)
            for wf in running:
                await self.bus.write(
                    self._finish_tx,
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
        user = await self.bus.write(self._start_tx, workflow_id, thread_id, content, model)
        if user is None:
            raise NotFound(f"no thread {thread_id}")
        wf = self.tracker.start(workflow_id, thread_id, model)
        return Turn(self, wf, user, began, shutdown)

    def _start_tx(
        self,
        conn: sqlite3.Connection,
        workflow_id: str,
        thread_id: int,
        content: str,
        model: str | None,
    ) -> dict[str, Any] | None:
        if not store.thread_exists(conn, thread_id):
            return None
        now = time.time_ns()
        user = store.insert_message(
            conn,
            thread_id=thread_id,
            workflow_id=workflow_id,
            role="user",
            content=content,
            now_ns=now,
        )
        store.start_workflow(conn, workflow_id, thread_id, user["id"], model, now)
        append(
            conn,
            scope=f"thread:{thread_id}",
            type=WORKFLOW_STARTED,
            run_id=workflow_id,
            data={
                "thread_id": thread_id,
                "workflow_id": workflow_id,
                "user_message_id": user["id"],
                "model": model,
            },
        )
        return user

    def _record_tx(
        self, conn: sqlite3.Connection, rec: llm.CallRecord, thread_id: int, workflow_id: str,
        step: int,
    ) -> int:  # fmt: skip
        call_id = llm.record_call(conn, rec)
        append(
            conn,
            scope=f"thread:{thread_id}",
            type=MODEL_RESPONSE,
            run_id=workflow_id,
            data={
                "thread_id": thread_id,
                "workflow_id": workflow_id,
                "step": step,
                "call_id": call_id,
                "outcome": rec.outcome,
                "prompt_tokens": rec.prompt_tokens,
                "completion_tokens": rec.completion_tokens,
                "total_tokens": rec.total_tokens,
                "cost": rec.cost,
                "latency_ms": rec.latency_ms,
            },
        )
        return call_id

    def _tool_tx(
        self,
        conn: sqlite3.Connection,
        thread_id: int,
        workflow_id: str,
        step: int,
        name: str,
        count: int,
        error: str | None,
        ms: float,
    ) -> None:
        append(
            conn,
            scope=f"thread:{thread_id}",
            type=TOOL_CALLED,
            run_id=workflow_id,
            data={
                "thread_id": thread_id,
                "workflow_id": workflow_id,
                "step": step,
                "tool": name,
                "count": count,
                "error": error,
                "ms": ms,
            },
        )

    def _finish_tx(
        self,
        conn: sqlite3.Connection,
        workflow_id: str,
        thread_id: int,
        content: str,
        status: str,
        error_code: str | None,
        model: str | None,
        steps: int,
        tool_calls: int,
        citations: list[dict[str, Any]],
        response_time_ms: float | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The assistant message with the turn's summed usage, the aggregates, the workflow
        row and its closing event: one transaction, so none can exist without the others."""
        now = time.time_ns()
        usage = store.turn_usage(conn, workflow_id)
        msg = store.insert_message(
            conn,
            thread_id=thread_id,
            workflow_id=workflow_id,
            role="assistant",
            content=content,
            now_ns=now,
            status=status,
            error_code=error_code,
            model=model,
            provider=usage["provider"],
            usage=usage,
            response_time_ms=response_time_ms,
            tool_calls=tool_calls,
            citations=citations,
        )
        final = "completed" if status == "complete" else "failed"
        store.finish_workflow(
            conn,
            workflow_id,
            status=final,
            error_code=error_code,
            assistant_message_id=msg["id"],
            steps=steps,
            tool_calls=tool_calls,
            usage=usage,
            response_time_ms=response_time_ms,
            now_ns=now,
        )
        data = {
            "thread_id": thread_id,
            "workflow_id": workflow_id,
            "message_id": msg["id"],
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "cost": usage["cost"],
            "response_time_ms": response_time_ms,
            "steps": steps,
            "llm_calls": usage["calls"],
            "tool_calls": tool_calls,
        }
        scope = f"thread:{thread_id}"
        if final == "completed":
            append(conn, scope=scope, type=WORKFLOW_COMPLETED, run_id=workflow_id, data=data)
        else:
            data |= {"error_code": error_code, "partial": status == "partial"}
            append(conn, scope=scope, type=WORKFLOW_FAILED, run_id=workflow_id, data=data)
        return msg, usage

    # -- tools --------------------------------------------------------------------------------

    def _run_tool_sync(
        self, conn: sqlite3.Connection, name: str, arguments: dict[str, Any], scope: Scope | None
    ) -> ToolOutput:
        return run_read_tool(
            conn,
            name,
            arguments,
            settings=self.settings,
            scope=scope,
            max_tokens=TOOL_MAX_TOKENS,
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


def _parse_arguments(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise ToolError("the arguments are not valid JSON; send one JSON object") from None
    if not isinstance(value, dict):
        raise ToolError("the arguments must be one JSON object")
    return value


def _citation_key(c: dict[str, Any]) -> tuple[str, Any] | None:
    for key in ("message_guid", "conversation_id"):
        if key in c and isinstance(c[key], str | int) and not isinstance(c[key], bool):
            return key, c[key]
    return None


class Turn:
    """One turn's stream of `(event, data)` pairs, from `turn_started` to exactly one of
    `message` or `error`. Closing it at any point (the client left) still stores the turn's
    outcome, even if it was never iterated."""

    def __init__(
        self,
        svc: ChatbotService,
        wf: Workflow,
        user: dict[str, Any],
        began: float,
        shutdown: anyio.Event | None = None,
    ) -> None:
        self.svc = svc
        self.shutdown = shutdown
        self.wf = wf
        self.user = user
        self.began = began
        self.thread_id = wf.thread_id
        self.text: list[str] = []
        self.citations: list[dict[str, Any]] = []
        self._seen_citations: set[tuple[str, Any]] = set()
        self.tool_calls = 0
        self.stored: dict[str, Any] | None = None
        self._gen: AsyncIterator[tuple[str, dict[str, Any]]] | None = None

    def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        if self._gen is None:
            self._gen = self._events()
        return self._gen

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]
        if self.stored is None:
            await self._finish_shielded("partial" if self.text else "error", self._cut_code())

    def _cut_code(self) -> str:
        return "interrupted" if self.shutdown is not None and self.shutdown.is_set() else (
            "client_disconnected")  # fmt: skip

    # -- the loop -----------------------------------------------------------------------------

    async def _events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        yield "turn_started", {"thread_id": self.thread_id, "user_message_id": self.user["id"]}
        try:
            async for item in self._steps():
                yield item
        except llm.LLMError as err:
            code, message = err.code, err.message
        except TurnError as err:
            code, message = err.code, err.message
        except BaseException:
            # Cancelled (client gone, shutdown) or a bug: store what there is, then go on
            # unwinding. GeneratorExit lands here too; nothing may be yielded after it.
            await self._finish_shielded("partial" if self.text else "error", self._cut_code())
            raise
        else:
            msg = await self._finish("complete", None)
            yield "message", msg
            return
        msg = await self._finish("partial" if self.text else "error", code)
        yield "error", {"code": code, "message": message}

    async def _steps(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        svc = self.svc
        if svc.config is None:
            raise TurnError(
                llm.NotConfigured.code,
                "no LLM model is configured (set CHATSTATS_LLM_MODEL); threads and documents"
                " still work",
            )
        thread, history = await svc.db.read(self._context)
        scope = _scope(thread["contexts"])
        messages = self._prompt(thread["contexts"], history)
        specs = tool_specs()
        step_began = self.began
        for step in range(1, MAX_STEPS + 1):
            last = step == MAX_STEPS
            model_seconds = 0.0

            async def record(rec: llm.CallRecord, step: int = step) -> int:
                self.svc.tracker.model_response(
                    self.wf, rec.prompt_tokens, rec.completion_tokens, rec.cost
                )
                return int(
                    await svc.bus.write(svc._record_tx, rec, self.thread_id, self.wf.workflow_id,
                                        step)
                )  # fmt: skip

            stream = llm.stream(
                svc.config,
                messages,
                purpose=PURPOSE,
                record=record,
                thread_id=self.thread_id,
                run_id=self.wf.workflow_id,
                tools=None if last else specs,
            )
            async with stream:
                async for delta in stream:
                    if not self.text:
                        svc.tracker.first_delta(time.perf_counter() - self.began)
                    self.text.append(delta)
                    yield "delta", {"text": delta}
            result = stream.result
            assert result is not None
            model_seconds = result.latency_ms / 1000.0
            if not result.tool_calls or last:
                svc.tracker.step(self.wf, time.perf_counter() - step_began, model_seconds)
                if not "".join(self.text).strip():
                    if result.tool_calls:
                        raise TurnError(
                            "step_limit", f"the model did not answer within {MAX_STEPS} steps"
                        )
                    raise TurnError("empty_answer", "the model answered with no text")
                return
            calls = [
                {**c, "id": c["id"] or f"call_{step}_{i}"} for i, c in enumerate(result.tool_calls)
            ]
            messages.append(
                {
                    "role": "assistant",
                    "content": result.content or None,
                    "tool_calls": [
                        {"id": c["id"], "type": "function",
                         "function": {"name": c["name"], "arguments": c["arguments"]}}
                        for c in calls
                    ],
                }
            )  # fmt: skip
            for i, call in enumerate(calls):
                yield "tool_call", {"id": call["id"], "name": call["name"],
                                    "arguments": _display_arguments(call["arguments"])}  # fmt: skip
                output, error = await self._tool(step, i, call, scope)
                yield "tool_result", {"id": call["id"], "name": call["name"],
                                      "count": output.count, "error": error}  # fmt: skip
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": output.content}
                )
            now = time.perf_counter()
            svc.tracker.step(self.wf, now - step_began, model_seconds)
            step_began = now

    async def _tool(
        self, step: int, index: int, call: dict[str, str], scope: Scope | None
    ) -> tuple[ToolOutput, str | None]:
        """Run one tool call; a failure becomes a message to the model, never a crash."""
        svc, name = self.svc, call["name"]
        began = time.perf_counter()
        error: str | None = None
        try:
            if index >= MAX_TOOL_CALLS_PER_STEP:
                error = "too_many_calls"
                raise ToolError(f"at most {MAX_TOOL_CALLS_PER_STEP} tool calls per step")
            if name != CREATE_DOCUMENT and name not in READ_TOOLS:
                error = "unknown_tool"
                raise ToolError(f"there is no tool named {name[:64]!r}")
            try:
                arguments = _parse_arguments(call["arguments"])
            except ToolError:
                error = "invalid_arguments"
                raise
            if name == CREATE_DOCUMENT:
                output = await svc.create_document(self.thread_id, self.wf.workflow_id, arguments)
            else:
                output = await svc.db.read(svc._run_tool_sync, name, arguments, scope)
        except ToolError as exc:
            error = error or "tool_error"
            output = ToolOutput(content=json.dumps({"error": str(exc)}), count=0, citations=[])
        except Exception as exc:
            error = "tool_failed"
            logger.error("chatbot_tool_failed", tool=name, error_type=type(exc).__name__)
            output = ToolOutput(
                content=json.dumps({"error": "the tool failed"}), count=0, citations=[]
            )
        seconds = time.perf_counter() - began
        self.tool_calls += 1
        for c in output.citations:
            key = _citation_key(c)
            fresh = key is not None and key not in self._seen_citations
            if fresh and key is not None and len(self.citations) < MAX_CITATIONS:
                self._seen_citations.add(key)
                self.citations.append({key[0]: key[1]})
        svc.tracker.tool_called(self.wf, name if error != "unknown_tool" else "unknown",
                                seconds, error is not None)  # fmt: skip
        await svc.bus.write(
            svc._tool_tx,
            self.thread_id,
            self.wf.workflow_id,
            step,
            name[:64],
            output.count,
            error,
            round(seconds * 1000, 3),
        )
        return output, error

    def _context(self, conn: sqlite3.Connection) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        found = store.thread(conn, self.thread_id)
        assert found is not None
        return found, store.history(conn, self.thread_id, self.user["id"], HISTORY_MESSAGES)

    def _prompt(
        self, contexts: list[store.Context], history: list[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        system = prompt("chatbot/system")
        today = datetime.now(UTC).date().isoformat()
        system += f"\n\nToday is {today} (UTC)."
        if contexts:
            names = ", ".join(
                f"chat {c['chat_id']}" if "chat_id" in c else f"contact {c['contact_id']}"
                for c in contexts
            )
            system += (
                f"\nThis thread is about {names}: the tools search within them unless you"
                " pass another chat_id or contact_id."
            )
        out: list[dict[str, Any]] = [{"role": "system", "content": system}]
        out += [{"role": r, "content": c[:HISTORY_CHARS]} for r, c in history]
        out.append({"role": "user", "content": self.user["content"]})
        return out

    # -- the end ------------------------------------------------------------------------------

    async def _finish(self, status: str, error_code: str | None) -> dict[str, Any]:
        if self.stored is not None:
            return self.stored
        svc = self.svc
        ms = round((time.perf_counter() - self.began) * 1000, 3)
        msg, _usage = await svc.bus.write(
            svc._finish_tx,
            self.wf.workflow_id,
            self.thread_id,
            "".join(self.text),
            status,
            error_code,
            svc.config.model if svc.config is not None else None,
            self.wf.steps,
            self.tool_calls,
            self.citations,
            ms,
        )
        self.stored = msg
        svc.tracker.finish(self.wf.workflow_id, "completed" if status == "complete" else "failed")
        logger.info(
            "chatbot_turn",
            thread_id=self.thread_id,
            workflow_id=self.wf.workflow_id,
            status=status,
            error_code=error_code,
            steps=self.wf.steps,
            tool_calls=self.tool_calls,
            total_tokens=msg["total_tokens"],
            ms=ms,
        )
        return msg

    async def _finish_shielded(self, status: str, error_code: str) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._finish(status, error_code)
            except Exception as exc:  # the next start's recovery closes the turn instead
                logger.error("chatbot_turn_unstored", error_type=type(exc).__name__)


def _display_arguments(raw: str) -> Any:
    """The arguments as the client sees them: the parsed object, or the raw text when the
    model sent something that is not JSON (the `tool_result` then says why it failed)."""
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        return raw[:2000]
