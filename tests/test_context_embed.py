"""Embedders: the bundled model works offline; the LiteLLM path is real, against the fake;
every call of either is accounted (records, then llm_calls rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from chatstats.context.embed import DEFAULT_MODEL, bundled
from chatstats.context.embed_calls import accounted, purpose
from chatstats.context.remote_embed import EmbeddingFailed, RemoteEmbedder
from chatstats.llm import CallRecord
from chatstats.testing.fake_llm import (
    BadJSONBody,
    ClientError,
    FakeLLM,
    Malformed,
    RateLimit,
    ServerError,
    Timeout,
)


def test_bundled_model_loads_offline_and_ranks_by_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = bundled()
    assert model.name == DEFAULT_MODEL
    rows = model.embed(["the flight lands at six", "my cat is asleep", "when does the plane land"])
    assert rows.shape == (3, model.dim) and rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)
    sims = rows @ rows[2]
    assert sims[0] > sims[1]
    assert model.embed([]).shape == (0, model.dim)


def _remote(fake: FakeLLM, calls: list[CallRecord], **kw: Any) -> RemoteEmbedder:
    return RemoteEmbedder(
        "openai/fake-embed", api_base=fake.base_url, api_key="k", on_call=calls.append, **kw
    )


def test_remote_embedder_accounts_each_call() -> None:
    calls: list[CallRecord] = []
    with FakeLLM() as fake:
        emb = _remote(fake, calls, batch=2)
        rows = emb.embed(["a", "bb", "ccc"])
        assert rows.shape == (3, 8) and emb.dim == 8
        assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
        with purpose("search"):
            again = emb.embed(["bb"])
        assert np.allclose(again[0], rows[1])
    assert [c.inputs for c in calls] == [2, 1, 1]
    assert [c.purpose for c in calls] == ["index", "index", "search"]
    assert all(c.operation == "embedding" and c.attempt == 1 for c in calls)
    assert all(c.outcome == "ok" and c.error is None for c in calls)
    assert all(c.prompt_tokens and c.total_tokens == c.prompt_tokens for c in calls)
    assert all(c.latency_ms > 0 and c.model == "openai/fake-embed" for c in calls)
    assert {c.provider for c in calls} == {"openai"}
    assert all(c.cost is None for c in calls)  # a model LiteLLM has no price for


def test_remote_embedder_retries_and_accounts_every_failed_attempt() -> None:
    """429, 500, a timeout, a body that is not JSON and vectors that are not numbers: each
    attempt is one record with its error, then the answer."""
    calls: list[CallRecord] = []
    with FakeLLM() as fake:
        fake.script(
            [RateLimit(retry_after=0), ServerError(500), Timeout(seconds=2), BadJSONBody(),
             Malformed()]
        )  # fmt: skip
        emb = _remote(fake, calls, timeout_s=0.5, backoff_s=0.01, max_attempts=6)
        rows = emb.embed(["hello"])
        assert rows.shape == (1, 8)
        assert len(fake.requests) == 6
    assert [c.attempt for c in calls] == [1, 2, 3, 4, 5, 6]
    assert [c.outcome for c in calls] == [
        "rate_limited", "server_error", "timeout", "server_error", "invalid_output", "ok"
    ]  # fmt: skip
    assert "429" in (calls[0].error or "") and "500" in (calls[1].error or "")
    assert all(c.error and "hello" not in c.error for c in calls[:-1])
    assert all(c.prompt_tokens is None for c in calls[:-1]) and calls[-1].prompt_tokens


def test_remote_embedder_gives_up_with_a_clear_error() -> None:
    calls: list[CallRecord] = []
    with FakeLLM() as fake:
        fake.script([ClientError(400)])
        with pytest.raises(EmbeddingFailed, match="bad_request"):
            _remote(fake, calls).embed(["x"])
        assert [c.outcome for c in calls] == ["bad_request"]  # never retried
        fake.script([ServerError(503)] * 2)
        with pytest.raises(EmbeddingFailed, match=r"server_error\) after 2"):
            _remote(fake, calls, max_attempts=2, backoff_s=0).embed(["x"])
        assert [c.outcome for c in calls[1:]] == ["server_error", "server_error"]


def test_a_priced_model_records_its_cost() -> None:
    """LiteLLM's own price list (offline) prices a known embedding model."""
    calls: list[CallRecord] = []
    with FakeLLM() as fake:
        emb = RemoteEmbedder(
            "openai/text-embedding-3-small", api_base=fake.base_url, api_key="k",
            on_call=calls.append,
        )  # fmt: skip
        emb.embed(["the flight lands at six"] * 10)
    assert calls[0].cost is not None and calls[0].cost > 0


def test_the_bundled_model_is_accounted_per_call() -> None:
    calls: list[CallRecord] = []
    model = accounted(bundled(), calls.append)
    assert model.name == DEFAULT_MODEL and model.dim == bundled().dim
    model.sums(["the flight lands at six", "ok"])
    with purpose("search"):
        model.embed(["when does the plane land"])
    assert [(c.purpose, c.inputs) for c in calls] == [("index", 2), ("search", 1)]
    assert all(c.operation == "embedding" and c.cost == 0.0 for c in calls)
    assert calls[0].prompt_tokens and calls[0].prompt_tokens >= 6
    assert all(c.provider == "local" and c.outcome == "ok" for c in calls)


@pytest.mark.anyio
async def test_embedding_calls_are_stored_and_survive_a_reopen(tmp_path: Path) -> None:
    """A CallBuffer's records land in llm_calls (no text), are summed by embedding_usage
    and by usage_totals, and are still there after the database is closed and reopened."""
    from chatstats import llm
    from chatstats.db import Database

    buffer = llm.CallBuffer()
    with FakeLLM() as fake:
        fake.script([ServerError(500)])
        emb = accounted(
            RemoteEmbedder("openai/fake-embed", api_base=fake.base_url, api_key="k",
                           backoff_s=0),
            buffer.add,
        )  # fmt: skip
        await anyio.to_thread.run_sync(emb.embed, ["secret words", "more"])
    assert buffer.pending() == 2
    db = Database(tmp_path / "app.db")
    await db.open()
    try:
        assert await buffer.flush(db) == 2 and buffer.pending() == 0
        completion = llm.CallRecord(
            purpose="analysis", model="m", provider=None, prompt_tokens=5,
            completion_tokens=1, total_tokens=6, cost=0.5, latency_ms=1.0, outcome="ok",
            error=None,
        )  # fmt: skip
        await db.write(llm.record_call, completion)
    finally:
        db.close()
    db = Database(tmp_path / "app.db")
    await db.open()
    try:
        usage = await db.read(llm.embedding_usage, "openai/fake-embed")
        assert usage["calls"] == 2 and usage["failed_calls"] == 1
        assert usage["prompt_tokens"] > 0 and usage["cost"] is None  # unpriced
        assert (await db.read(llm.embedding_usage, "other"))["calls"] == 0
        both = await db.read(llm.usage_totals)
        only = await db.read(lambda c: llm.usage_totals(c, operation="completion"))
        assert (both["calls"], only["calls"]) == (3, 1)
        rows = await db.fetch_all("SELECT * FROM llm_calls ORDER BY id")
        assert [r["operation"] for r in rows] == ["embedding", "embedding", "completion"]
        assert [r["attempt"] for r in rows[:2]] == [1, 2]
        assert all("secret" not in str(tuple(r)) for r in rows)
    finally:
        db.close()


@pytest.mark.anyio
async def test_a_buffer_keeps_records_it_could_not_write(tmp_path: Path) -> None:
    from chatstats import llm
    from chatstats.db import Database

    buffer = llm.CallBuffer(limit=3)
    for n in range(5):
        buffer.add(llm.CallRecord(
            purpose="index", model="m", provider=None, prompt_tokens=n, completion_tokens=None,
            total_tokens=n, cost=0.0, latency_ms=1.0, outcome="ok", error=None,
            operation="embedding",
        ))  # fmt: skip
    assert buffer.pending() == 3 and buffer.dropped == 2  # bounded: the oldest go
    db = Database(tmp_path / "app.db")  # never opened: writes fail
    with pytest.raises(RuntimeError):
        await buffer.flush(db)
    assert buffer.pending() == 3  # still queued for the next flush
