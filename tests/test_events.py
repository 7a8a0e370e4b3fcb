"""The EventBus: events commit with their data, readers block and wake, filters run in SQL."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from chatstats.db import Database, connect
from chatstats.events import bus as bus_module
from chatstats.events.bus import DEFAULT_STREAM, Event, EventBus, Reset, append, trim

pytestmark = pytest.mark.anyio


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "chatstats.db")
    await database.open()
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def bus(db: Database) -> EventBus:
    # No fallback poll: a test that wakes proves `notify` woke it.
    return EventBus(db, poll_seconds=None)


def count(db: Database) -> int:
    conn = connect(db.path, write=False)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


async def test_publish_returns_increasing_ids_and_read_returns_them_in_order(bus):
    ids = [await bus.publish("global", "seeded", {"total": n}) for n in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    with anyio.fail_after(5):
        events = await bus.read(0)
    assert [e.id for e in events] == ids
    first = events[0]
    assert isinstance(first, Event)
    assert (first.stream, first.scope, first.type, first.data) == (
        DEFAULT_STREAM,
        "global",
        "seeded",
        {"total": 0},
    )
    assert first.run_id is None and first.created_ns > 0
    assert await bus.last_id() == ids[-1]
    assert await bus.first_id() == ids[0]
    with anyio.fail_after(5):
        assert [e.id for e in await bus.read(ids[1], limit=2)] == ids[2:4]


async def test_an_empty_log_has_last_id_zero(bus):
    assert await bus.last_id() == 0
    assert await bus.first_id() == 0


async def test_read_blocks_until_a_publish_wakes_it(bus):
    before = await bus.publish("global", "old", {})
    got: list[Event] = []

    async def reader() -> None:
        got.extend(await bus.read(before))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.sleep(0.1)
            assert got == []  # still blocked: nothing new yet
            began = time.monotonic()
            new = await bus.publish("global", "new", {"n": 1})
        assert time.monotonic() - began < 1.0
    assert [e.id for e in got] == [new]


async def test_read_times_out_with_an_empty_list(bus):
    await bus.publish("global", "old", {})
    last = await bus.last_id()
    began = time.monotonic()
    with anyio.fail_after(5):
        assert await bus.read(last, timeout=0.2) == []
    assert 0.15 < time.monotonic() - began < 2.0


async def test_a_zero_timeout_still_returns_what_is_there(bus):
    event_id = await bus.publish("global", "there", {})
    with anyio.fail_after(5):
        assert [e.id for e in await bus.read(0, timeout=0)] == [event_id]
        assert await bus.read(event_id, timeout=0) == []


async def test_an_event_appended_in_a_write_transaction_is_seen_after_notify(db, bus):
    def work(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO contacts (id, name) VALUES (1, 'x')")
        return append(conn, scope="chat:1", type="job_done", data={"conversation_id": 7})

    got: list[Event] = []

    async def reader() -> None:
        got.extend(await bus.read(0))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.sleep(0.05)
            event_id = await bus.write(work)
    assert [(e.id, e.scope, e.data) for e in got] == [(event_id, "chat:1", {"conversation_id": 7})]


async def test_an_event_in_a_rolled_back_transaction_leaves_nothing(db, bus):
    def fails(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO contacts (id, name) VALUES (1, 'x')")
        append(conn, scope="global", type="finished", data={"run_id": "r"})
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await db.write(fails)
    assert count(db) == 0
    assert await bus.last_id() == 0
    with anyio.fail_after(5):
        assert await bus.read(0, timeout=0.05) == []
    # The id is not burnt either: the next event gets the first id.
    assert await bus.publish("global", "next", {}) == 1


async def test_filters_by_stream_scope_and_run_id(bus):
    await bus.publish("global", "started", {"run_id": "r1"})
    await bus.publish("global", "started", {"run_id": "r2"})
    await bus.publish("chat:1", "job_done", {"conversation_id": 1})
    await bus.publish("chat:12", "job_done", {"conversation_id": 2})
    await bus.publish("task:abc", "tick", {"tick": 50}, run_id="r1")
    await bus.publish("chat:1", "other_stream", {}, stream="custom")

    async def types(**kw) -> list[tuple[str, str]]:
        with anyio.fail_after(5):
            return [(e.scope, e.type) for e in await bus.read(0, timeout=0.05, **kw)]

    assert await types(scopes="chat:1") == [
        ("chat:1", "job_done"),
        ("chat:1", "other_stream"),
    ]
    assert await types(stream=DEFAULT_STREAM, scopes="chat:1") == [("chat:1", "job_done")]
    assert await types(stream="custom") == [("chat:1", "other_stream")]
    assert await types(scopes=["chat:12", "task:abc"]) == [
        ("chat:12", "job_done"),
        ("task:abc", "tick"),
    ]
    # run_id comes from the argument or, for the seeds' habit, from data["run_id"].
    assert await types(run_id="r1") == [("global", "started"), ("task:abc", "tick")]
    assert await types(scopes="global", run_id="r2") == [("global", "started")]
    assert await types(scopes="chat:") == []
    assert await types(scopes=[]) == await types()  # no scopes given: no scope filter


async def test_a_filtered_reader_sleeps_through_events_it_does_not_want(bus):
    got: list[Event] = []

    async def reader() -> None:
        got.extend(await bus.read(0, scopes="chat:2"))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            for n in range(20):
                await bus.publish("chat:1", "noise", {"n": n})
            await anyio.sleep(0.05)
            assert got == []
            wanted = await bus.publish("chat:2", "wanted", {})
    assert [e.id for e in got] == [wanted]


async def test_notify_threadsafe_wakes_a_reader_from_a_worker_thread(db, bus):
    got: list[Event] = []

    async def reader() -> None:
        got.extend(await bus.read(0))

    def commit_in_thread() -> None:
        conn = connect(db.path, write=True)
        try:
            conn.execute("BEGIN IMMEDIATE")
            append(conn, scope="historic", type="run_started", data={"task_id": "t"})
            conn.execute("COMMIT")
        finally:
            conn.close()
        bus.notify_threadsafe()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.sleep(0.05)
            thread = threading.Thread(target=commit_in_thread)
            thread.start()
            await anyio.to_thread.run_sync(thread.join)
    assert [e.type for e in got] == ["run_started"]


async def test_the_fallback_poll_sees_commits_nobody_announced(db):
    polling = EventBus(db, poll_seconds=0.05)
    got: list[Event] = []

    async def reader() -> None:
        got.extend(await polling.read(0))

    def commit_elsewhere() -> None:  # another process, e.g. a CLI command: no notify
        conn = connect(db.path, write=True)
        try:
            append(conn, scope="global", type="from_cli", data={})
        finally:
            conn.close()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.sleep(0.05)
            await anyio.to_thread.run_sync(commit_elsewhere)
    assert [e.type for e in got] == ["from_cli"]


async def test_notify_without_readers_and_threadsafe_before_any_read_are_harmless(bus):
    bus.notify()
    bus.notify_threadsafe()
    assert bus.notifications == 1


async def test_trim_keeps_the_newest(db, bus):
    ids = [await bus.publish("global", "e", {"n": n}) for n in range(10)]
    assert await db.write(trim, 4) == 6
    with anyio.fail_after(5):
        assert [e.id for e in await bus.read(0)] == ids[-4:]
    assert await db.write(trim, 4) == 0
    assert await bus.first_id() == ids[-4]
    # Ids keep growing after a trim (AUTOINCREMENT never reuses one).
    assert await bus.publish("global", "e", {}) == ids[-1] + 1


async def test_a_follower_that_falls_behind_a_trim_is_told_then_goes_on_from_the_start(db, bus):
    ids = [await bus.publish("global", "e", {"n": n}) for n in range(10)]
    got: list[Any] = []
    with anyio.fail_after(5):
        follower = bus.follow(0, limit=2)
        got += [await anext(follower), await anext(follower)]
        await db.write(trim, 3)  # while the follower is at ids[1]
        got += [await anext(follower) for _ in range(4)]
        await follower.aclose()
    assert [e.id for e in got[:2]] == ids[:2]
    assert got[2] == Reset(requested_id=ids[1], first_id=ids[-3])
    assert [e.id for e in got[3:]] == ids[-3:]


async def test_follow_resets_a_position_past_every_id_given_even_on_an_empty_log(db, bus):
    with anyio.fail_after(5):
        follower = bus.follow(7)
        assert await anext(follower) == Reset(requested_id=7, first_id=1)
        first = await bus.publish("global", "e", {})
        assert (await anext(follower)).id == first == 1
        await follower.aclose()
    await db.write(trim, 0)  # everything trimmed: the log will start at the next id
    with anyio.fail_after(5):
        follower = bus.follow(1)
        later = await bus.publish("global", "e", {})
        assert (await anext(follower)).id == later  # nothing lost: 1 was the last one
        await follower.aclose()
        follower = bus.follow(0)
        assert (await anext(follower)).id == later
        await follower.aclose()


async def test_append_trims_every_so_often(db, bus, monkeypatch):
    monkeypatch.setattr(bus_module, "TRIM_EVERY", 5)
    monkeypatch.setattr(bus_module, "MAX_EVENTS", 3)
    for n in range(12):
        await bus.publish("global", "e", {"n": n})
    # Trimmed at ids 5 and 10 to the newest 3, then ids 11 and 12 were added.
    assert count(db) == 5
    assert await bus.first_id() == 8


async def test_bad_events_are_refused(db):
    with pytest.raises(TypeError):
        not_a_mapping: Any = [1, 2]
        await db.write(lambda c: append(c, scope="global", type="t", data=not_a_mapping))
    with pytest.raises(ValueError):
        await db.write(lambda c: append(c, scope="", type="t", data={}))
    assert count(db) == 0


async def test_run_id_is_stored_as_text(bus):
    await bus.publish("global", "finished", {"run_id": 42})
    with anyio.fail_after(5):
        (event,) = await bus.read(0, run_id=42)
    assert event.run_id == "42"
    assert event.data == {"run_id": 42}
