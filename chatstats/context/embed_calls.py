"""Every embedding call accounted like a completion: one `llm_calls` row per call.

Why a wrapper: the index and the search call their embedder from worker threads, through
the small `Embedder` protocol, and should not each know about accounting. The daemon wraps
its embedder once (`accounted`) and every call, by the index build, a live refresh or a
search query, hands a `CallRecord` (operation "embedding": model, texts sent, tokens, cost,
latency, outcome; never the texts) to a recorder, normally an `llm.CallBuffer` that a task
writes to the database. A configured provider (RemoteEmbedder) accounts each HTTP attempt
itself, retries included; the bundled model is accounted here, per call, at cost 0 (it
runs locally: free, not unknown).

`purpose` says what the embedding is for ("index" unless a caller says otherwise, e.g.
"search" around a query), through a context variable so the protocol stays `embed(texts)`.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from typing import Any

from chatstats.context.embed import Vectors, take_tokens
from chatstats.llm import CallRecord

PURPOSE: contextvars.ContextVar[str] = contextvars.ContextVar("embed_purpose", default="index")

Record = Callable[[CallRecord], None]


@contextlib.contextmanager
def purpose(name: str) -> Iterator[None]:
    """Embedding calls made inside are accounted with this purpose."""
    token = PURPOSE.set(name)
    try:
        yield
    finally:
        PURPOSE.reset(token)


class Accounted:
    """A local embedder (the bundled model) whose every call makes one record."""

    provider = "local"

    def __init__(self, inner: Any, record: Record) -> None:
        self.inner = inner
        self.record = record

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    @dim.setter
    def dim(self, value: int) -> None:
        self.inner.dim = value

    def embed(self, texts: list[str]) -> Vectors:
        vectors: Vectors = self._timed(self.inner.embed, texts)
        return vectors

    def _timed(self, fn: Callable[[list[str]], Vectors], texts: list[str]) -> Vectors:
        take_tokens()
        started = time.perf_counter()
        outcome, error = "ok", None
        try:
            out: Vectors = fn(texts)
            return out
        except Exception as exc:
            outcome, error = "error", type(exc).__name__
            raise
        finally:
            tokens = take_tokens()
            self.record(
                CallRecord(
                    purpose=PURPOSE.get(),
                    model=self.name,
                    provider=self.provider,
                    prompt_tokens=tokens,
                    completion_tokens=None,
                    total_tokens=tokens,
                    cost=0.0,
                    latency_ms=round((time.perf_counter() - started) * 1000.0, 3),
                    outcome=outcome,
                    error=error,
                    created_ns=time.time_ns(),
                    operation="embedding",
                    inputs=len(texts),
                    attempt=1,
                )
            )


class AccountedSums(Accounted):
    """The same, for an embedder that also gives token sums (the index's fast path)."""

    def sums(self, texts: list[str]) -> Vectors:
        vectors: Vectors = self._timed(self.inner.sums, texts)
        return vectors


def accounted(embedder: Any, record: Record) -> Any:
    """`embedder` with every call accounted to `record`: a RemoteEmbedder accounts its own
    attempts (it is given the recorder), a local one is wrapped."""
    if hasattr(embedder, "on_call"):
        embedder.on_call = record
        return embedder
    if isinstance(embedder, Accounted):
        embedder.record = record
        return embedder
    cls = AccountedSums if callable(getattr(embedder, "sums", None)) else Accounted
    return cls(embedder, record)
