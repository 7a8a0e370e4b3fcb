"""One turn: the model called step by step with tools, streamed, ended exactly once.

A step is one streamed model call through `chatstats.llm` and the tools it asked for; the
last of MAX_STEPS offers no tools, so the loop ends with an answer. Tool calls run on a read
connection off the loop, their output bounded; a malformed call, an unknown tool or a
failing tool is told to the model as an error and the turn goes on. Whatever ends a turn
(an answer, a model error, the client leaving, shutdown) stores its outcome once, through
`workflow.finish_tx`, shielded from cancellation.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from chatstats import llm, log
from chatstats.chatbot import store, workflow
from chatstats.chatbot.tools import READ_TOOLS, Scope, Tool, ToolError, ToolOutput
from chatstats.chatbot.tracking import Workflow
from chatstats.errors import ChatStatsError
from chatstats.llm import tokens

if TYPE_CHECKING:
    from chatstats.chatbot.service import ChatbotService

logger = log.get(__name__)

PURPOSE = "chatbot"
MAX_STEPS = 6
MAX_TOOL_CALLS_PER_STEP = 4
TOOL_MAX_TOKENS = 2000  # one tool call's output
TURN_TOOL_TOKENS = 12_000  # every tool output of a turn together, so the prompt stays bounded
MIN_TOOL_TOKENS = 100  # below this a read tool cannot return even one item
HISTORY_MESSAGES = 20
HISTORY_CHARS = 4000
MAX_CITATIONS = 50
CREATE_DOCUMENT = "create_document"
# Deltas that arrive within this long of the last one sent go out together in one `delta`
# event: a model's chunks often come in bursts (a few characters each, many per network
# read), and each SSE frame costs a trip through the ASGI stack and a socket write. The
# first piece of text always goes out at once, so time to first delta is unchanged, and
# nothing waits past the end of a step.
DELTA_COALESCE_S = 0.05


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
        self.tool_tokens_left = TURN_TOOL_TOKENS
        self.stored: dict[str, Any] | None = None
        self._sent_at = float("-inf")  # when the last delta event went out
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
                    await svc.bus.write(workflow.record_tx, rec, self.thread_id, self.wf.workflow_id,
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
            held: list[str] = []  # stored in self.text already, not yet sent
            try:
                async with stream:
                    async for delta in stream:
                        now = time.perf_counter()
                        if not self.text:
                            svc.tracker.first_delta(now - self.began)
                        self.text.append(delta)
                        held.append(delta)
                        if now - self._sent_at >= DELTA_COALESCE_S:
                            self._sent_at = now
                            yield "delta", {"text": "".join(held)}
                            held.clear()
            except llm.LLMError:
                if held:  # the client sees what will be stored as the partial answer
                    yield "delta", {"text": "".join(held)}
                raise
            if held:
                self._sent_at = time.perf_counter()
                yield "delta", {"text": "".join(held)}
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
            if self.tool_tokens_left < MIN_TOOL_TOKENS:
                error = "budget_spent"
                raise ToolError("this turn's tool budget is spent: answer with what you have")
            try:
                arguments = _parse_arguments(call["arguments"])
            except ToolError:
                error = "invalid_arguments"
                raise
            if name == CREATE_DOCUMENT:
                output = await svc.create_document(self.thread_id, self.wf.workflow_id, arguments)
            else:
                budget = min(TOOL_MAX_TOKENS, self.tool_tokens_left)
                output = await svc.db.read(svc._run_tool_sync, name, arguments, scope, budget)
        except ToolError as exc:
            error = error or "tool_error"
            output = ToolOutput(content=json.dumps({"error": str(exc)}), count=0, citations=[])
        except Exception as exc:
            error = "tool_failed"
            logger.error("chatbot_tool_failed", tool=name, error_type=type(exc).__name__)
            output = ToolOutput(
                content=json.dumps({"error": "the tool failed"}), count=0, citations=[]
            )
        self.tool_tokens_left -= tokens.count(output.content)
        seconds = time.perf_counter() - began
        self.tool_calls += 1
        for c in output.citations:
            key = _citation_key(c)
            fresh = key is not None and key not in self._seen_citations
            if fresh and key is not None and len(self.citations) < MAX_CITATIONS:
                self._seen_citations.add(key)
                cited: dict[str, Any] = {key[0]: key[1]}
                if isinstance(c.get("chat_id"), int):  # so a client can open it in its chat
                    cited["chat_id"] = c["chat_id"]
                self.citations.append(cited)
        svc.tracker.tool_called(self.wf, name if error != "unknown_tool" else "unknown",
                                seconds, error is not None)  # fmt: skip
        await svc.bus.write(
            workflow.tool_tx,
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
            workflow.finish_tx,
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
