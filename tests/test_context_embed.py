"""Embedders: the bundled model works offline; the LiteLLM path is real, against the fake."""

from __future__ import annotations

import numpy as np
import pytest

from chatstats.context.embed import DEFAULT_MODEL, bundled
from chatstats.context.remote_embed import EmbeddingFailed, RemoteEmbedder
from chatstats.testing.fake_llm import ClientError, FakeLLM, RateLimit, ServerError, Timeout


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


def test_remote_embedder_accounts_each_call() -> None:
    with FakeLLM() as fake:
        emb = RemoteEmbedder("openai/fake-embed", api_base=fake.base_url, api_key="k", batch=2)
        rows = emb.embed(["a", "bb", "ccc"])
        assert rows.shape == (3, 8) and emb.dim == 8
        assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
        again = emb.embed(["bb"])
        assert np.allclose(again[0], rows[1])
        assert [c.inputs for c in emb.calls] == [2, 1, 1]
        assert all(c.outcome == "ok" and c.prompt_tokens > 0 for c in emb.calls)
        assert emb.totals()["calls"] == 3


def test_remote_embedder_retries_429_500_and_timeouts() -> None:
    with FakeLLM() as fake:
        fake.script([RateLimit(retry_after=0), ServerError(500), Timeout(seconds=2)])
        emb = RemoteEmbedder(
            "openai/fake-embed", api_base=fake.base_url, api_key="k", timeout_s=0.5, backoff_s=0.01
        )
        rows = emb.embed(["hello"])
        assert rows.shape == (1, 8)
        assert emb.calls[-1].attempts == 4 and emb.calls[-1].outcome == "ok"


def test_remote_embedder_gives_up_with_a_clear_error() -> None:
    with FakeLLM() as fake:
        fake.script([ClientError(400)])
        emb = RemoteEmbedder("openai/fake-embed", api_base=fake.base_url, api_key="k")
        with pytest.raises(EmbeddingFailed, match="bad_request"):
            emb.embed(["x"])
        fake.script([ServerError(503)] * 2)
        emb2 = RemoteEmbedder(
            "openai/fake-embed", api_base=fake.base_url, api_key="k", max_attempts=2, backoff_s=0
        )
        with pytest.raises(EmbeddingFailed, match="server_error"):
            emb2.embed(["x"])
