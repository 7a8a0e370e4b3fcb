"""Live sync end to end: a real writer process, a real chat.db in WAL mode, the daemon
over loopback HTTP, and the SSE streams a UI reads.

The writer is `chatstats.sample.correspondent` (Messages.app-like short transactions) in a
separate process; it reports each GUID it wrote, and every one must reach the stream once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from chatstats.config import Settings
from chatstats.daemon import serve
from chatstats.sample.generate import make_library
from tests import daemon_proc

pytestmark = pytest.mark.anyio
TOKEN = "live-test-token"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("live-lib")
    make_library(root, messages=600, seed=21)
    return root


@pytest.fixture
def lib(sample: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "lib"
    shutil.copytree(sample, dst)
    return dst


def settings_for(lib: Path, data: Path) -> Settings:
    return Settings(
        data_dir=str(data),
        source=str(lib / "chat.db"),
        addressbook=str(lib / "AddressBook"),
        port=0,
        token=TOKEN,
        heartbeat_seconds=0.5,
    )


@asynccontextmanager
async def daemon(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The daemon in this loop; yields a client once the import is done and the tail runs."""
    ready: list[dict[str, Any]] = []
    got = anyio.Event()
    shutdown = anyio.Event()

    def on_ready(info: dict[str, Any]) -> None:
        ready.append(info)
        got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(serve, settings, ready=on_ready, shutdown=shutdown))
        with anyio.fail_after(15):
            await got.wait()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=ready[0]["url"], headers=headers) as client:
            with anyio.fail_after(20):
                while True:
                    health = (await client.get("/api/health")).json()
                    if health["live"] and health["live"]["state"] == "ok":
                        break
                    await anyio.sleep(0.05)
            yield client
        shutdown.set()


def busiest_one_to_one(lib: Path) -> str:
    """The chat the correspondent writes into (its own choice, repeated here)."""
    conn = sqlite3.connect(lib / "chat.db")
    guid = conn.execute(
        "SELECT c.guid FROM chat_message_join j JOIN chat c ON c.ROWID = j.chat_id"
        " WHERE c.style = 45 GROUP BY j.chat_id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()[0]
    conn.close()
    return guid


async def chat_id_of(client: httpx.AsyncClient, guid: str) -> int:
    chats = (await client.get("/api/chats", params={"limit": 500})).json()
    return next(c["id"] for c in chats if c["guid"] == guid)


class Stream:
    """Collects the SSE events of one stream in the background."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.changed = anyio.Event()

    async def read(self, client: httpx.AsyncClient, path: str) -> None:
        async with client.stream("GET", path, timeout=None) as response:
            assert response.status_code == 200
            event, data = "message", []
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    self.events.append((event, json.loads("\n".join(data))))
                    event, data = "message", []
                    self.changed.set()
                    self.changed = anyio.Event()

    def messages(self, kind: str = "update") -> list[dict[str, Any]]:
        out = []
        for event, data in self.events:
            if event == kind:
                out.extend(data["messages"])
        return out


WRITER = r"""
import json, sqlite3, sys, time
from pathlib import Path
from chatstats.sample.correspondent import Correspondent
db = Path(sys.argv[1])
plan = sys.argv[2]
who = Correspondent(db, seed=5)
def note(kind, guid):
    print(json.dumps({"kind": kind, "guid": guid}), flush=True)
def receive(n):
    for _ in range(n):
        _r, g = who.receive(); note("new", g); time.sleep(0.02)
if plan == "full":
    receive(5)
    _r, mine = who.reply(); note("new", mine)
    who.edit(); note("edited", mine)
    # A checkpoint resets the WAL: the next commits rewrite it from its start.
    c = sqlite3.connect(db); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close()
    receive(5)
    _r, gone = who.reply(); note("new", gone)
    who.unsend(); note("unsent", gone)
    receive(3)
elif plan == "locked":
    receive(3)
    # Someone holds chat.db exclusively for a while: readers get SQLITE_BUSY meanwhile.
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    import os; os.utime(db)  # a change the tail notices, so it tries to read meanwhile
    time.sleep(1.5)
    holder.execute("COMMIT"); holder.close()
    receive(3)
else:
    receive(int(plan))
who.close()
"""


def write(lib: Path, plan: str) -> list[dict[str, str]]:
    out = subprocess.run(
        [sys.executable, "-c", WRITER, str(lib / "chat.db"), plan],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


async def wait_until(predicate, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(seconds):
        while not predicate():
            await anyio.sleep(0.05)


async def test_every_message_arrives_once_with_edits_and_unsends(lib: Path, tmp_path: Path):
    guid = busiest_one_to_one(lib)
    async with daemon(settings_for(lib, tmp_path / "data")) as client:
        chat_id = await chat_id_of(client, guid)
        stream = Stream()
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream.read, client, f"/api/live-sync/stream/chat/{chat_id}/messages")
            await wait_until(lambda: any(e == "ready" for e, _ in stream.events))
            notes = await anyio.to_thread.run_sync(write, lib, "full")
            new = [n["guid"] for n in notes if n["kind"] == "new"]
            edited = next(n["guid"] for n in notes if n["kind"] == "edited")
            unsent = next(n["guid"] for n in notes if n["kind"] == "unsent")

            def seen(g: str, **flags: bool) -> bool:
                return any(
                    m["guid"] == g and all(m[k] == v for k, v in flags.items())
                    for m in stream.messages()
                )

            await wait_until(
                lambda: (
                    all(seen(g) for g in new)
                    and seen(edited, edited=True)
                    and seen(unsent, unsent=True)
                )
            )
            tg.cancel_scope.cancel()
        updates = stream.messages()
        # Each message arrives once as new; later appearances only carry real changes.
        firsts: dict[str, dict[str, Any]] = {}
        for m in updates:
            previous = firsts.get(m["guid"])
            assert previous != m, "the same message was sent twice unchanged"
            firsts[m["guid"]] = m
        assert set(new) <= set(firsts)
        assert [e for e, _ in stream.events][:2] == ["initial", "ready"]
        final = {m["guid"]: m for m in (await client.get(f"/api/chats/{chat_id}/messages")).json()}
        assert final[unsent]["unsent"] and final[unsent]["text"] == ""
        assert final[edited]["edited"]
        health = (await client.get("/api/health")).json()
        assert health["live"]["state"] == "ok"


async def test_a_locked_chat_db_is_waited_out_and_loses_nothing(lib: Path, tmp_path: Path):
    """In WAL mode a writer cannot lock our reader out; a rollback-journal chat.db (older
    copies, backups) can be held exclusively. The tail reports `waiting`, then catches up."""
    conn = sqlite3.connect(lib / "chat.db")
    assert conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    conn.close()
    guid = busiest_one_to_one(lib)
    async with daemon(settings_for(lib, tmp_path / "data")) as client:
        chat_id = await chat_id_of(client, guid)
        states: set[str] = set()

        async def watch() -> None:
            while True:
                states.add((await client.get("/api/health")).json()["live"]["state"])
                await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            notes = await anyio.to_thread.run_sync(write, lib, "locked")
            wanted = {n["guid"] for n in notes}

            async def have() -> set[str]:
                page = (await client.get(f"/api/chats/{chat_id}/messages")).json()
                return {m["guid"] for m in page}

            with anyio.fail_after(20):
                while not wanted <= await have():
                    await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
        assert "waiting" in states
        assert (await client.get("/api/health")).json()["live"]["state"] == "ok"


async def test_restart_in_the_middle_loses_and_duplicates_nothing(lib: Path, tmp_path: Path):
    data = tmp_path / "data"
    guid = busiest_one_to_one(lib)
    async with daemon(settings_for(lib, data)) as client:
        chat_id = await chat_id_of(client, guid)
        first = await anyio.to_thread.run_sync(write, lib, "4")
        await anyio.sleep(0.5)
    during = await anyio.to_thread.run_sync(write, lib, "4")  # the daemon is down
    async with daemon(settings_for(lib, data)) as client:
        after = await anyio.to_thread.run_sync(write, lib, "4")
        wanted = [n["guid"] for n in first + during + after]

        async def page() -> list[str]:
            return [m["guid"] for m in (await client.get(f"/api/chats/{chat_id}/messages")).json()]

        with anyio.fail_after(20):
            while not set(wanted) <= set(await page()):
                await anyio.sleep(0.1)
        got = await page()
        assert all(got.count(g) == 1 for g in wanted)
    conn = sqlite3.connect(data / "chatstats.db")
    dupes = conn.execute("SELECT count(*) - count(DISTINCT guid) FROM messages").fetchone()[0]
    assert dupes == 0


KILL_WRITER = r"""
import json, sys, time
from pathlib import Path
from chatstats.sample.correspondent import Correspondent
who = Correspondent(Path(sys.argv[1]), seed=9)
for _ in range(int(sys.argv[2])):
    _r, g = who.receive()
    print(json.dumps({"guid": g}), flush=True)
    time.sleep(0.03)
who.close()
"""


def test_kill_9_during_live_sync_loses_nothing_and_misses_no_seal(lib: Path, tmp_path: Path):
    """SIGKILL the daemon twice while a writer keeps writing; restart; every message is there
    once, and a conversation that was already due is sealed (once) after the restart."""
    data = tmp_path / "data"
    from chatstats.sample.writer import MessagesWriter

    writer = subprocess.Popen(
        [sys.executable, "-c", KILL_WRITER, str(lib / "chat.db"), "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    for n, delay in enumerate((1.5, 1.0)):
        proc = daemon_proc.serve(lib, data, token=TOKEN)
        if n > 0:
            time.sleep(delay)
        else:
            # Once the tail runs (so the startup import cannot file it as history), a message
            # arrives dated 100 minutes ago in a new chat: its conversation is due at once,
            # and the kill may land before or after the sealer gets to it.
            health = daemon_proc.wait_live(daemon_proc.ready(proc)["url"], TOKEN)
            assert health["live"]["state"] == "ok"
            w = MessagesWriter(lib / "chat.db", create=False)
            h = w.handle("+15557770000")
            chat = w.chat([h])
            _r, old_guid = w.message(
                chat, "earlier", from_me=False, sender=h, date=time.time_ns() - 100 * 60 * 10**9
            )
            w.close()
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert writer.stdout is not None
    guids = [json.loads(line)["guid"] for line in writer.stdout]
    writer.wait(timeout=60)
    proc = daemon_proc.serve(lib, data, token=TOKEN)
    try:
        base = daemon_proc.ready(proc)["url"]
        deadline = time.monotonic() + 30
        conn = sqlite3.connect(data / "chatstats.db")
        while time.monotonic() < deadline:
            have = {
                g
                for (g,) in conn.execute(
                    "SELECT guid FROM messages WHERE guid IN (SELECT value FROM json_each(?))",
                    (json.dumps([*guids, old_guid]),),
                )
            }
            sealed = conn.execute(
                "SELECT c.sealed FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                " WHERE m.guid = ?",
                (old_guid,),
            ).fetchone()
            if have == {*guids, old_guid} and sealed and sealed[0] == 1:
                break
            time.sleep(0.2)
        assert have == {*guids, old_guid}
        assert sealed == (1,)
        dupes = conn.execute("SELECT count(*) - count(DISTINCT guid) FROM messages").fetchone()[0]
        assert dupes == 0
        cid = conn.execute(
            "SELECT conversation_id FROM messages WHERE guid = ?", (old_guid,)
        ).fetchone()[0]
        seals = conn.execute(
            "SELECT count(*) FROM events WHERE type = 'conversation_sealed'"
            " AND json_extract(data, '$.conversation_id') = ?",
            (cid,),
        ).fetchone()[0]
        assert seals == 1
        while time.monotonic() < deadline:  # the tail starts once the startup import is in
            live = httpx.get(f"{base}/api/health").json()["live"]
            if live and live["state"] == "ok":
                break
            time.sleep(0.1)
        assert live and live["state"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


async def test_a_replaced_or_briefly_missing_chat_db_is_followed(lib: Path, tmp_path: Path):
    """Messages.app (or a restore) can swap chat.db for a new file: a watcher bound to the old
    inode would go deaf. The tail re-opens by path and keeps going; GUIDs keep it exact."""
    guid = busiest_one_to_one(lib)
    db = lib / "chat.db"
    async with daemon(settings_for(lib, tmp_path / "data")) as client:
        chat_id = await chat_id_of(client, guid)
        # Missing for a moment: the tail waits and says so.
        moved = tmp_path / "aside.db"
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{db}{suffix}").exists():
                os.replace(f"{db}{suffix}", f"{moved}{suffix}")
        with anyio.fail_after(10):
            while (await client.get("/api/health")).json()["live"]["state"] != "waiting":
                await anyio.sleep(0.05)
        # Back as a different file (new inode) holding one more message.
        fresh = tmp_path / "fresh.db"
        src = sqlite3.connect(moved)
        dst = sqlite3.connect(fresh)
        src.backup(dst)
        src.close()
        dst.close()
        from chatstats.sample.writer import MessagesWriter

        w = MessagesWriter(fresh, create=False)
        chat = w.find_chat(guid)
        assert chat is not None
        _r, new_guid = w.message(
            chat,
            "after the swap",
            from_me=False,
            sender=w.chats[chat].handles[0],
            date=time.time_ns(),
        )
        w.close()
        os.replace(fresh, db)
        with anyio.fail_after(20):
            while True:
                page = (await client.get(f"/api/chats/{chat_id}/messages")).json()
                if any(m["guid"] == new_guid for m in page):
                    break
                await anyio.sleep(0.1)
        health = (await client.get("/api/health")).json()
        assert health["live"]["state"] == "ok"
        guids = [m["guid"] for m in page]
        assert len(guids) == len(set(guids))


def test_sidecar_exits_when_its_parent_dies(lib: Path, tmp_path: Path):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc = daemon_proc.serve(
        lib, tmp_path / "data", token=TOKEN, env={"CHATSTATS_PARENT_PID": str(parent.pid)}
    )
    try:
        daemon_proc.ready(proc)
        parent.kill()
        parent.wait()
        began = time.monotonic()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - began < 5
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_an_unexpected_failure_in_a_batch_is_retried_not_fatal(
    lib: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A bug in one batch must not take the daemon down: the batch rolls back, the tail says
    `waiting`, and once the cause is gone the messages arrive."""
    from chatstats.ingest import batch

    real = batch.Ingest.add_messages
    failures = {"left": 3}

    def flaky(self, chunk):  # type: ignore[no-untyped-def]
        if chunk and failures["left"] > 0:
            failures["left"] -= 1
            raise ValueError("simulated bug")
        return real(self, chunk)

    guid = busiest_one_to_one(lib)
    async with daemon(settings_for(lib, tmp_path / "data")) as client:
        chat_id = await chat_id_of(client, guid)
        monkeypatch.setattr(batch.Ingest, "add_messages", flaky)
        notes = await anyio.to_thread.run_sync(write, lib, "3")
        wanted = {n["guid"] for n in notes}
        with anyio.fail_after(20):
            while True:
                page = (await client.get(f"/api/chats/{chat_id}/messages")).json()
                if wanted <= {m["guid"] for m in page}:
                    break
                await anyio.sleep(0.1)
        assert failures["left"] == 0
        assert (await client.get("/api/health")).json()["live"]["state"] == "ok"


def test_the_ready_line_is_the_first_line_on_stdout(lib: Path, tmp_path: Path):
    """A launcher may read only the first line: start-up logs (a new token, say) follow it."""
    proc = daemon_proc.serve(lib, tmp_path / "data", token=None)  # it makes a token
    try:
        first = daemon_proc.ready(proc)
        assert first["event"] == "ready" and first["port"] > 0
        assert proc.stdout is not None
        second = json.loads(proc.stdout.readline())
        assert second["event"] != "ready"  # the held start-up logs come after it
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


async def test_an_attachment_of_a_message_not_yet_synced_waits_for_it(
    lib: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A message with a photo can commit between the tail reading messages and reading
    attachments. The attachment must not be stored unlinked (and its watermark passed): it
    waits for the next sync, which brings its message too."""
    from chatstats.db import Database
    from chatstats.imessage import chatdb
    from chatstats.ingest.importer import run_import
    from chatstats.ingest.live import LiveTail
    from chatstats.sample.writer import AttachmentSpec, MessagesWriter

    data = tmp_path / "app.db"
    await anyio.to_thread.run_sync(run_import, data, lib / "chat.db", None)
    written: list[str] = []
    real = chatdb.Reader.attachment_chunks

    def sneak_in(self, *a, **kw):  # type: ignore[no-untyped-def]
        if not written:
            w = MessagesWriter(lib / "chat.db", create=False)
            chat = next(c for c, info in w.chats.items() if info.handles)
            photo = AttachmentSpec("IMG_0001.HEIC", "image/heic", "public.heic", 123_456)
            _r, guid = w.message(chat, None, from_me=True, date=time.time_ns(), attachments=[photo])
            w.close()
            written.append(guid)
        return real(self, *a, **kw)

    monkeypatch.setattr(chatdb.Reader, "attachment_chunks", sneak_in)
    db = Database(data)
    await db.open()
    try:
        tail = LiveTail(db, lib / "chat.db")
        await tail.sync(full=True)  # the photo message commits mid-sync
        await tail.sync()  # the next sync brings message and attachment together
    finally:
        db.close()
    conn = sqlite3.connect(data)
    rows = conn.execute(
        "SELECT a.transfer_name, a.message_id IS NOT NULL FROM attachments a"
        " JOIN messages m ON m.id = a.message_id WHERE m.guid = ?",
        written,
    ).fetchall()
    assert rows == [("IMG_0001.HEIC", 1)]
    assert (
        conn.execute(
            "SELECT count(*) FROM attachments WHERE message_id IS NULL"
            " AND transfer_name = 'IMG_0001.HEIC'"
        ).fetchone()[0]
        == 0
    )


async def test_a_commit_the_watcher_never_reported_is_caught_by_the_slower_watched_checks(
    lib: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With a healthy watcher the tail's own checks slow down (idle CPU), but they remain:
    a commit whose file event was dropped is still ingested. The watcher here says it is
    watching and never reports anything; the slow check is shortened so the test is quick."""
    from chatstats.db import Database
    from chatstats.ingest import live
    from chatstats.ingest import watch as watch_module
    from chatstats.ingest.importer import run_import
    from chatstats.sample.writer import MessagesWriter

    async def deaf(folder, names, on_change, stop, started=lambda _k: None):  # type: ignore[no-untyped-def]
        started("inotify")
        await stop.wait()
        return "inotify"

    monkeypatch.setattr(watch_module, "watch", deaf)
    monkeypatch.setattr(live, "WATCHED_POLL_SECONDS", 0.05)
    data = tmp_path / "app.db"
    await anyio.to_thread.run_sync(run_import, data, lib / "chat.db", None)
    db = Database(data)
    await db.open()
    stop = anyio.Event()
    try:
        tail = live.LiveTail(db, lib / "chat.db", poll_interval=0.01)
        async with anyio.create_task_group() as tg:
            tg.start_soon(tail.run, stop)
            with anyio.fail_after(10):
                while not (tail.watching and tail.status.state == "ok"):
                    await anyio.sleep(0.01)
            w = MessagesWriter(lib / "chat.db", create=False)
            chat = next(c for c, info in w.chats.items() if info.handles)
            _rowid, guid = w.message(chat, "unreported", from_me=True, date=time.time_ns())
            w.close()

            def ingested() -> bool:
                conn = sqlite3.connect(data)
                try:
                    q = "SELECT count(*) FROM messages WHERE guid = ?"
                    return bool(conn.execute(q, (guid,)).fetchone()[0])
                finally:
                    conn.close()

            with anyio.fail_after(10):
                while not await anyio.to_thread.run_sync(ingested):
                    await anyio.sleep(0.05)
            assert tail.watching  # caught by the watched-mode check, not by a fallback to polling
            stop.set()
    finally:
        db.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
async def test_the_inotify_watcher_reports_a_touch_of_chat_db(tmp_path: Path):
    """A touch changes the stat fingerprint the tail compares, so the watcher reports it too:
    with a watcher working the tail's own stat check is slow (a lock held after a touch
    would otherwise go unseen until it ends). Other files in the folder stay silent."""
    from chatstats.ingest.watch import InotifyWatcher

    (tmp_path / "chat.db").write_bytes(b"")
    (tmp_path / "other").write_bytes(b"")
    woken = anyio.Event()
    calls: list[int] = []

    def on_change() -> None:
        calls.append(1)
        woken.set()

    watcher = InotifyWatcher(tmp_path, {"chat.db"}, on_change)
    watcher.start()
    try:
        os.utime(tmp_path / "other")
        await anyio.sleep(0.05)
        assert calls == []
        os.utime(tmp_path / "chat.db", (1, 1))
        with anyio.fail_after(5):
            await woken.wait()
    finally:
        watcher.close()


async def test_a_commit_visible_only_after_its_wal_write_was_seen_is_still_ingested(
    lib: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A writer's WAL frames land (the watcher fires, size and mtime change) a moment before
    the commit shows in the WAL index. A sync in that gap reads nothing and records a
    fingerprint that already matches the committed files; the commit itself changes only
    -shm, which nobody watches. Seen in the browser test as a message that never arrived.
    Here the fingerprint and the watcher are driven by hand to open exactly that gap."""
    from chatstats.db import Database
    from chatstats.ingest import live
    from chatstats.ingest import watch as watch_module
    from chatstats.ingest.importer import run_import
    from chatstats.sample.writer import MessagesWriter

    kicks: list[Callable[[], None]] = []
    files = {"fp": ((1, 1, 1), None)}

    async def manual(folder, names, on_change, stop, started=lambda _k: None):  # type: ignore[no-untyped-def]
        kicks.append(on_change)
        started("inotify")
        await stop.wait()
        return "inotify"

    monkeypatch.setattr(watch_module, "watch", manual)
    monkeypatch.setattr(live, "fingerprint", lambda _paths: files["fp"])
    monkeypatch.setattr(live, "SETTLE_SECONDS", 5.0)  # the gap is ms; a loaded CI box is slow
    data = tmp_path / "app.db"
    await anyio.to_thread.run_sync(run_import, data, lib / "chat.db", None)
    db = Database(data)
    await db.open()
    stop = anyio.Event()
    try:
        tail = live.LiveTail(db, lib / "chat.db")
        async with anyio.create_task_group() as tg:
            tg.start_soon(tail.run, stop)
            with anyio.fail_after(10):
                while not (tail.watching and tail.status.state == "ok" and kicks):
                    await anyio.sleep(0.01)
            # The frames are written: a file event and a new fingerprint, nothing committed.
            before = tail.status.batches
            files["fp"] = ((1, 2, 2), None)
            kicks[0]()
            with anyio.fail_after(10):
                while tail.status.batches == before:
                    await anyio.sleep(0.01)
            assert tail.status.messages == 0
            # The commit becomes visible: no file event, no fingerprint change.
            w = MessagesWriter(lib / "chat.db", create=False)
            chat = next(c for c, info in w.chats.items() if info.handles)
            w.message(chat, "late to the index", from_me=True, date=time.time_ns())
            w.close()
            # Well before the 30 s data_version fallback of watched mode.
            with anyio.fail_after(10):
                while tail.status.messages == 0:
                    await anyio.sleep(0.02)
            stop.set()
    finally:
        db.close()
