"""Helpers for the chatbot tests: a seeded library, the daemon's app on a loopback port, a
turn's SSE read into events, and the sums the stored numbers must equal."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from chatstats.api.app import create_app
from chatstats.api.state import AppState
from chatstats.config import Settings
from chatstats.db import Database, connect
from chatstats.events.bus import EventBus
from chatstats.metrics import Metrics
from chatstats.testing.fake_llm import FakeLLM
from tests import loopback
from tests.analysis_support import open_db, seed

TOKEN = "chatbot-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRICES = {"llm_input_cost_per_token": 1e-6, "llm_output_cost_per_token": 2e-6}


def seed_library(db_path: Path) -> None:
    """Two chats of iMessage data as ingest leaves it, with the full-text index built."""
    conn = open_db(db_path)
    try:
        seed(conn, chats=2, conversations=2, messages=4)
        conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    finally:
        conn.close()


def llm_settings(fake: FakeLLM | None, data_dir: Path, **kw: Any) -> Settings:
    options: dict[str, Any] = {"data_dir": str(data_dir), "heartbeat_seconds": 30.0}
    if fake is not None:
        options |= {
            "llm_model": "openai/fake",
            "llm_api_base": fake.base_url,
            "llm_timeout_s": 1.0,
            **PRICES,
        }
    return Settings(**(options | kw))


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    """The real app on uvicorn, 127.0.0.1, an ephemeral port."""
    db = Database(settings.db_path)
    await db.open()
    state = AppState(
        settings=settings,
        db=db,
        token=TOKEN,
        started_ns=time.time_ns(),
        bus=EventBus(db, poll_seconds=None),
        metrics=Metrics(),
        shutdown=anyio.Event(),
    )
    try:
        async with loopback.serving(create_app(state), state, headers=AUTH, timeout=60) as client:
            yield client, state
    finally:
        db.close()


def parse_sse(lines: list[str]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    event: str | None = None
    for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event is not None:
            if event != "heartbeat":
                out.append((event, json.loads(line[6:])))
            event = None
    return out


async def turn(
    client: httpx.AsyncClient, thread_id: int, content: str = "What did I promise?"
) -> list[tuple[str, Any]]:
    """POST a message and read the whole answer stream."""
    with anyio.fail_after(60):
        async with client.stream(
            "POST", f"/api/chatbot/threads/{thread_id}/messages", json={"content": content}
        ) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            return parse_sse([line async for line in response.aiter_lines()])


def rows(db_path: Path, sql: str, params: Any = ()) -> list[sqlite3.Row]:
    conn = connect(db_path, write=False)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def call_sums(db_path: Path, workflow_id: str) -> tuple[int, int, int, float | None, int]:
    """(prompt, completion, total, cost, calls) over the turn's recorded LLM calls."""
    (row,) = rows(
        db_path,
        "SELECT coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
        " coalesce(sum(total_tokens), 0), sum(cost), count(*) FROM llm_calls WHERE run_id = ?",
        (workflow_id,),
    )
    return row[0], row[1], row[2], row[3], row[4]


def assert_aggregates_exact(db_path: Path) -> None:
    """Every thread's aggregates equal the sums over its messages."""
    for t in rows(
        db_path,
        "SELECT t.id, t.message_count, t.total_tokens, t.total_cost,"
        " (SELECT count(*) FROM thread_messages m WHERE m.thread_id = t.id),"
        " (SELECT coalesce(sum(total_tokens), 0) FROM thread_messages m WHERE m.thread_id = t.id),"
        " (SELECT coalesce(sum(cost), 0.0) FROM thread_messages m WHERE m.thread_id = t.id)"
        " FROM threads t",
    ):
        assert (t[1], t[2]) == (t[4], t[5]), tuple(t)
        assert abs(t[3] - t[6]) < 1e-12, tuple(t)


def assert_messages_accounted(db_path: Path) -> None:
    """Every assistant message carries exactly its turn's sums over llm_calls."""
    for m in rows(
        db_path,
        "SELECT workflow_id, prompt_tokens, completion_tokens, total_tokens, cost"
        " FROM thread_messages WHERE role = 'assistant'",
    ):
        prompt, completion, total, cost, _calls = call_sums(db_path, m[0])
        assert (m[1], m[2], m[3]) == (prompt, completion, total)
        assert m[4] == pytest.approx(cost or 0.0, rel=1e-9, abs=1e-15)
