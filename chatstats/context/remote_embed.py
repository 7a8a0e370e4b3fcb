"""Embeddings through LiteLLM, for any provider (a local Ollama, a hosted API, ...).

LiteLLM is loaded and set up by the one gateway (chatstats.llm.provider: offline price map,
no hidden retries, quiet logging), lazily (its import costs ~4 s); this module sets a real
timeout per call and does its own bounded retries on 429 / 5xx / timeouts / dropped
connections / unreadable answers, so a flaky provider slows the index build but never
ingest (builds run in a worker thread). Errors are classified by the gateway's own
`llm.classify`, so an embedding's outcome names are a completion's (rate_limited,
server_error, timeout, connection_error, invalid_output, bad_request). Every attempt is
accounted, success or not, as one `llm_calls` row (operation "embedding"): tokens, cost
(None when the model has no price), latency, the error's class and status; never texts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from chatstats.context.embed import Vectors
from chatstats.context.embed_calls import PURPOSE
from chatstats.errors import ChatStatsError
from chatstats.llm import CallRecord, InvalidOutput, LLMError, classify, provider

# A provider's Retry-After is honoured up to this many seconds per wait.
MAX_RETRY_AFTER_S = 30.0


class EmbeddingFailed(ChatStatsError):
    """The provider kept failing (or refused the request) after the allowed attempts."""

    code = "embedding_failed"
    status = 502


class RemoteEmbedder:
    """An Embedder over LiteLLM's `embedding` call; thread-safe, batches of `batch` texts.

    `on_call` receives one CallRecord per attempt (the daemon gives it an llm.CallBuffer's
    `add`); it is called from whichever thread embeds and must not block.
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        batch: int = 256,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> None:
        self.name = model
        self.dim = 0  # learnt from the first answer
        self._api_base = api_base
        self._api_key = api_key
        self._timeout = timeout_s
        self._attempts = max(1, max_attempts)
        self._backoff = backoff_s
        self._batch = max(1, batch)
        self.on_call = on_call

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._call(texts[i : i + self._batch]) for i in range(0, len(texts), self._batch)]
        out = np.vstack(parts).astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.where(norms == 0, 1.0, norms)
        if not self.dim:
            self.dim = int(out.shape[1])
        return out

    def _call(self, texts: list[str]) -> Vectors:
        litellm = provider.load()
        kwargs: dict[str, Any] = {"model": self.name, "input": texts, "timeout": self._timeout}
        if self._api_base:
            kwargs["api_base"] = self._api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        last: LLMError | None = None
        for attempt in range(1, self._attempts + 1):
            start = time.perf_counter()
            try:
                response = litellm.embedding(num_retries=0, max_retries=0, **kwargs)
                vectors = _vectors(response, len(texts))
            except Exception as exc:
                err = classify(exc)
                self._account(texts, start, attempt, err.outcome, err.detail)
                last = err
                if not err.retryable or attempt == self._attempts:
                    break
                wait = self._backoff * 2 ** (attempt - 1)
                if err.retry_after_s is not None:
                    wait = max(wait, min(err.retry_after_s, MAX_RETRY_AFTER_S))
                time.sleep(wait)
                continue
            hidden = getattr(response, "_hidden_params", None) or {}
            usage = getattr(response, "usage", None)
            tokens = _get(usage, "prompt_tokens") if usage is not None else None
            cost = hidden.get("response_cost")
            self._account(
                texts,
                start,
                attempt,
                "ok",
                None,
                tokens=int(tokens) if isinstance(tokens, (int, float)) else None,
                cost=float(cost) if isinstance(cost, (int, float)) else None,
                provider_name=hidden.get("custom_llm_provider"),
            )
            return vectors
        outcome = last.outcome if last is not None else "error"
        raise EmbeddingFailed(
            f"embedding call failed ({outcome}) after {attempt} attempt(s)"
        ) from None

    def _account(
        self,
        texts: list[str],
        start: float,
        attempt: int,
        outcome: str,
        error: str | None,
        *,
        tokens: int | None = None,
        cost: float | None = None,
        provider_name: str | None = None,
    ) -> None:
        if self.on_call is None:
            return
        self.on_call(
            CallRecord(
                purpose=PURPOSE.get(),
                model=self.name,
                provider=provider_name
                or (self.name.split("/", 1)[0] if "/" in self.name else None),
                prompt_tokens=tokens,
                completion_tokens=None,
                total_tokens=tokens,
                cost=cost,
                latency_ms=round((time.perf_counter() - start) * 1000.0, 3),
                outcome=outcome,
                error=error,
                created_ns=time.time_ns(),
                operation="embedding",
                inputs=len(texts),
                attempt=attempt,
            )
        )


def _vectors(response: Any, expected: int) -> Vectors:
    """The answer's rows in input order; a malformed answer is the provider's fault, worth
    a retry (InvalidOutput), never a crash deep in numpy."""
    try:
        rows = sorted(response.data, key=lambda d: _get(d, "index"))
        vectors = np.asarray([_get(d, "embedding") for d in rows], dtype=np.float32)
    except (AttributeError, TypeError, ValueError):
        raise InvalidOutput("embedding answer is not a list of vectors") from None
    if vectors.ndim != 2 or vectors.shape[0] != expected or vectors.shape[1] == 0:
        raise InvalidOutput("embedding answer has the wrong shape", detail="wrong_shape")
    if not np.isfinite(vectors).all():
        raise InvalidOutput("embedding answer holds non-numbers", detail="not_finite")
    return vectors


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
