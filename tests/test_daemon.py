"""The daemon end to end: ready line, real loopback HTTP, token file, import status, stopping."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import structlog

from chatstats.api.auth import resolve_token
from chatstats.config import Settings
from chatstats.daemon import serve
from chatstats.errors import MigrationError

pytestmark = pytest.mark.anyio


def make_settings(tmp_path: Path, *, source: Path | None = None, **kw: Any) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"),
        source=str(source or tmp_path / "missing" / "chat.db"),
        addressbook=str(tmp_path / "no-addressbook"),
        port=0,
        **kw,
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    """The daemon in a task group; yields its ready line, stops it on exit (and times that)."""
    lines: list[dict[str, Any]] = []
    got_ready = anyio.Event()
    shutdown = anyio.Event()

    def ready(info: dict[str, Any]) -> None:
        lines.append(info)
        got_ready.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(serve, settings, ready=ready, shutdown=shutdown))
        with anyio.fail_after(10):
            await got_ready.wait()
        info = dict(lines[0])
        yield info
        info["stop_began"] = time.monotonic()
        shutdown.set()
    info["stop_seconds"] = time.monotonic() - info["stop_began"]


async def wait_for_import(client: httpx.AsyncClient, *states: str) -> dict[str, Any]:
    with anyio.fail_after(10):
        while True:
            status = (await client.get("/api/health")).json()["import"]
            if status["state"] in states:
                return status
            await anyio.sleep(0.02)


async def test_serves_over_loopback_with_a_generated_token_then_stops(tmp_path):
    settings = make_settings(tmp_path)
    async with running(settings) as info:
        port = info["port"]
        assert info == {
            "event": "ready",
            "url": f"http://127.0.0.1:{port}",
            "port": port,
            "pid": os.getpid(),
        }
        token_file = tmp_path / "data" / "api-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
        token = token_file.read_text().strip()
        async with httpx.AsyncClient(base_url=info["url"]) as client:
            with anyio.fail_after(10):
                health = await client.get("/api/health")
                assert health.status_code == 200 and health.json()["status"] == "ok"
                status = await wait_for_import(client, "failed")
                assert "not found" in status["error"]
                assert (await client.get("/api/chats")).status_code == 401
                auth = {"Authorization": f"Bearer {token}"}
                chats = await client.get("/api/chats", headers=auth)
                assert chats.status_code == 200 and chats.json() == []
    assert info["stop_seconds"] < 2


async def test_a_stop_with_a_request_in_flight_still_finishes_within_two_seconds(
    tmp_path, monkeypatch
):
    entered = anyio.Event()

    async def slow(self, *args):
        entered.set()
        await anyio.sleep(30)

    monkeypatch.setattr("chatstats.library.service.Library.chats", slow)
    settings = make_settings(tmp_path, token="t")
    outcome: list[Any] = []

    async def ask(url: str) -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            try:
                outcome.append(
                    await client.get("/api/chats", headers={"Authorization": "Bearer t"})
                )
            except httpx.HTTPError as exc:
                outcome.append(exc)

    async with anyio.create_task_group() as tg, running(settings) as info:
        tg.start_soon(ask, info["url"])
        with anyio.fail_after(10):
            await entered.wait()
    assert info["stop_seconds"] < 2
    # uvicorn cancels the handler after its grace period and answers 500 itself, or the
    # connection just closes: either way the client is not left hanging.
    (answer,) = outcome
    assert isinstance(answer, httpx.HTTPError) or answer.status_code == 500


async def test_a_newer_schema_is_fatal_and_loud(tmp_path):
    (tmp_path / "data").mkdir()
    conn = sqlite3.connect(tmp_path / "data" / "chatstats.db")
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_ns INTEGER NOT NULL)"
    )
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    conn.commit()
    conn.close()
    with structlog.testing.capture_logs() as logs, pytest.raises(MigrationError):
        with anyio.fail_after(10):
            await serve(make_settings(tmp_path), ready=lambda info: None)
    assert [e["event"] for e in logs if e["log_level"] == "critical"] == [
        "database_migration_failed"
    ]


# ---------------------------------------------------------------------------------------------
# The import, with the importer replaced


class FakeSummary(msgspec.Struct):
    messages_added: int
    seconds: float


def fake_importer(monkeypatch, body: Callable[..., Any]) -> list[tuple]:
    calls: list[tuple] = []

    def run_import(db_path, source, addressbook, progress=None):
        calls.append((db_path, source, addressbook))
        return body(progress)

    import chatstats.ingest.importer as importer

    monkeypatch.setattr(importer, "run_import", run_import)
    return calls


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "Messages" / "chat.db"
    path.parent.mkdir()
    path.write_bytes(b"")
    return path


async def test_import_progress_and_summary_show_in_health(tmp_path, monkeypatch, source):
    release = threading.Event()

    def body(progress):
        progress("messages", 5, 10)
        release.wait(10)
        progress("messages", 10, 10)
        return FakeSummary(messages_added=10, seconds=0.5)

    calls = fake_importer(monkeypatch, body)
    settings = make_settings(tmp_path, source=source, token="t")
    async with running(settings) as info, httpx.AsyncClient(base_url=info["url"]) as client:
        status = await wait_for_import(client, "running")
        with anyio.fail_after(10):
            while status["done"] != 5:
                status = (await client.get("/api/health")).json()["import"]
        assert status["phase"] == "messages" and status["total"] == 10
        release.set()
        status = await wait_for_import(client, "complete")
        assert status["last_summary"] == {"messages_added": 10, "seconds": 0.5}
        assert status["error"] is None
    assert calls == [(settings.db_path, source, None)]


async def test_a_failing_import_reports_its_kind_not_its_text(tmp_path, monkeypatch, source):
    def body(progress):
        raise ValueError("a message body that must not leak")

    fake_importer(monkeypatch, body)
    settings = make_settings(tmp_path, source=source, token="t")
    with structlog.testing.capture_logs() as logs:
        async with running(settings) as info, httpx.AsyncClient(base_url=info["url"]) as client:
            status = await wait_for_import(client, "failed")
    assert "ValueError" in status["error"] and "leak" not in status["error"]
    assert "leak" not in repr(logs)
    assert [e["error_type"] for e in logs if e["event"] == "import_failed"] == ["ValueError"]


async def test_stopping_interrupts_an_import_at_its_next_progress_report(
    tmp_path, monkeypatch, source
):
    def body(progress):
        for n in range(10_000):
            progress("messages", n, 10_000)
            time.sleep(0.01)
        return FakeSummary(messages_added=0, seconds=0)

    fake_importer(monkeypatch, body)
    settings = make_settings(tmp_path, source=source, token="t")
    async with running(settings) as info, httpx.AsyncClient(base_url=info["url"]) as client:
        await wait_for_import(client, "running")
    assert info["stop_seconds"] < 2


async def test_stopping_abandons_an_import_stuck_without_progress(tmp_path, monkeypatch, source):
    stuck = threading.Event()

    def body(progress):
        progress("messages", 0, 1)
        stuck.wait(30)  # one long SQLite statement, say
        return FakeSummary(messages_added=0, seconds=0)

    fake_importer(monkeypatch, body)
    settings = make_settings(tmp_path, source=source, token="t")
    try:
        async with running(settings) as info, httpx.AsyncClient(base_url=info["url"]) as client:
            await wait_for_import(client, "running")
        assert info["stop_seconds"] < 2
    finally:
        stuck.set()


# ---------------------------------------------------------------------------------------------
# A separate process, stopped by SIGTERM


SERVE_SCRIPT = """
import anyio
from chatstats import config, daemon, log
log.configure("INFO")
anyio.run(daemon.serve, config.load())
"""


async def test_sigterm_stops_the_process_gracefully_within_two_seconds(tmp_path):
    env = dict(os.environ)
    env.update(
        CHATSTATS_DATA_DIR=str(tmp_path / "data"),
        CHATSTATS_SOURCE=str(tmp_path / "missing.db"),
        CHATSTATS_ADDRESSBOOK=str(tmp_path / "none"),
        CHATSTATS_PORT="0",
        CHATSTATS_TOKEN="",
    )
    async with await anyio.open_process(
        [sys.executable, "-c", SERVE_SCRIPT], env=env, stderr=None
    ) as proc:
        assert proc.stdout is not None
        buffer = b""
        ready = None
        with anyio.fail_after(20):
            while ready is None:
                buffer += await proc.stdout.receive()
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    event = json.loads(line)  # every stdout line is JSON
                    if event.get("event") == "ready" and "level" not in event:
                        ready = event
        assert ready["pid"] == proc.pid
        token = (tmp_path / "data" / "api-token").read_text().strip()
        async with httpx.AsyncClient(base_url=ready["url"]) as client:
            with anyio.fail_after(10):
                r = await client.get("/api/chats", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(5):
            code = await proc.wait()
        assert time.monotonic() - began < 2
        assert code == 0


# ---------------------------------------------------------------------------------------------
# The token


def test_token_from_settings_wins_and_writes_nothing(tmp_path):
    settings = Settings(data_dir=str(tmp_path / "d"), token="configured")
    assert resolve_token(settings) == "configured"
    assert not (tmp_path / "d").exists()


def test_a_generated_token_is_kept_and_reused(tmp_path):
    settings = Settings(data_dir=str(tmp_path / "d"))
    first = resolve_token(settings)
    assert len(first) >= 40
    assert resolve_token(settings) == first
    path = tmp_path / "d" / "api-token"
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["api-token"]


def test_an_empty_token_file_is_replaced_and_a_loose_one_tightened(tmp_path):
    settings = Settings(data_dir=str(tmp_path))
    path = tmp_path / "api-token"
    path.write_text("\n")
    token = resolve_token(settings)
    assert token and path.read_text().strip() == token
    path.chmod(0o644)
    assert resolve_token(settings) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
