"""SSE 1–6 against a real uvicorn on a loopback port (httpx's ASGI transport would buffer
whole bodies), plus the SSE response, the live streams' de-duplication and the metrics."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog
from starlette.applications import Starlette

from chatstats import metrics as metrics_module
from chatstats.api import feeds, sse, streams
from chatstats.api.app import create_app
from chatstats.api.state import AppState
from chatstats.config import Settings
from chatstats.db import Database
from chatstats.errors import NotFound
from chatstats.events import bus as bus_module
from chatstats.events.bus import EventBus
from chatstats.events.hub import MessageHub
from chatstats.library.service import Library
from chatstats.metrics import Metrics
from tests import loopback

pytestmark = pytest.mark.anyio

TOKEN = "sse-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
S = 1_000_000_000
T0 = 1_700_000_000 * S
HEARTBEAT = 0.2
CHAT1_MESSAGES = 60


# ---------------------------------------------------------------------------------------------
# A small library: chat 1 with more messages than an `initial` page, chat 2 with two.


def _fill(conn: sqlite3.Connection) -> None:
    x = conn.execute
    x("INSERT INTO contacts (id, name) VALUES (1, 'Ann'), (2, 'Ben')")
    x(
        "INSERT INTO handles (id, identifier, service, contact_id)"
        " VALUES (1, '+1555', 'iMessage', 1), (2, '+1666', 'SMS', 2)"
    )
    x(
        "INSERT INTO chats (id, guid, chat_identifier, service, is_group)"
        " VALUES (1, 'c1', '+1555', 'iMessage', 0), (2, 'c2', '+1666', 'SMS', 0)"
    )
    x("INSERT INTO chat_participants VALUES (1, 1), (2, 2)")
    for i in range(1, CHAT1_MESSAGES + 1):
        add_message(conn, i, 1, T0 + i * S)
    add_message(conn, 1001, 2, T0 + 5 * S)
    add_message(conn, 1002, 2, T0 + 6 * S)
    _recount(conn)


def add_message(conn: sqlite3.Connection, mid: int, chat: int, date_ns: int) -> None:
    conn.execute(
        "INSERT INTO messages (id, guid, chat_id, handle_id, is_from_me, date_ns, text)"
        " VALUES (:id, :guid, :chat, :handle, :mine, :date, :text)",
        {
            "id": mid,
            "guid": f"m{mid}",
            "chat": chat,
            "handle": None if mid % 2 else chat,
            "mine": mid % 2,
            "date": date_ns,
            "text": f"text {mid}",
        },
    )


def _recount(conn: sqlite3.Connection) -> None:
    conn.execute(
        "UPDATE chats SET message_count = (SELECT count(*) FROM messages m WHERE m.chat_id ="
        " chats.id), last_message_ns = (SELECT max(date_ns) FROM messages m WHERE m.chat_id ="
        " chats.id)"
    )
    conn.execute(
        "UPDATE contacts SET message_count = (SELECT count(*) FROM messages m JOIN handles h"
        " ON h.id = m.handle_id WHERE h.contact_id = contacts.id), last_message_ns = (SELECT"
        " max(m.date_ns) FROM messages m JOIN handles h ON h.id = m.handle_id"
        " WHERE h.contact_id = contacts.id)"
    )


@pytest.fixture(scope="module")
def library_template(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("sse-library") / "chatstats.db"

    async def build() -> None:
        db = Database(path)
        await db.open()
        try:
            await db.write(_fill)
        finally:
            db.close()

    anyio.run(build)
    return path.read_bytes()


@pytest.fixture
async def db(tmp_path: Path, library_template: bytes) -> AsyncIterator[Database]:
    path = tmp_path / "data" / "chatstats.db"
    path.parent.mkdir()
    path.write_bytes(library_template)
    database = Database(path)
    await database.open()
    try:
        yield database
    finally:
        database.close()


def make_state(db: Database, **extra: Any) -> AppState:
    """An AppState with the streams' fields, whether or not state.py declares them yet."""
    base: dict[str, Any] = {
        "settings": Settings(data_dir=str(db.path.parent), heartbeat_seconds=HEARTBEAT),
        "db": db,
        "token": TOKEN,
        "started_ns": time.time_ns(),
    }
    declared = {f.name for f in dataclasses.fields(AppState) if f.init}
    app_state = AppState(**base, **{k: v for k, v in extra.items() if k in declared})
    for name, value in extra.items():
        if name not in declared:
            setattr(app_state, name, value)
    return app_state


@pytest.fixture
def app_state(db: Database) -> AppState:
    return make_state(
        db,
        bus=EventBus(db, poll_seconds=None),
        hub=MessageHub(),
        metrics=Metrics(),
        shutdown=anyio.Event(),
    )


def make_app(app_state: AppState) -> Starlette:
    """The real app, with every stream route mounted."""
    app = create_app(app_state)
    paths = {getattr(r, "path", None) for r in app.routes}
    assert {r.path for r in [*feeds.ROUTES, *streams.ROUTES]} <= paths
    assert {p for p, _h in streams.JSON_ROUTES} <= paths
    return app


@asynccontextmanager
async def serving(app_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with every stream route, over loopback HTTP."""
    async with loopback.serving(make_app(app_state), app_state, headers=AUTH, timeout=10) as c:
        yield c


class Reader:
    """Parses an SSE body into {"id", "event", "data", "retry"} dicts."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, *, heartbeats: bool = False) -> dict[str, Any]:
        while True:
            fields: dict[str, Any] = {}
            async for line in self._lines:
                if line == "":
                    if fields:
                        break
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                fields[name] = json.loads(value) if name == "data" else value
            else:
                raise EOFError
            if heartbeats or fields.get("event") != "heartbeat":
                return fields

    async def until(self, event: str) -> dict[str, Any]:
        while True:
            ev = await self.next(heartbeats=True)
            if ev.get("event") == event:
                return ev

    async def rest(self) -> list[dict[str, Any]]:
        """Every event until the server closes the stream."""
        out = []
        try:
            while True:
                out.append(await self.next(heartbeats=True))
        except EOFError:
            return out


@asynccontextmanager
async def stream(client: httpx.AsyncClient, url: str, **kw: Any) -> AsyncIterator[Reader]:
    async with client.stream("GET", url, **kw) as response:
        assert response.status_code == 200, await response.aread()
        yield Reader(response)


async def wait_until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# SSE 1–3: live streams


async def test_chat_stream_sends_a_bounded_initial_then_ready_updates_and_heartbeats(app_state, db):
    with anyio.fail_after(10):
        async with (
            serving(app_state) as client,
            stream(client, "/api/live-sync/stream/chat/1/messages") as events,
        ):
            headers = events.response.headers
            assert headers["content-type"] == "text/event-stream; charset=utf-8"
            assert headers["cache-control"] == "no-cache"
            assert headers["x-accel-buffering"] == "no"

            initial = await events.next()
            assert initial["event"] == "initial" and initial["id"] == "1"
            data = initial["data"]
            assert (data["chat_id"], data["limit"], data["complete"]) == (1, 50, False)
            ids = [m["id"] for m in data["messages"]]
            assert ids == list(range(CHAT1_MESSAGES, CHAT1_MESSAGES - 50, -1))
            assert data["messages"][0]["text"] == f"text {CHAT1_MESSAGES}"
            ready = await events.next()
            assert (ready["event"], ready["data"]) == ("ready", {"chat_id": 1})

            await db.write(add_message, 61, 1, T0 + 61 * S)
            (new,) = (await Library(db).chat_messages(1, 1)).items
            assert app_state.hub.publish_messages(1, [new]) == 1
            app_state.hub.publish_messages(2, [{"id": 1003}])  # another chat: not here
            update = await events.next()
            assert update["event"] == "update" and update["id"] == "3"
            assert update["data"]["chat_id"] == 1
            assert [m["id"] for m in update["data"]["messages"]] == [61]
            assert update["data"]["messages"][0]["timestamp"].endswith("Z")

            heartbeat = await events.until("heartbeat")
            assert "id" not in heartbeat
            assert heartbeat["data"]["time"].endswith("Z")


async def test_a_small_chat_is_complete_in_its_initial_page(app_state):
    with anyio.fail_after(10):
        async with (
            serving(app_state) as client,
            stream(client, "/api/live-sync/stream/chat/2/messages") as events,
        ):
            data = (await events.next())["data"]
            assert [m["id"] for m in data["messages"]] == [1002, 1001]
            assert data["complete"] is True


async def test_unknown_chat_is_a_json_404_before_any_stream(app_state):
    with anyio.fail_after(10):
        async with serving(app_state) as client:
            for url in (
                "/api/live-sync/stream/chat/99/messages",
                f"/api/live-sync/stream/chat/{2**64}/messages",
            ):
                r = await client.get(url)
                assert r.status_code == 404
                assert r.headers["content-type"] == "application/json"
                assert r.json()["error"]["code"] == "not_found"
    assert app_state.hub.subscriber_count() == 0


async def test_chats_and_contacts_streams_send_first_pages_then_updates(app_state):
    with anyio.fail_after(10):
        async with serving(app_state) as client:
            async with stream(client, "/api/live-sync/stream/chats") as chats:
                initial = await chats.next()
                assert initial["event"] == "initial"
                assert [c["id"] for c in initial["data"]["chats"]] == [1, 2]
                assert initial["data"]["complete"] is True
                assert (await chats.next())["event"] == "ready"
                # A seeds-style partial update (no "chats" key, no "id") passes as one item.
                app_state.hub.publish_chats({"chat_id": 2, "last_message_time": "x"})
                update = await chats.next()
                assert update["data"] == {"chats": [{"chat_id": 2, "last_message_time": "x"}]}

            async with stream(client, "/api/live-sync/stream/contacts") as contacts:
                initial = await contacts.next()
                assert {c["id"] for c in initial["data"]["contacts"]} == {1, 2}
                assert (await contacts.next())["event"] == "ready"
                app_state.hub.publish_contacts({"contacts": [{"id": 3, "name": None}]})
                assert (await contacts.next())["data"] == {"contacts": [{"id": 3, "name": None}]}


async def test_a_disconnecting_client_is_cleaned_up(app_state):
    hub = app_state.hub
    with anyio.fail_after(10):
        async with serving(app_state) as client:
            for url in (
                "/api/live-sync/stream/chat/1/messages",
                "/api/live-sync/stream/chats",
                "/api/live-sync/stream/contacts",
            ):
                async with stream(client, url) as events:
                    await events.until("ready")
                    assert hub.subscriber_count() == 1
                    assert sse.open_streams() >= 1
                await wait_until(lambda: hub.subscriber_count() == 0)
            await wait_until(lambda: sse.open_streams() == 0)
            # The hub keeps working for the next client.
            async with stream(client, "/api/live-sync/stream/chats") as events:
                await events.until("ready")
                assert hub.publish_chats([{"id": 9}]) == 1


async def test_shutdown_ends_every_stream_promptly(app_state):
    with anyio.fail_after(10):
        async with serving(app_state) as client:
            async with (
                stream(client, "/api/live-sync/stream/chat/1/messages") as chat,
                stream(client, "/api/analysis/streaming/queue/stream") as queue,
                stream(client, "/api/metrics/stream?interval=60") as metrics,
            ):
                await chat.until("ready")
                await metrics.until("metrics")
                app_state.shutdown.set()
                began = time.monotonic()
                for events in (chat, queue, metrics):
                    rest = await events.rest()
                    assert all(e.get("event") == "heartbeat" for e in rest)
                assert time.monotonic() - began < 1.0
            await wait_until(lambda: app_state.hub.subscriber_count() == 0)


async def test_sse_routes_need_the_token(app_state):
    urls = [
        "/api/live-sync/stream/chat/1/messages",
        "/api/live-sync/stream/chats",
        "/api/live-sync/stream/contacts",
        "/api/analysis/streaming/queue/stream",
        "/api/analysis/streaming/redis_stream/task_events:analysis",
        "/api/metrics/stream",
        "/api/metrics",
    ]
    with anyio.fail_after(10):
        async with serving(app_state) as client:
            for url in urls:
                for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
                    r = await client.get(url, headers=headers)
                    assert r.status_code == 401, url
                    assert r.json()["error"]["code"] == "unauthorized"
    assert app_state.hub.subscriber_count() == 0


# ---------------------------------------------------------------------------------------------
# SSE 4–5: EventBus streams


def check_event_shape(ev: dict[str, Any]) -> None:
    assert ev["id"] == str(ev["data"]["id"])
    assert ev["event"] == ev["data"]["type"]
    assert set(ev["data"]) == {"id", "scope", "type", "run_id", "data", "created_at"}
    assert ev["data"]["created_at"].endswith("Z")


async def test_queue_stream_starts_at_now_by_default(app_state):
    bus = app_state.bus
    for n in range(3):
        await bus.publish("global", "old", {"n": n})
    with anyio.fail_after(10):
        async with (
            serving(app_state) as client,
            stream(client, "/api/analysis/streaming/queue/stream") as events,
        ):
            await anyio.sleep(0.1)  # the stream has taken "now" as its start
            first = await bus.publish("global", "started", {"run_id": "r1"})
            second = await bus.publish("chat:4", "job_done", {"conversation_id": 8})
            a, b = await events.next(), await events.next()
    for ev in (a, b):
        check_event_shape(ev)
    assert (a["id"], a["event"]) == (str(first), "started")
    assert a["data"]["run_id"] == "r1" and a["data"]["data"] == {"run_id": "r1"}
    assert (b["id"], b["data"]["scope"], b["data"]["data"]) == (
        str(second),
        "chat:4",
        {"conversation_id": 8},
    )


async def test_resume_with_last_event_id_has_no_gap_and_no_repeat(app_state):
    """A publisher runs the whole time; the client reads some, drops, misses some, resumes."""
    bus = app_state.bus
    published: list[int] = []
    received: list[int] = []
    url = "/api/analysis/streaming/queue/stream?start_id=0"
    total = 120

    async def publisher() -> None:
        for n in range(total):
            published.append(await bus.publish("global", "tick", {"n": n}))
            await anyio.sleep(0.002)

    with anyio.fail_after(15):
        async with serving(app_state) as client, anyio.create_task_group() as tg:
            tg.start_soon(publisher)
            async with stream(client, url) as events:
                for _ in range(25):
                    received.append(int((await events.next())["id"]))
            at_disconnect = len(published)
            await anyio.sleep(0.05)  # disconnected while events keep coming
            assert len(published) > at_disconnect
            # Last-Event-ID wins over the start_id=0 still in the URL.
            headers = {"Last-Event-ID": str(received[-1])}
            async with stream(client, url, headers=headers) as events:
                while len(received) < total:
                    ev = await events.next()
                    check_event_shape(ev)
                    received.append(int(ev["id"]))
    assert received == published
    assert len(set(received)) == total


async def test_scope_and_run_id_filters(app_state):
    bus = app_state.bus
    await bus.publish("global", "started", {"run_id": "r1"})
    await bus.publish("global", "started", {"run_id": "r2"})
    await bus.publish("chat:1", "job_done", {"conversation_id": 1, "run_id": "r1"})
    await bus.publish("chat:12", "job_done", {"conversation_id": 2, "run_id": "r1"})
    await bus.publish("task:abc", "tick", {"tick": 10})
    last = await bus.publish("global", "finished", {"run_id": "r1"})

    async def scopes_of(query: str) -> list[tuple[str, str]]:
        url = f"/api/analysis/streaming/queue/stream?start_id=0&{query}"
        out = []
        async with stream(client, url) as events:
            while True:
                data = (await events.next())["data"]
                out.append((data["scope"], data["type"]))
                if data["id"] == last or query.startswith("scope=task"):
                    return out

    with anyio.fail_after(10):
        async with serving(app_state) as client:
            assert await scopes_of("scope=global&run_id=r1") == [
                ("global", "started"),
                ("global", "finished"),
            ]
            assert await scopes_of("scope=chat:1,global&scope=chat:12&run_id=r1") == [
                ("global", "started"),
                ("chat:1", "job_done"),
                ("chat:12", "job_done"),
                ("global", "finished"),
            ]
            assert await scopes_of("scope=task:abc") == [("task:abc", "tick")]


async def test_a_named_stream_starts_from_the_oldest_kept_event(app_state):
    bus = app_state.bus
    await bus.publish("global", "elsewhere", {})
    first = await bus.publish("chat:1", "custom_a", {}, stream="custom:stream")
    with anyio.fail_after(10):
        async with serving(app_state) as client:
            url = "/api/analysis/streaming/redis_stream/custom:stream"
            async with stream(client, url) as events:
                a = await events.next()
                second = await bus.publish("chat:1", "custom_b", {}, stream="custom:stream")
                await bus.publish("global", "elsewhere", {})
                b = await events.next()
            async with stream(client, f"{url}?start_id={first}") as events:
                c = await events.next()
            async with stream(client, f"{url}?start_id=$") as events:
                await anyio.sleep(0.1)
                third = await bus.publish("x", "custom_c", {}, stream="custom:stream")
                d = await events.next()
    assert [int(e["id"]) for e in (a, b, c, d)] == [first, second, second, third]
    assert (a["event"], b["event"]) == ("custom_a", "custom_b")


@pytest.mark.parametrize(
    "url",
    [
        "/api/analysis/streaming/queue/stream",
        "/api/analysis/streaming/queue/stream?scope=chat:1",
        "/api/analysis/streaming/redis_stream/task_events:analysis",
    ],
)
async def test_a_client_resuming_after_a_trim_is_told_then_reads_from_the_start(app_state, url):
    """The log was trimmed past the client's Last-Event-ID while it was away: it gets
    `reset {requested_id, first_id}` first, then every kept event from the start, in order;
    reconnecting with the reset's id resumes from there without a second reset."""
    bus = app_state.bus
    ids = [await bus.publish("chat:1", "tick", {"n": n}) for n in range(30)]
    with anyio.fail_after(10):
        async with serving(app_state) as client:
            async with stream(client, f"{url}{'&' if '?' in url else '?'}start_id=0") as events:
                seen = [int((await events.next())["id"]) for _ in range(5)]
            assert seen == ids[:5]
            await app_state.db.write(bus_module.trim, 10)
            kept = ids[-10:]
            async with stream(client, url, headers={"Last-Event-ID": str(seen[-1])}) as events:
                reset = await events.next()
                after = [await events.next() for _ in kept]
                newer = await bus.publish("chat:1", "tick", {"n": 30})
                latest = await events.next()
            assert (reset["event"], reset["data"]) == (
                "reset",
                {"requested_id": ids[4], "first_id": kept[0]},
            )
            assert reset["id"] == str(kept[0] - 1)
            for ev in after:
                check_event_shape(ev)
            assert [int(ev["id"]) for ev in after] == kept
            assert int(latest["id"]) == newer
            async with stream(client, url, headers={"Last-Event-ID": reset["id"]}) as events:
                again = await events.next()
    assert int(again["id"]) == kept[0] and again["event"] == "tick"


async def test_a_position_this_log_never_gave_is_reset_to_its_start(app_state):
    """A Last-Event-ID from another data directory: waiting for ids to reach it would skip
    every event until then."""
    bus = app_state.bus
    ids = [await bus.publish("global", "tick", {"n": n}) for n in range(3)]
    url = "/api/analysis/streaming/queue/stream"
    with anyio.fail_after(10):
        async with (
            serving(app_state) as client,
            stream(client, url, headers={"Last-Event-ID": str(ids[-1] + 500)}) as events,
        ):
            reset = await events.next()
            rest = [int((await events.next())["id"]) for _ in ids]
    assert (reset["event"], reset["data"]) == (
        "reset",
        {"requested_id": ids[-1] + 500, "first_id": ids[0]},
    )
    assert rest == ids


async def test_a_current_position_is_never_reset(app_state):
    bus = app_state.bus
    ids = [await bus.publish("global", "tick", {"n": n}) for n in range(6)]
    await app_state.db.write(bus_module.trim, 3)  # the log starts at ids[3]
    url = "/api/analysis/streaming/queue/stream"
    with anyio.fail_after(10):
        async with serving(app_state) as client:
            for start, expected in [("0", ids[3]), (str(ids[2]), ids[3]), (str(ids[3]), ids[4])]:
                async with stream(client, f"{url}?start_id={start}") as events:
                    first = await events.next()
                assert (first["event"], int(first["id"])) == ("tick", expected), start
            async with stream(client, f"{url}?start_id={ids[-1]}") as events:
                await anyio.sleep(0.1)
                newer = await bus.publish("global", "tick", {})
                assert int((await events.next())["id"]) == newer


async def test_bad_stream_parameters_are_400(app_state):
    with anyio.fail_after(10):
        async with serving(app_state) as client:
            for url, headers in [
                ("/api/analysis/streaming/queue/stream?start_id=1700000000000-0", {}),
                ("/api/analysis/streaming/queue/stream?start_id=-1", {}),
                ("/api/analysis/streaming/queue/stream", {"Last-Event-ID": "abc"}),
                ("/api/analysis/streaming/queue/stream?scope=" + "x" * 201, {}),
                ("/api/metrics/stream?interval=0", {}),
                ("/api/metrics/stream?interval=abc", {}),
            ]:
                r = await client.get(url, headers=headers)
                assert r.status_code == 400, url
                assert r.json()["error"]["code"] == "bad_request"


# ---------------------------------------------------------------------------------------------
# SSE 6 and GET /api/metrics


async def test_metrics_snapshot_and_stream(app_state):
    app_state.metrics.incr("ingest.batches", 2)
    for ms in range(1, 101):
        app_state.metrics.observe("ingest.batch", ms / 1000)
    app_state.metrics.gauge("queue.depth", lambda: 7)
    last = await app_state.bus.publish("global", "e", {})
    with anyio.fail_after(10):
        async with serving(app_state) as client:
            r = await client.get("/api/metrics")
            assert r.status_code == 200
            snap = r.json()
            async with stream(client, "/api/metrics/stream?interval=0.1") as events:
                first, second = await events.next(), await events.next()
    assert snap["counters"] == {"ingest.batches": 2}
    assert snap["gauges"] == {"queue.depth": 7}
    batch = snap["latencies"]["ingest.batch"]
    assert (batch["count"], batch["p50_ms"], batch["p95_ms"], batch["max_ms"]) == (
        100,
        50.0,
        95.0,
        100.0,
    )
    assert snap["event_log"]["last_id"] == last
    assert snap["hub"]["subscribers"]["total"] == 0
    assert snap["sse"]["open_streams"] == 0
    assert (first["event"], first["id"], second["id"]) == ("metrics", "1", "2")
    assert first["data"]["counters"] == {"ingest.batches": 2}
    assert first["data"]["sse"]["open_streams"] == 1


def test_latency_window_forgets_old_samples_and_broken_gauges_read_none():
    now = [0.0]
    m = Metrics(window_seconds=10, clock=lambda: now[0])
    m.observe("x", 1.0)
    now[0] = 5.0
    m.observe("x", 3.0)
    m.gauge("broken", lambda: 1 / 0)
    m.gauge("gone", 1)
    m.gauge("gone", None)
    snap = m.snapshot()
    assert snap["latencies"]["x"]["count"] == 2 and snap["latencies"]["x"]["p50_ms"] == 1000.0
    assert snap["gauges"] == {"broken": None}
    now[0] = 12.0
    x = m.snapshot()["latencies"]["x"]
    assert (x["count"], x["total"], x["p50_ms"], x["lifetime_mean_ms"]) == (1, 2, 3000.0, 2000.0)
    with m.timer("t"):
        pass
    assert m.snapshot()["latencies"]["t"]["count"] == 1


def test_the_process_registry_is_reachable_through_module_functions():
    metrics_module.incr("test.module_functions")
    metrics_module.observe("test.module_latency", 0.001)
    assert metrics_module.snapshot()["counters"]["test.module_functions"] >= 1
    assert metrics_module.REGISTRY.counter("test.module_functions") >= 1


# ---------------------------------------------------------------------------------------------
# The SSE response itself, called as an ASGI app


def test_event_wire_format():
    ev = sse.ServerSentEvent(id=7, event="update", data={"text": "a\nb\r\nc"}, retry=1500)
    assert sse.encode_event(ev) == (
        b'id: 7\nevent: update\ndata: {"text":"a\\nb\\r\\nc"}\nretry: 1500\n\n'
    )
    assert sse.encode_event(sse.ServerSentEvent(retry=100)) == b"retry: 100\n\n"
    assert sse.encode_event(sse.ServerSentEvent(event="ready")) == b"event: ready\ndata: null\n\n"
    assert sse.encode_event(sse.ServerSentEvent(comment="hi")) == b": hi\n\n"
    for bad in ({"id": "1\n2"}, {"event": "a\rb"}):
        with pytest.raises(ValueError):
            sse.encode_event(sse.ServerSentEvent(**bad))


async def call(
    response: sse.EventSourceResponse,
    *,
    send: Callable[[dict[str, Any]], Any] | None = None,
    disconnect: anyio.Event | None = None,
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    gone = disconnect or anyio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def record(message: dict[str, Any]) -> None:
        sent.append(message)
        if send is not None:
            await send(message)

    await response({"type": "http"}, receive, record)
    return sent


def body(sent: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def test_a_failing_generator_ends_with_an_error_event_that_hides_the_exception_text():
    async def content() -> AsyncIterator[sse.ServerSentEvent]:
        yield sse.ServerSentEvent(event="initial", data={})
        raise RuntimeError("Ann said something private")

    response = sse.EventSourceResponse(content(), heartbeat_seconds=None, retry_ms=2000)
    with structlog.testing.capture_logs() as logs, anyio.fail_after(5):
        sent = await call(response)
    assert body(sent) == (
        b"retry: 2000\n\n"
        b"event: initial\ndata: {}\n\n"
        b'event: error\ndata: {"code":"internal","message":"internal error"}\n\n'
    )
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert [e["event"] for e in logs] == ["sse_stream_failed"]
    assert "private" not in repr(logs)
    assert response.ended_by == "stream"


async def test_a_chatstats_error_in_the_generator_is_shown_with_its_code():
    async def content() -> AsyncIterator[sse.ServerSentEvent]:
        raise NotFound("no chat 5")
        yield  # pragma: no cover

    with anyio.fail_after(5):
        sent = await call(sse.EventSourceResponse(content(), heartbeat_seconds=None))
    assert body(sent) == b'event: error\ndata: {"code":"not_found","message":"no chat 5"}\n\n'


async def test_disconnect_cancels_a_blocked_generator_and_runs_its_cleanup():
    cleaned = anyio.Event()

    async def content() -> AsyncIterator[sse.ServerSentEvent]:
        try:
            yield sse.ServerSentEvent(event="ready", data={})
            await anyio.sleep_forever()
        finally:
            cleaned.set()

    disconnect = anyio.Event()
    response = sse.EventSourceResponse(content(), heartbeat_seconds=None)

    async def on_send(message: dict[str, Any]) -> None:
        if b"ready" in message.get("body", b""):
            disconnect.set()

    with anyio.fail_after(5):
        sent = await call(response, send=on_send, disconnect=disconnect)
    assert cleaned.is_set()
    assert response.ended_by == "disconnect"
    assert sent[-1]["more_body"] is True  # nothing more is sent to a client that left


async def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout():
    async def content() -> AsyncIterator[sse.ServerSentEvent]:
        while True:
            yield sse.ServerSentEvent(event="tick", data={})
            await anyio.sleep(0.01)

    stalled = anyio.Event()

    async def on_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            await stalled.wait()  # a full socket buffer: never drains

    response = sse.EventSourceResponse(content(), heartbeat_seconds=0.05, send_timeout=0.2)
    began = time.monotonic()
    with anyio.fail_after(5):
        await call(response, send=on_send)
    assert response.ended_by == "client_gone"
    assert time.monotonic() - began < 2.0


async def test_an_early_generator_that_never_started_is_closed_without_error():
    started = False

    async def content() -> AsyncIterator[sse.ServerSentEvent]:
        nonlocal started
        started = True
        yield sse.ServerSentEvent(event="x", data={})

    shutdown = anyio.Event()
    shutdown.set()
    response = sse.EventSourceResponse(content(), heartbeat_seconds=None, shutdown=shutdown)
    with anyio.fail_after(5):
        await call(response)
    assert response.ended_by in ("shutdown", "stream")


# ---------------------------------------------------------------------------------------------
# Live streams' bookkeeping, driven directly


async def collect(gen: AsyncIterator[sse.ServerSentEvent], n: int) -> list[sse.ServerSentEvent]:
    out = []
    async for ev in gen:
        out.append(ev)
        if len(out) == n:
            break
    return out


async def test_updates_already_covered_by_initial_are_dropped_but_changes_pass():
    hub = MessageHub()
    initial_items = [{"id": 5, "text": "five"}, {"id": 4, "text": "four"}]

    async def initial() -> tuple[list[dict[str, Any]], str | None]:
        # Published between the subscription and the end of the read: id 5 is in `initial`
        # (so a repeat, even in another shape), id 6 is new.
        hub.publish_chats([{"id": 5, "text": "five", "shape": "other"}, {"id": 6, "text": "six"}])
        return initial_items, None

    gen = feeds._follow(hub.subscribe_chats, initial, "chats", feeds.Chat, feeds.chat_json, {})
    with anyio.fail_after(5):
        first = await collect(gen, 3)
        assert [e.event for e in first] == ["initial", "ready", "update"]
        assert first[2].data == {"chats": [{"id": 6, "text": "six"}]}
        hub.publish_chats([{"id": 6, "text": "six"}, {"id": 4, "text": "four"}])  # both repeats
        hub.publish_chats([{"id": 4, "text": "four, edited"}])  # a change: passes
        (update,) = await collect(gen, 1)
    assert update.data == {"chats": [{"id": 4, "text": "four, edited"}]}
    assert update.id == 4
    await gen.aclose()
    assert hub.subscriber_count() == 0


async def test_a_client_whose_inbox_overflowed_gets_lagged_and_is_closed():
    hub = MessageHub(queue_size=2)

    async def initial() -> tuple[list[dict[str, Any]], str | None]:
        return [], None

    gen = feeds._follow(
        hub.subscribe_contacts, initial, "contacts", feeds.Contact, feeds.contact_json, {}
    )
    with anyio.fail_after(5):
        assert [e.event for e in await collect(gen, 2)] == ["initial", "ready"]
        for n in range(5):
            hub.publish_contacts([{"id": n}])
        rest = [ev async for ev in gen]
    assert [e.event for e in rest] == ["error"]
    assert rest[0].data["code"] == "lagged"
    assert hub.subscriber_count() == 0
