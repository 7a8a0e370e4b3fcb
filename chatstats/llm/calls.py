"""Completions and streams: every call is timed, classified and accounted, success or not.

Every call that reaches LiteLLM yields exactly one `CallRecord`, handed to the caller's
`record` function whatever the outcome (returned, raised, cancelled, closed early).
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import anyio

from chatstats import log
from chatstats.llm.accounting import CallRecord, CallResult, Recorder
from chatstats.llm.config import LLMConfig
from chatstats.llm.errors import InvalidOutput, LLMError, NotConfigured, TimedOut, classify
from chatstats.llm.parse import parse_json
from chatstats.llm.provider import (
    ensure_litellm,
    provider_of,
    request_kwargs,
    response_cost,
    stream_cost,
    usage_numbers,
)

logger = log.get(__name__)

# Our own deadline sits just past LiteLLM's, so LiteLLM's Timeout normally wins and ours
# only catches a server that trickles bytes slowly enough to dodge a per-read timeout.
_DEADLINE_SLACK_S = 1.0


class _Call:
    """The bookkeeping shared by `complete` and `stream`: one record per call, exactly."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        purpose: str,
        record: Recorder | None,
        job_id: int | None,
        run_id: str | None,
        conversation_id: int | None,
        thread_id: int | None,
    ) -> None:
        self.config = config
        self.purpose = purpose
        self.recorder = record
        self.job_id = job_id
        self.run_id = run_id
        self.conversation_id = conversation_id
        self.thread_id = thread_id
        self.ids: dict[str, object] = {
            "job_id": job_id,
            "run_id": run_id,
            "conversation_id": conversation_id,
            "thread_id": thread_id,
        }
        self.started = time.perf_counter()
        self.provider: str | None = None
        self.recorded = False

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000.0, 3)

    def make_record(
        self,
        *,
        outcome: str,
        error: str | None,
        usage: tuple[int | None, int | None, int | None] = (None, None, None),
        cost: float | None = None,
    ) -> CallRecord:
        return CallRecord(
            purpose=self.purpose,
            model=self.config.model,
            provider=self.provider,
            prompt_tokens=usage[0],
            completion_tokens=usage[1],
            total_tokens=usage[2],
            cost=cost,
            latency_ms=self.elapsed_ms(),
            outcome=outcome,
            error=error,
            created_ns=time.time_ns(),
            job_id=self.job_id,
            run_id=self.run_id,
            conversation_id=self.conversation_id,
            thread_id=self.thread_id,
        )

    async def deliver(self, rec: CallRecord) -> int | None:
        """Hand the record over first, then log: a broken log stream must not lose it."""
        if self.recorded:
            return None
        self.recorded = True
        try:
            call_id = None
            if self.recorder is not None:
                out: Any = self.recorder(rec)
                if inspect.isawaitable(out):
                    out = await out
                call_id = out if isinstance(out, int) and not isinstance(out, bool) else None
        finally:
            self._log(rec)
        return call_id

    def _log(self, rec: CallRecord) -> None:
        level = "debug" if rec.outcome == "ok" else "warning"
        with contextlib.suppress(Exception):
            getattr(logger, level)(
                "llm_call",
                purpose=rec.purpose,
                model=rec.model,
                provider=rec.provider,
                outcome=rec.outcome,
                error=rec.error,
                prompt_tokens=rec.prompt_tokens,
                completion_tokens=rec.completion_tokens,
                cost=rec.cost,
                latency_ms=rec.latency_ms,
                **{k: v for k, v in self.ids.items() if v is not None},
            )

    async def deliver_failure(self, err: LLMError, **kw: Any) -> LLMError:
        rec = self.make_record(outcome=err.outcome, error=err.detail, **kw)
        err.record = rec
        err.call_id = await self.deliver(rec)
        return err

    async def deliver_cancelled(self, error: str, **kw: Any) -> None:
        """The call may have cost tokens even if nobody waits for it: still account it.

        Shielded, since the caller is being cancelled; a failing recorder is logged rather
        than raised so the cancellation itself propagates.
        """
        rec = self.make_record(outcome="cancelled", error=error, **kw)
        with anyio.CancelScope(shield=True):
            try:
                await self.deliver(rec)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    logger.warning("llm_call_unrecorded", error=type(exc).__name__)


def _not_configured(config: LLMConfig | None) -> LLMConfig:
    if config is None or not config.model:
        raise NotConfigured("no LLM model is configured")
    return config


async def complete(
    config: LLMConfig | None,
    messages: Sequence[dict[str, Any]],
    *,
    json_schema: dict[str, Any] | None = None,
    schema_name: str = "result",
    purpose: str,
    record: Recorder | None,
    job_id: int | None = None,
    run_id: str | None = None,
    conversation_id: int | None = None,
    thread_id: int | None = None,
) -> CallResult:
    """One chat completion. With `json_schema`, asks for structured output and parses it.

    Every call that reaches LiteLLM produces exactly one CallRecord, handed to `record`,
    whether it returns or raises (an LLMError carrying `.record` and `.call_id`). A call
    that never starts (NotConfigured) produces none: it used no model.
    """
    config = _not_configured(config)
    lm = await ensure_litellm()
    call = _Call(
        config,
        purpose=purpose,
        record=record,
        job_id=job_id,
        run_id=run_id,
        conversation_id=conversation_id,
        thread_id=thread_id,
    )
    try:
        kwargs = request_kwargs(lm, config, messages)
        call.provider = provider_of(lm, config)[1]
        if json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": json_schema, "strict": True},
            }
        call.started = time.perf_counter()
        with anyio.fail_after(config.timeout_s + _DEADLINE_SLACK_S):
            response = await lm.acompletion(**kwargs)
    except anyio.get_cancelled_exc_class():
        await call.deliver_cancelled("cancelled")
        raise
    except TimeoutError:
        err = TimedOut("the model did not answer in time", detail="deadline")
        raise await call.deliver_failure(err) from None
    except Exception as exc:
        raise await call.deliver_failure(classify(exc)) from None

    hidden = getattr(response, "_hidden_params", None) or {}
    call.provider = hidden.get("custom_llm_provider") or call.provider
    usage = usage_numbers(getattr(response, "usage", None))
    cost = response_cost(response)
    try:
        content = response.choices[0].message.content or ""
    except (AttributeError, IndexError, TypeError):
        content = ""
    parsed: object | None = None
    if json_schema is not None:
        try:
            parsed = parse_json(content)
        except InvalidOutput as err:
            raise await call.deliver_failure(err, usage=usage, cost=cost) from None
    rec = call.make_record(outcome="ok", error=None, usage=usage, cost=cost)
    call_id = await call.deliver(rec)
    return CallResult(
        content=content,
        parsed=parsed,
        model=config.model,
        provider=call.provider,
        prompt_tokens=usage[0],
        completion_tokens=usage[1],
        total_tokens=usage[2],
        cost=cost,
        latency_ms=rec.latency_ms,
        outcome="ok",
        error=None,
        call_id=call_id,
    )


class LLMStream:
    """Token deltas as they arrive; `result` holds the accounted CallResult once finished.

    Use `async with` (or exhaust it) so an abandoned stream closes its connection and is
    still accounted, as outcome "cancelled".
    """

    def __init__(self, config: LLMConfig | None, messages: Sequence[dict[str, Any]], **kw: Any):
        self.result: CallResult | None = None
        self._gen = self._run(config, list(messages), **kw)

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()

    async def __aenter__(self) -> LLMStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(
        self,
        config: LLMConfig | None,
        messages: list[dict[str, Any]],
        *,
        purpose: str,
        record: Recorder | None,
        job_id: int | None = None,
        run_id: str | None = None,
        conversation_id: int | None = None,
        thread_id: int | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> AsyncGenerator[str, None]:
        config = _not_configured(config)
        lm = await ensure_litellm()
        call = _Call(
            config,
            purpose=purpose,
            record=record,
            job_id=job_id,
            run_id=run_id,
            conversation_id=conversation_id,
            thread_id=thread_id,
        )
        parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish_reason: str | None = None
        usage_obj: Any = None
        response: Any = None
        finished = False
        try:
            try:
                kwargs = request_kwargs(lm, config, messages)
                call.provider = provider_of(lm, config)[1]
                kwargs["stream"] = True
                kwargs["stream_options"] = {"include_usage": True}
                if tools:
                    kwargs["tools"] = list(tools)
                call.started = time.perf_counter()
                response = await lm.acompletion(**kwargs)
                async for chunk in response:
                    chunk_usage = getattr(chunk, "usage", None)
                    if chunk_usage is not None:
                        usage_obj = chunk_usage
                    choices = getattr(chunk, "choices", None) or []
                    message = getattr(choices[0], "delta", None) if choices else None
                    delta = getattr(message, "content", None)
                    if choices and getattr(choices[0], "finish_reason", None):
                        finish_reason = str(choices[0].finish_reason)
                    for part in getattr(message, "tool_calls", None) or ():
                        _merge_tool_call(calls, part)
                    if delta:
                        parts.append(delta)
                        yield delta
            except Exception as exc:
                raise await call.deliver_failure(classify(exc)) from None
            hidden = getattr(response, "_hidden_params", None) or {}
            call.provider = hidden.get("custom_llm_provider") or call.provider
            usage = usage_numbers(usage_obj)
            cost = stream_cost(lm, config, usage_obj, usage[0], usage[1])
            rec = call.make_record(outcome="ok", error=None, usage=usage, cost=cost)
            call_id = await call.deliver(rec)
            finished = True
            self.result = CallResult(
                content="".join(parts),
                parsed=None,
                model=config.model,
                provider=call.provider,
                prompt_tokens=usage[0],
                completion_tokens=usage[1],
                total_tokens=usage[2],
                cost=cost,
                latency_ms=rec.latency_ms,
                outcome="ok",
                error=None,
                call_id=call_id,
                tool_calls=[calls[i] for i in sorted(calls)],
                finish_reason=finish_reason,
            )
        finally:
            if not finished and not call.recorded:
                # Closed early or cancelled: release the connection, account what we know.
                if response is not None and hasattr(response, "aclose"):
                    with anyio.CancelScope(shield=True):
                        with contextlib.suppress(Exception):
                            await response.aclose()
                usage = usage_numbers(usage_obj)
                await call.deliver_cancelled("closed before the end", usage=usage)


def stream(
    config: LLMConfig | None,
    messages: Sequence[dict[str, Any]],
    *,
    purpose: str,
    record: Recorder | None,
    job_id: int | None = None,
    run_id: str | None = None,
    conversation_id: int | None = None,
    thread_id: int | None = None,
    tools: Sequence[dict[str, Any]] | None = None,
) -> LLMStream:
    """A streamed chat completion (for the chatbot): `async for delta in stream(...)`.

    Usage comes from the final chunk (`stream_options.include_usage`); the record is handed
    to `record` when the stream ends, fails, or is closed early. With `tools` (OpenAI
    function specs) the model may answer with tool calls instead of text: they arrive in
    pieces and are put together in `result.tool_calls`.
    """
    return LLMStream(
        config,
        messages,
        purpose=purpose,
        record=record,
        job_id=job_id,
        run_id=run_id,
        conversation_id=conversation_id,
        thread_id=thread_id,
        tools=tools,
    )


def _merge_tool_call(calls: dict[int, dict[str, str]], part: Any) -> None:
    """One streamed fragment of a tool call: the first names it, the rest extend its
    arguments (OpenAI's stream sends them as pieces of one JSON text, keyed by index)."""
    index = getattr(part, "index", None)
    index = index if isinstance(index, int) else len(calls)
    entry = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    if getattr(part, "id", None):
        entry["id"] = str(part.id)
    function = getattr(part, "function", None)
    name = getattr(function, "name", None)
    if name:
        entry["name"] = str(name)
    arguments = getattr(function, "arguments", None)
    if isinstance(arguments, str):
        entry["arguments"] += arguments
