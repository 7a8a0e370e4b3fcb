"""The LLM gateway: the one door to LiteLLM for analysis, the chatbot and embeddings.

Why one package: usage and cost are easy to drop on some code path, so no other code may
call LiteLLM; every call here is timed, classified and accounted, success or not. Callers
import the package (`from chatstats import llm`) and use the names below; the modules split
it by concept: `config` (which model), `errors` (classification), `provider` (lazy loading,
prices, requests), `calls` (completions and streams), `parse` (answers into data) and
`accounting` (the `llm_calls` rows, completions and embeddings alike).
"""

from chatstats.llm.accounting import (
    CallBuffer,
    CallRecord,
    CallResult,
    LLMAccountant,
    Recorder,
    embedding_usage,
    record_call,
    record_calls,
    usage_totals,
)
from chatstats.llm.calls import LLMStream, complete, stream
from chatstats.llm.config import DUMMY_API_KEY, LLMConfig, configured
from chatstats.llm.errors import (
    BadRequest,
    ConnectionFailed,
    InvalidOutput,
    LLMError,
    NotConfigured,
    RateLimited,
    ServerError,
    TimedOut,
    classify,
    parse_retry_after,
)
from chatstats.llm.parse import parse_json, validate
from chatstats.llm.provider import loaded, warm_up

__all__ = [
    "DUMMY_API_KEY",
    "BadRequest",
    "CallBuffer",
    "CallRecord",
    "CallResult",
    "ConnectionFailed",
    "InvalidOutput",
    "LLMAccountant",
    "LLMConfig",
    "LLMError",
    "LLMStream",
    "NotConfigured",
    "RateLimited",
    "Recorder",
    "ServerError",
    "TimedOut",
    "classify",
    "complete",
    "configured",
    "embedding_usage",
    "loaded",
    "parse_json",
    "parse_retry_after",
    "record_call",
    "record_calls",
    "stream",
    "usage_totals",
    "validate",
    "warm_up",
]
