"""Embeddings through LiteLLM, for any provider (a local Ollama, a hosted API, ...).

LiteLLM is loaded and set up by the one gateway (chatstats.llm.provider: offline price map,
no hidden retries, quiet logging), lazily (its import costs ~4 s); this module sets a real
timeout per call and does its own bounded retries on 429 / 5xx / timeouts / dropped
connections so a flaky provider slows the index build but never ingest (builds run in a worker thread). Every call is accounted:
tokens, cost (None when the provider has no price) and latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from chatstats.context.embed import Vectors
from chatstats.errors import ChatStatsError
from chatstats.llm import provider


@dataclass(frozen=True)
class EmbedCall:
    """One provider call, for accounting: never holds the texts."""

    model: str
    inputs: int
    prompt_tokens: int
    cost: float | None
    latency_ms: float
    attempts: int
    outcome: str  # "ok" or the last error's kind


class EmbeddingFailed(ChatStatsError):
    """The provider kept failing (or refused the request) after the allowed attempts."""

    code = "embedding_failed"
    status = 502


def _kind(exc: BaseException) -> str | None:
    """The retryable kind of a LiteLLM/HTTP error, or None when retrying cannot help."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    if status == 429 or "RateLimit" in name:
        return "rate_limited"
    if "Timeout" in name or isinstance(exc, TimeoutError) or status == 408:
        return "timeout"
    if isinstance(status, int) and status >= 500:
        return "server_error"
    if "InternalServerError" in name or "ServiceUnavailable" in name:
        return "server_error"
    if "APIConnectionError" in name or isinstance(exc, ConnectionError):
        return "connection"
    return None


class RemoteEmbedder:
    """An Embedder over LiteLLM's `embedding` call; thread-safe, batches of `batch` texts."""

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
        on_call: Callable[[EmbedCall], None] | None = None,
    ) -> None:
        self.name = model
        self.dim = 0  # learnt from the first answer
        self._api_base = api_base
        self._api_key = api_key
        self._timeout = timeout_s
        self._attempts = max(1, max_attempts)
        self._backoff = backoff_s
        self._batch = max(1, batch)
        self._on_call = on_call
        self._lock = threading.Lock()
        self.calls: list[EmbedCall] = []

    def totals(self) -> dict[str, float]:
        """Sums over every call so far: what the index status and metrics report."""
        with self._lock:
            calls = list(self.calls)
        return {
            "calls": len(calls),
            "prompt_tokens": sum(c.prompt_tokens for c in calls),
            "cost": sum(c.cost or 0.0 for c in calls),
            "latency_ms": sum(c.latency_ms for c in calls),
        }

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
        start = time.perf_counter()
        last = "error"
        for attempt in range(1, self._attempts + 1):
            try:
                response = litellm.embedding(num_retries=0, max_retries=0, **kwargs)
            except Exception as exc:
                kind = _kind(exc)
                last = kind or "bad_request"
                if kind is None or attempt == self._attempts:
                    self._account(texts, 0, None, start, attempt, last)
                    raise EmbeddingFailed(f"embedding call failed ({last})") from None
                time.sleep(self._backoff * 2 ** (attempt - 1))
                continue
            rows = sorted(response.data, key=lambda d: _get(d, "index"))
            vectors = np.asarray([_get(d, "embedding") for d in rows], dtype=np.float32)
            if vectors.shape[0] != len(texts):
                self._account(texts, 0, None, start, attempt, "bad_answer")
                raise EmbeddingFailed("embedding answer has the wrong number of rows")
            usage = getattr(response, "usage", None)
            tokens = int(_get(usage, "prompt_tokens") or 0) if usage is not None else 0
            cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
            self._account(texts, tokens, cost, start, attempt, "ok")
            return vectors
        raise EmbeddingFailed(f"embedding call failed ({last})")  # pragma: no cover

    def _account(
        self, texts: list[str], tokens: int, cost: Any, start: float, attempts: int, outcome: str
    ) -> None:
        call = EmbedCall(
            model=self.name,
            inputs=len(texts),
            prompt_tokens=tokens,
            cost=float(cost) if isinstance(cost, (int, float)) else None,
            latency_ms=(time.perf_counter() - start) * 1000,
            attempts=attempts,
            outcome=outcome,
        )
        with self._lock:
            self.calls.append(call)
        if self._on_call is not None:
            self._on_call(call)


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
