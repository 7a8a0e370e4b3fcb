"""The one door to LiteLLM: every call is timed, classified and accounted, success or not.

Why one module: usage and cost are easy to drop on some code path (the seeds lost them in a
graph node that returned only the messages), so no other code may call LiteLLM. Here every
call, whatever its outcome, yields exactly one `CallRecord` that is handed to the caller's
`record` function, which writes it into `llm_calls`, usually in the same transaction as the
result it paid for.

Why lazy: importing LiteLLM costs ~4 s and ~160 MB, and its first request imports ~500 more
modules. Both happen in a worker thread on first need (or at `warm_up()`), never on the
start path and never on the event loop, which keeps serving meanwhile.

Why our own exceptions: callers decide retries and backoff from `.retryable` and
`.retry_after_s` without knowing LiteLLM's or the provider's error zoo, and the messages
(which reach logs and the API) never carry prompt or output text.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import re
import sqlite3
import sys
import threading
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import msgspec

from chatstats import log
from chatstats.config import Settings
from chatstats.errors import ChatStatsError

logger = log.get(__name__)
T = TypeVar("T")

# A local OpenAI-compatible server needs some key; without one, LiteLLM would send the
# user's OPENAI_API_KEY from the environment to whatever `api_base` says.
DUMMY_API_KEY = "sk-chatstats-local"

# Our own deadline sits just past LiteLLM's, so LiteLLM's Timeout normally wins and ours
# only catches a server that trickles bytes slowly enough to dodge a per-read timeout.
_DEADLINE_SLACK_S = 1.0


# --- configuration ------------------------------------------------------------------------


class LLMConfig(msgspec.Struct, kw_only=True, frozen=True):
    """Which model to call and how; prices are for models LiteLLM has no price for."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    # LiteLLM's provider name ("openai" for any OpenAI-compatible server). None lets
    # LiteLLM infer it from the model's prefix; with an `api_base` and an unprefixed model
    # name it defaults to "openai".
    provider: str | None = None
    timeout_s: float = 60.0
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    max_output_tokens: int | None = None


def configured(settings: Settings | None) -> LLMConfig | None:
    """The LLM config from settings, or None when no model is set (analysis stays off)."""
    if settings is None or not settings.llm_model:
        return None
    return LLMConfig(
        model=settings.llm_model,
        api_base=settings.llm_api_base or None,
        api_key=settings.llm_api_key or None,
        provider=settings.llm_provider or None,
        timeout_s=settings.llm_timeout_s,
        input_cost_per_token=settings.llm_input_cost_per_token,
        output_cost_per_token=settings.llm_output_cost_per_token,
        max_output_tokens=settings.llm_max_output_tokens or None,
    )


# --- results and accounting -----------------------------------------------------------------


class CallRecord(msgspec.Struct, kw_only=True):
    """One row of `llm_calls`: what a call cost and how it ended, never what it said."""

    purpose: str
    model: str
    provider: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost: float | None
    latency_ms: float
    outcome: str
    error: str | None
    job_id: int | None = None
    run_id: str | None = None
    conversation_id: int | None = None
    thread_id: int | None = None
    created_ns: int = 0


class CallResult(msgspec.Struct, kw_only=True):
    content: str
    parsed: object | None
    model: str
    provider: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost: float | None
    latency_ms: float
    outcome: str
    error: str | None
    call_id: int | None


# `record` may write at once (async, returns the row id) or stash the record to write it
# later with the result (sync, returns None).
Recorder = Callable[[CallRecord], "Awaitable[int | None] | int | None"]


def record_call(conn: sqlite3.Connection, record: CallRecord) -> int:
    """Insert one accounting row; meant to run inside the caller's write transaction."""
    cur = conn.execute(
        "INSERT INTO llm_calls (purpose, job_id, run_id, conversation_id, thread_id, model,"
        " provider, prompt_tokens, completion_tokens, total_tokens, cost, latency_ms, outcome,"
        " error, created_ns) VALUES (:purpose, :job_id, :run_id, :conversation_id, :thread_id,"
        " :model, :provider, :prompt_tokens, :completion_tokens, :total_tokens, :cost,"
        " :latency_ms, :outcome, :error, :created_ns)",
        {
            "purpose": record.purpose,
            "job_id": record.job_id,
            "run_id": record.run_id,
            "conversation_id": record.conversation_id,
            "thread_id": record.thread_id,
            "model": record.model,
            "provider": record.provider,
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "total_tokens": record.total_tokens,
            "cost": record.cost,
            "latency_ms": record.latency_ms,
            "outcome": record.outcome,
            "error": record.error,
            "created_ns": record.created_ns or time.time_ns(),
        },
    )
    return int(cur.lastrowid or 0)


class LLMAccountant:
    """For callers with nothing else to write: each record in its own write transaction."""

    def __init__(self, db: Any) -> None:
        self._db = db

    async def record(self, record: CallRecord) -> int:
        return int(await self._db.write(record_call, record))


def usage_totals(
    conn: sqlite3.Connection,
    *,
    run_id: str | None = None,
    conversation_id: int | None = None,
    job_id: int | None = None,
) -> dict[str, Any]:
    """Token and cost totals over `llm_calls`, filtered by whichever ids are given.

    `cost` sums known costs only; `unpriced_calls` counts calls that used tokens but have
    no price, so a caller can say the total is a lower bound.
    """
    where, params = [], {}
    for column, value in (
        ("run_id", run_id),
        ("conversation_id", conversation_id),
        ("job_id", job_id),
    ):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    sql = (
        "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
        " coalesce(sum(total_tokens), 0), coalesce(sum(cost), 0.0),"
        " coalesce(sum(cost IS NULL AND (coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)) > 0), 0),"
        " coalesce(sum(outcome != 'ok'), 0)"
        " FROM llm_calls" + (" WHERE " + " AND ".join(where) if where else "")
    )
    calls, prompt, completion, total, cost, unpriced, failed = conn.execute(sql, params).fetchone()
    return {
        "calls": calls,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "cost": float(cost),
        "unpriced_calls": unpriced,
        "failed_calls": failed,
    }


# --- errors -----------------------------------------------------------------------------------


class LLMError(ChatStatsError):
    """A call that did not give a usable answer. Messages never contain prompts or output.

    `record` and `call_id` carry the accounting of the failed call, so a caller can link a
    job's failure to what it cost.
    """

    code = "llm_error"
    status = 502
    outcome = "error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        # Class and status of the underlying error, for the `llm_calls.error` column.
        self.detail = detail or type(self).__name__
        self.record: CallRecord | None = None
        self.call_id: int | None = None


class RateLimited(LLMError):
    code = "llm_rate_limited"
    status = 503
    outcome = "rate_limited"
    retryable = True


class ServerError(LLMError):
    code = "llm_server_error"
    outcome = "server_error"
    retryable = True


class TimedOut(LLMError):
    code = "llm_timeout"
    status = 504
    outcome = "timeout"
    retryable = True


class ConnectionFailed(LLMError):
    code = "llm_unreachable"
    status = 503
    outcome = "connection_error"
    retryable = True


class InvalidOutput(LLMError):
    """The model answered, but not with what was asked. Retryable: sampling differs."""

    code = "llm_invalid_output"
    outcome = "invalid_output"
    retryable = True


class BadRequest(LLMError):
    """The provider rejected the request itself (4xx but 429): retrying cannot help.

    Not `chatstats.errors.BadRequest`: the API client did nothing wrong, hence 502.
    """

    code = "llm_bad_request"
    outcome = "bad_request"
    retryable = False


class NotConfigured(LLMError):
    code = "llm_not_configured"
    status = 503
    outcome = "not_configured"
    retryable = False


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delta-seconds or an HTTP-date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        import email.utils  # rare path; keeps this module quick to import

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < 10 and current not in out:
        out.append(current)
        if current.__cause__ is not None or current.__suppress_context__:
            current = current.__cause__
        else:
            current = current.__context__
    return out


def _retry_after_from(chain: list[BaseException]) -> float | None:
    for exc in chain:
        candidates = [
            getattr(exc, "litellm_response_headers", None),
            getattr(exc, "headers", None),
            getattr(getattr(exc, "response", None), "headers", None),
        ]
        for headers in candidates:
            if not headers or not hasattr(headers, "get"):
                continue
            try:
                ms = headers.get("retry-after-ms") or headers.get("Retry-After-Ms")
                if ms is not None:
                    return max(0.0, float(ms) / 1000.0)
            except (TypeError, ValueError):
                pass
            seconds = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
            if seconds is not None:
                return seconds
    return None


def classify(exc: BaseException) -> LLMError:
    """Map whatever LiteLLM (or the transport under it) raised onto our hierarchy."""
    if isinstance(exc, LLMError):
        return exc
    chain = _chain(exc)
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    detail = type(exc).__name__ + (f" {status}" if status is not None else "")
    root = type(chain[-1]).__name__
    if root not in (type(exc).__name__, "HTTPStatusError"):
        # LiteLLM reports a dropped connection or a garbled body as "500": name the cause.
        detail += f" ({root})"
    names = {type(e).__name__ for e in chain}
    openai = _optional_module("openai")
    httpx = _optional_module("httpx")

    def any_of(*types: Any) -> bool:
        real = tuple(t for t in types if isinstance(t, type))
        return bool(real) and any(isinstance(e, real) for e in chain)

    timeout_types = [TimeoutError]
    if openai is not None:
        timeout_types.append(openai.APITimeoutError)
    if httpx is not None:
        timeout_types.append(httpx.TimeoutException)
    if any_of(*timeout_types) or "Timeout" in names or status == 408:
        return TimedOut("the model did not answer in time", status_code=status, detail=detail)
    if status == 429 or "RateLimitError" in names:
        retry_after = _retry_after_from(chain)
        suffix = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        return RateLimited(
            f"the model provider is rate limiting (HTTP 429){suffix}",
            status_code=429,
            retry_after_s=retry_after,
            detail=detail,
        )
    # LiteLLM also raises its APIConnectionError as a catch-all for its own failures, so
    # only a transport error underneath (or the OpenAI SDK's own) means "unreachable".
    connection_types: list[Any] = [ConnectionError]
    if httpx is not None:
        connection_types.append(httpx.TransportError)
    aiohttp = _optional_module("aiohttp")
    if aiohttp is not None:
        connection_types.append(aiohttp.ClientConnectionError)
    sdk_connection = openai is not None and any(
        isinstance(e, openai.APIConnectionError) and type(e).__module__.startswith("openai")
        for e in chain
    )
    if sdk_connection or any_of(*connection_types):
        return ConnectionFailed("could not reach the model provider", detail=detail)
    if status is not None and status >= 500:
        return ServerError(
            f"the model provider failed (HTTP {status})", status_code=status, detail=detail
        )
    if status is not None and 400 <= status < 500:
        return BadRequest(
            f"the model provider rejected the request (HTTP {status})",
            status_code=status,
            detail=detail,
        )
    return LLMError("the model call failed", status_code=status, detail=detail)


def _optional_module(name: str) -> Any:
    """Only what LiteLLM already imported: classifying must not import anything itself."""
    return sys.modules.get(name)


# --- output parsing -----------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)


def parse_json(content: str | None) -> object:
    """JSON from a model's answer; a ```json fence around it (local models add one) is fine."""
    if content is None or not content.strip():
        raise InvalidOutput("the model returned no content", detail="InvalidOutput empty")
    text = content
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return msgspec.json.decode(text.strip())
    except msgspec.DecodeError:
        raise InvalidOutput(
            "the model's answer is not valid JSON", detail="InvalidOutput not_json"
        ) from None


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_UNKNOWN_FIELD = re.compile(r"unknown field `[^`]*`")


def validate(data: object, type_: type[T]) -> T:
    """Convert parsed JSON into `type_`, raising InvalidOutput with only the failing path."""
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        # msgspec quotes offending values ("Invalid enum value 'x'"): those are model
        # output, so keep only the shape of the complaint and its JSON path.
        reason = _UNKNOWN_FIELD.sub("unknown field", _QUOTED.sub("…", str(exc)))
        raise InvalidOutput(
            f"the model's answer does not match the schema: {reason}",
            detail="InvalidOutput schema",
        ) from None


# --- loading LiteLLM ------------------------------------------------------------------------

_litellm: Any = None
_load_lock = threading.Lock()
_registered_prices: dict[str, tuple[float, float]] = {}
_provider_cache: dict[tuple[str, str | None, str | None], tuple[str, str | None]] = {}

# Modules LiteLLM imports on its first request and first stream (~1.5 s on the loop
# otherwise). Best effort: a name that moves in another version only costs that time back.
_FIRST_CALL_MODULES = (
    "openai.resources.chat",
    "openai.lib.streaming.chat",
    "litellm.llms.openai.openai",
    "litellm.llms.openai.chat.gpt_audio_transformation",
    "litellm.llms.openai_like.dynamic_config",
    "litellm.llms.litellm_proxy.chat.transformation",
    "litellm.llms.vertex_ai.vertex_ai_partner_models.anthropic.transformation",
    "litellm.proxy._types",
    "litellm.proxy.openai_files_endpoints.common_utils",
    "litellm._service_logger",
    "litellm.integrations.prometheus_services",
    "litellm.litellm_core_utils.default_encoding",
    "litellm.types.litellm_core_utils.streaming_chunk_builder_utils",
    "anyio.streams.memory",
)


def _load() -> Any:
    global _litellm
    with _load_lock:
        if _litellm is not None:
            return _litellm
        started = time.perf_counter()
        # Never fetch the price list from the network; never read a .env file.
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        os.environ["LITELLM_MODE"] = "PRODUCTION"
        import litellm

        litellm.suppress_debug_info = True  # else it prints help banners on stdout
        litellm.turn_off_message_logging = True  # keep prompts out of its logging objects
        litellm.set_verbose = False
        litellm.num_retries = None
        litellm.request_timeout = 60.0
        _tame_litellm_logging()
        for name in _FIRST_CALL_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # best effort, see above
                continue
        _build_response_types(litellm)
        _litellm = litellm
        with contextlib.suppress(Exception):
            logger.info("litellm_loaded", seconds=round(time.perf_counter() - started, 2))
        return litellm


def _build_response_types(litellm: Any) -> None:
    """Pydantic builds LiteLLM's response models on first use, on the loop, and warns
    (UserWarning about ReadOnly TypedDict items) while doing so: build them here instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for build in (
            lambda: litellm.ModelResponse(),
            lambda: litellm.ModelResponseStream(),
            lambda: litellm.Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0),
        ):
            try:
                build()
            except Exception:  # best effort: only the first call gets slower
                continue


def _tame_litellm_logging() -> None:
    """LiteLLM routes its INFO lines to stdout, where the desktop app expects only our JSON;
    it may also log request details at DEBUG. Send it through the root logger, errors only."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("LiteLLM") or name.startswith("litellm"):
            lg = logging.getLogger(name)
            for handler in list(lg.handlers):
                lg.removeHandler(handler)
            lg.setLevel(logging.ERROR)
            lg.propagate = True


async def warm_up() -> None:
    """Import LiteLLM now, off the loop, so the first real call doesn't pay for it."""
    await _ensure_litellm()


async def _ensure_litellm() -> Any:
    if _litellm is not None:
        return _litellm
    return await anyio.to_thread.run_sync(_load)


def loaded() -> bool:
    return _litellm is not None


def _provider_of(lm: Any, config: LLMConfig) -> tuple[str, str | None]:
    """(bare model, provider) as LiteLLM resolves them; cached, it parses model names."""
    key = (config.model, _provider_hint(config), config.api_base)
    hit = _provider_cache.get(key)
    if hit is not None:
        return hit
    try:
        bare, provider, _, _ = lm.get_llm_provider(
            model=config.model, custom_llm_provider=key[1], api_base=config.api_base
        )
        found: tuple[str, str | None] = (bare, provider)
    except Exception:
        found = (config.model, key[1])
    _provider_cache[key] = found
    return found


def _provider_hint(config: LLMConfig) -> str | None:
    if config.provider:
        return config.provider
    if config.api_base and "/" not in config.model:
        return "openai"
    return None


def _register_prices(lm: Any, config: LLMConfig) -> None:
    """Give LiteLLM the config's prices, so it computes `response_cost` for the model."""
    if config.input_cost_per_token is None and config.output_cost_per_token is None:
        return
    bare, provider = _provider_of(lm, config)
    key = f"{provider}/{bare}" if provider else bare
    prices = (config.input_cost_per_token or 0.0, config.output_cost_per_token or 0.0)
    if _registered_prices.get(key) == prices:
        return
    entry: dict[str, Any] = {
        "input_cost_per_token": prices[0],
        "output_cost_per_token": prices[1],
        # Explicit zeros keep LiteLLM from warning about unknown cache pricing on each call.
        "cache_creation_input_token_cost": 0.0,
        "cache_read_input_token_cost": 0.0,
        "mode": "chat",
    }
    if provider:
        entry["litellm_provider"] = provider
    lm.register_model({key: entry})
    _registered_prices[key] = prices


def _request(lm: Any, config: LLMConfig, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    _register_prices(lm, config)
    kwargs: dict[str, Any] = {
        "model": config.model,
        "messages": list(messages),
        "timeout": config.timeout_s,
        # Retries are the job queue's business (it honours Retry-After and records each
        # attempt); LiteLLM's and the OpenAI SDK's would hide attempts from the accounts.
        "num_retries": 0,
        "max_retries": 0,
    }
    hint = _provider_hint(config)
    if hint:
        kwargs["custom_llm_provider"] = hint
    if config.api_base:
        kwargs["api_base"] = config.api_base
    api_key = config.api_key or (DUMMY_API_KEY if config.api_base else None)
    if api_key:
        kwargs["api_key"] = api_key
    if config.max_output_tokens:
        kwargs["max_tokens"] = config.max_output_tokens
    return kwargs


def _usage_numbers(usage: Any) -> tuple[int | None, int | None, int | None]:
    if usage is None:
        return None, None, None

    def num(name: str) -> int | None:
        value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
        return int(value) if isinstance(value, int | float) else None

    prompt, completion, total = num("prompt_tokens"), num("completion_tokens"), num("total_tokens")
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return prompt, completion, total


def _as_cost(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def _response_cost(response: Any) -> float | None:
    """LiteLLM's own figure; None for a model without a price (it must never crash us)."""
    try:
        hidden = getattr(response, "_hidden_params", None) or {}
        return _as_cost(hidden.get("response_cost"))
    except Exception:
        return None


def _stream_cost(
    lm: Any, config: LLMConfig, usage: Any, prompt: int | None, completion: int | None
) -> float | None:
    cost = _as_cost(getattr(usage, "cost", None)) if usage is not None else None
    if cost is not None or prompt is None or completion is None:
        return cost
    bare, provider = _provider_of(lm, config)
    try:
        prompt_cost, completion_cost = lm.cost_per_token(
            model=bare,
            prompt_tokens=prompt,
            completion_tokens=completion,
            custom_llm_provider=provider,
        )
    except Exception:  # ModelNotMappedError for unpriced models, and anything else
        return None
    return _as_cost(prompt_cost + completion_cost)


# --- calls ----------------------------------------------------------------------------------------


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
        self.ids = {
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
            **self.ids,
        )

    async def deliver(self, rec: CallRecord) -> int | None:
        """Hand the record over first, then log: a broken log stream must not lose it."""
        if self.recorded:
            return None
        self.recorded = True
        try:
            call_id = None
            if self.recorder is not None:
                out = self.recorder(rec)
                if hasattr(out, "__await__"):
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
    lm = await _ensure_litellm()
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
        kwargs = _request(lm, config, messages)
        call.provider = _provider_of(lm, config)[1]
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
    usage = _usage_numbers(getattr(response, "usage", None))
    cost = _response_cost(response)
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
    ) -> AsyncGenerator[str, None]:
        config = _not_configured(config)
        lm = await _ensure_litellm()
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
        usage_obj: Any = None
        response: Any = None
        finished = False
        try:
            try:
                kwargs = _request(lm, config, messages)
                call.provider = _provider_of(lm, config)[1]
                kwargs["stream"] = True
                kwargs["stream_options"] = {"include_usage": True}
                call.started = time.perf_counter()
                response = await lm.acompletion(**kwargs)
                async for chunk in response:
                    chunk_usage = getattr(chunk, "usage", None)
                    if chunk_usage is not None:
                        usage_obj = chunk_usage
                    choices = getattr(chunk, "choices", None) or []
                    delta = (
                        getattr(getattr(choices[0], "delta", None), "content", None)
                        if choices
                        else None
                    )
                    if delta:
                        parts.append(delta)
                        yield delta
            except Exception as exc:
                raise await call.deliver_failure(classify(exc)) from None
            hidden = getattr(response, "_hidden_params", None) or {}
            call.provider = hidden.get("custom_llm_provider") or call.provider
            usage = _usage_numbers(usage_obj)
            cost = _stream_cost(lm, config, usage_obj, usage[0], usage[1])
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
            )
        finally:
            if not finished and not call.recorded:
                # Closed early or cancelled: release the connection, account what we know.
                if response is not None and hasattr(response, "aclose"):
                    with anyio.CancelScope(shield=True):
                        with contextlib.suppress(Exception):
                            await response.aclose()
                usage = _usage_numbers(usage_obj)
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
) -> LLMStream:
    """A streamed chat completion (for the chatbot): `async for delta in stream(...)`.

    Usage comes from the final chunk (`stream_options.include_usage`); the record is handed
    to `record` when the stream ends, fails, or is closed early.
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
    )
