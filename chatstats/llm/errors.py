"""Our own exceptions for whatever LiteLLM, the SDK or the transport raised.

Why: callers decide retries and backoff from `.retryable` and `.retry_after_s` without
knowing LiteLLM's or the provider's error zoo, and the messages (which reach logs and the
API) never carry prompt or output text.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any

from chatstats.errors import ChatStatsError

if TYPE_CHECKING:
    from chatstats.llm.accounting import CallRecord


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
    if "JSONDecodeError" in names or (status is not None and 200 <= status < 300):
        # A body that is not the JSON it claims (a broken proxy, a cut response): the
        # provider's fault, and worth a retry. LiteLLM's own HTTP handler reports it with
        # the 200 it came with; the OpenAI SDK's path reports a 500.
        return ServerError(
            "the model provider sent an answer that could not be read",
            status_code=status,
            detail=detail,
        )
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
