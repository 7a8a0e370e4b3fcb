"""Embedding calls in the real daemon: accounted in llm_calls like completions, failures
included, retried, never in the way of ingest, and still counted after a restart.

The daemon runs as its own process with CHATSTATS_EMBED_MODEL pointing LiteLLM at the
loopback fake, which is scripted to fail (500s, a 429, a timeout, a body that is not JSON).
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatstats.sample.generate import make_library
from chatstats.sample.writer import MessagesWriter
from chatstats.testing.fake_llm import BadJSONBody, FakeLLM, RateLimit, ServerError, Timeout
from tests import daemon_proc

TOKEN = "embed-accounting"
MODEL = "openai/fake-embed"


def _env(fake: FakeLLM) -> dict[str, str]:
    return {
        "CHATSTATS_EMBED_MODEL": MODEL,
        "CHATSTATS_EMBED_API_BASE": fake.base_url,
        "CHATSTATS_LLM_API_KEY": "k",
        "CHATSTATS_LLM_TIMEOUT_S": "1",
        "CHATSTATS_LOG_LEVEL": "WARNING",
    }


def _until(client: httpx.Client, ok: Any, seconds: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        status: dict[str, Any] = client.get("/api/index/status").json()
        if ok(status):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()  # SIGTERM: a clean stop, which writes the last records
    assert proc.wait(timeout=30) == 0


def _rows(data: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(data / "chatstats.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(
            "SELECT * FROM llm_calls WHERE operation = 'embedding' ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def test_a_failing_provider_is_accounted_retried_and_never_blocks_ingest(tmp_path: Path):
    lib, data = tmp_path / "lib", tmp_path / "data"
    make_library(lib, messages=400, seed=31, truth=False)
    with FakeLLM() as fake:
        # The first build gives up after four 500s (and is tried again later); the second
        # gets through a 429, a timeout and a body that is not JSON before its answer.
        fake.script(
            [ServerError(500)] * 4
            + [RateLimit(retry_after=0), Timeout(seconds=3), BadJSONBody()]
        )  # fmt: skip
        proc = daemon_proc.serve(lib, data, token=TOKEN, env=_env(fake))
        try:
            url = daemon_proc.ready(proc)["url"]
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"})
            assert (daemon_proc.wait_live(url, TOKEN)["live"] or {}).get("state") == "ok"
            # Ingest goes on while the index cannot be built: a new message is served.
            w = MessagesWriter(lib / "chat.db", create=False)
            chat_rowid = next(c for c, info in w.chats.items() if not info.is_group)
            guid = w.message(
                chat_rowid, "a new message", from_me=False,
                sender=w.chats[chat_rowid].handles[0], date=time.time_ns(),
            )[1]  # fmt: skip
            w.close()
            chats = client.get("/api/chats?limit=500").json()
            chat_guid = _chat_guid(lib, chat_rowid)
            chat_id = next(c["id"] for c in chats if c["guid"] == chat_guid)
            deadline = time.monotonic() + 30
            while guid not in {
                m["guid"] for m in client.get(f"/api/chats/{chat_id}/messages").json()
            }:
                assert time.monotonic() < deadline, "the new message never arrived"
                time.sleep(0.1)
            assert client.get("/api/index/status").json()["building"]  # still not built
            assert client.get("/api/search?q=flight&mode=semantic").status_code == 503

            built = _until(client, lambda s: not s["building"] and s["items"] > 0)
            assert built["model"] == MODEL and built["dim"] == 8
            usage = built["usage"]
            assert usage["failed_calls"] == 7 and usage["calls"] > 7
            assert usage["prompt_tokens"] > 0 and usage["cost"] is None  # unpriced model
            assert client.get("/api/search?q=flight&mode=semantic").status_code == 200
            before = client.get("/api/index/status").json()["usage"]
            assert before["calls"] > usage["calls"]  # the query's embedding counts too
        finally:
            if proc.poll() is None:
                _stop(proc)

        rows = _rows(data)
        outcomes = [r["outcome"] for r in rows[:8]]
        assert outcomes == ["server_error"] * 4 + [
            "rate_limited", "timeout", "server_error", "ok"
        ]  # fmt: skip
        assert [r["attempt"] for r in rows[:8]] == [1, 2, 3, 4, 1, 2, 3, 4]
        assert all(r["error"] and "500" in r["error"] for r in rows[:4])
        assert {r["purpose"] for r in rows} == {"index", "search"}
        assert all(r["inputs"] and r["latency_ms"] > 0 for r in rows)
        assert all(r["model"] == MODEL and r["run_id"] is None for r in rows)
        assert not any("a new message" in str(tuple(r)) for r in rows)

        # After a restart (the index loads, nothing is embedded) the figures are the same.
        proc = daemon_proc.serve(lib, data, token=TOKEN, env=_env(fake))
        try:
            url = daemon_proc.ready(proc)["url"]
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"})
            again = _until(client, lambda s: not s["building"] and s["items"] > 0)
            assert again["usage"] == before
        finally:
            _stop(proc)


def test_the_bundled_models_calls_are_accounted_from_the_build_child(tmp_path: Path):
    """The default model builds in a child process: its calls come back to the daemon and
    are stored like the daemon's own (cost 0: the model runs locally); a search adds one."""
    lib, data = tmp_path / "lib", tmp_path / "data"
    make_library(lib, messages=400, seed=32, truth=False)
    proc = daemon_proc.serve(lib, data, token=TOKEN, env={"CHATSTATS_LOG_LEVEL": "WARNING"})
    try:
        url = daemon_proc.ready(proc)["url"]
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"})
        built = _until(client, lambda s: not s["building"] and s["items"] > 0)
        usage = built["usage"]
        assert usage["calls"] > 0 and usage["prompt_tokens"] > 0
        assert usage["cost"] == 0.0 and usage["failed_calls"] == 0
        assert client.get("/api/search?q=flight&mode=hybrid").status_code == 200
        after = client.get("/api/index/status").json()["usage"]
        assert after["calls"] == usage["calls"] + 1
    finally:
        _stop(proc)
    rows = _rows(data)
    assert {r["provider"] for r in rows} == {"local"}
    assert [r["purpose"] for r in rows][-1] == "search"
    assert all(r["model"] == built["model"] and r["inputs"] for r in rows)


def _chat_guid(lib: Path, rowid: int) -> str:
    conn = sqlite3.connect(lib / "chat.db")
    try:
        guid: str = conn.execute("SELECT guid FROM chat WHERE ROWID = ?", (rowid,)).fetchone()[0]
        return guid
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only: an HTTP proxy in the environment must not see the fake's traffic."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
