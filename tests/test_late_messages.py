"""A late message: one that arrives after its conversation was sealed, dated within 90
minutes of its end (a phone that was offline, another device syncing late). Decided by
message times, as a fresh split would: it joins that conversation, which is reopened
(unsealed, timer re-armed, `conversation_reopened` published), its analyses are marked
stale and counted as missing, and the sealed passes run again once it is sealed again.

The first test drives the whole daemon: the chat.db writer in this process, the daemon in
another, the real LiteLLM client against a scripted server. The others run live sync, the
analysis service and the sealer's steps in this process, to stop between them: coverage,
missing and backfill while results are stale, and a late message while a sealed pass's
call is in flight.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from chatstats import llm as llm_mod
from chatstats.analysis.service import AnalysisService
from chatstats.db import Database
from chatstats.events.bus import EventBus
from chatstats.ingest import importer, sealer
from chatstats.ingest.conversations import GAP_NS
from chatstats.ingest.live import LiveTail
from chatstats.sample.generate import make_library
from chatstats.sample.writer import MessagesWriter
from chatstats.testing.fake_llm import FakeLLM
from tests import daemon_proc

TOKEN = "late"
MIN = 60 * 1_000_000_000
SEALED_PASSES = {"basic", "commitments"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("late-lib")
    make_library(root, messages=200, seed=43)
    return root


def wait_for(fn, seconds: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def write(lib: Path, chat_guid: str | None, texts: list[tuple[str, int]]) -> tuple[str, list[str]]:
    """Messages from one correspondent, each its own commit, as Messages.app writes them."""
    w = MessagesWriter(lib / "chat.db", create=False)
    try:
        h = w.handle("+15550107070")
        chat = w.find_chat(chat_guid) if chat_guid else w.chat([h])
        assert chat is not None
        guids = [
            w.message(chat, text, from_me=False, sender=h, date=date)[1] for text, date in texts
        ]
        return w.chat_guid(chat), guids
    finally:
        w.close()


def sealed_results(client: httpx.Client, cid: int) -> dict[str, dict[str, Any]]:
    return {a["pass"]: a for a in client.get(f"/api/conversations/{cid}/analyses").json()}


def events_of(
    client: httpx.Client, chat_id: int, until: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The chat's events on the analysis stream (SSE 5, from the start), up to the first
    that `until` accepts."""
    out: list[dict[str, Any]] = []
    params = {"start_id": "0", "scope": f"chat:{chat_id}"}
    path = "/api/analysis/streaming/redis_stream/task_events:analysis"
    with client.stream("GET", path, params=params, timeout=10) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                out.append(json.loads(line[5:]))
                if until(out[-1]):
                    return out
    raise AssertionError("no such event")


def test_a_late_message_reopens_its_sealed_conversation_and_its_analyses_run_again(
    sample: Path, tmp_path: Path
):
    lib = tmp_path / "lib"
    shutil.copytree(sample, lib)
    data = tmp_path / "data"
    with FakeLLM() as llm:
        env = {
            "CHATSTATS_LLM_MODEL": "openai/fake",
            "CHATSTATS_LLM_API_BASE": llm.base_url,
            "CHATSTATS_LLM_API_KEY": "sk-local",
        }
        proc = daemon_proc.serve(lib, data, token=TOKEN, env=env)
        try:
            url = daemon_proc.ready(proc)["url"]
            client = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
            )
            assert daemon_proc.wait_live(url, TOKEN)["live"]["state"] == "ok"

            # Two messages 2.5 hours ago: their conversation is over, so it is sealed at
            # once, and the sealed passes analyse it.
            now = time.time_ns()
            guid, first = write(lib, None, [("lunch?", now - 150 * MIN), ("sure", now - 149 * MIN)])
            chat = wait_for(
                lambda: next((c for c in client.get("/api/chats").json() if c["guid"] == guid), 0),
                what="the new chat",
            )

            def conversation_of(message_guid: str) -> int | None:
                page = client.get(f"/api/chats/{chat['id']}/messages").json()
                return next((m["conversation_id"] for m in page if m["guid"] == message_guid), None)

            cid = wait_for(lambda: conversation_of(first[1]), what="the messages")
            before = wait_for(
                lambda: (r := sealed_results(client, cid)) and set(r) >= SEALED_PASSES and r,
                what="the first analyses",
            )
            assert not any(before[p]["stale"] for p in SEALED_PASSES)
            assert client.get(f"/api/conversations/{cid}").json()["sealed"]

            # The late one: dated 69 minutes after the last message, 80 minutes ago, so the
            # reopened conversation stays open for another 10 minutes.
            _g, late = write(lib, guid, [("sorry, phone died. 1pm?", now - 80 * MIN)])
            assert wait_for(lambda: conversation_of(late[0]), what="the late message") == cid
            conv = client.get(f"/api/conversations/{cid}").json()
            assert conv["sealed"] is False and conv["message_count"] == 3
            # The late message's reopening. (Under load the tail may sync between the first
            # two commits: the conversation, sealed at once since its one message is 150
            # minutes old, is then reopened by "sure" too, with 2 messages.)
            reopened = events_of(
                client,
                chat["id"],
                lambda e: e["type"] == "conversation_reopened" and e["data"]["message_count"] >= 3,
            )[-1]
            assert reopened["data"]["conversation_id"] == cid
            assert reopened["data"]["message_count"] == 3
            stale = wait_for(
                lambda: (
                    (r := sealed_results(client, cid))
                    and all(r[p]["stale"] for p in SEALED_PASSES)
                    and r
                ),
                what="stale analyses",
            )
            assert {p: stale[p]["id"] for p in SEALED_PASSES} == {
                p: before[p]["id"] for p in SEALED_PASSES
            }
            with sqlite3.connect(data / "chatstats.db") as conn:  # a read, beside the daemon
                status = sealer.status(conn, time.time_ns())
            timer = next(c for c in status if c.conversation_id == cid)
            assert timer.scheduled and 8 * 60 < timer.seconds_left <= 10 * 60  # from the late one

            # Sealed again (now, by hand, rather than in 10 minutes): the sealed passes run
            # again; while they do, the stale results count as missing.
            llm.latency_s = 3.0
            force = ["force-seal", str(chat["id"]), "--data-dir", str(data)]
            sealed = subprocess.run(
                [sys.executable, "-m", "chatstats", *force], capture_output=True, text=True
            )
            assert sealed.returncode == 0, sealed.stderr
            cover = client.get("/api/analysis/coverage", params={"chat_id": chat["id"]}).json()
            basic = next(p for p in cover["passes"] if p["pass"] == "basic")
            assert (basic["conversations"], basic["analysed"], basic["missing"]) == (1, 0, 1)
            assert basic["stale"] == 1
            llm.latency_s = 0.0
            after = wait_for(
                lambda: (
                    (r := sealed_results(client, cid))
                    and not any(r[p]["stale"] for p in SEALED_PASSES)
                    and r
                ),
                what="fresh analyses",
            )
            for p in SEALED_PASSES:
                assert after[p]["created_at"] > before[p]["created_at"]
                assert after[p]["job_id"] != before[p]["job_id"]
            prompts = [json.dumps(r.body) for r in llm.requests]
            assert any("phone died" in text for text in prompts)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# In process: live sync, the analysis service, the sealer's steps, one at a time.


class Library:
    """A one-chat chat.db, imported; live sync and an analysis service over the app DB."""

    def __init__(self, tmp_path: Path, fake: FakeLLM) -> None:
        self.now = time.time_ns()
        self.source = tmp_path / "chat.db"
        self.app = tmp_path / "app.db"
        self.w = MessagesWriter(self.source, seed=3)
        self.h = self.w.handle("+15550109090")
        self.chat = self.w.chat([self.h])
        self.fake = fake
        self.db = Database(self.app)
        self.bus = EventBus(self.db)  # woken after each commit, as the daemon does

    def say(self, text: str, minutes_ago: int) -> str:
        date = self.now - minutes_ago * MIN
        return self.w.message(self.chat, text, from_me=False, sender=self.h, date=date)[1]

    async def open(self) -> None:
        # The first import files what ended over 90 minutes ago as sealed, at once.
        importer.run_import(self.app, self.source)
        await self.db.open()
        self.tail = LiveTail(self.db, self.source, publish=self._published)

    async def _published(self, _outcome: Any) -> None:
        self.bus.notify()

    async def seal_due(self) -> list[sealer.Sealed]:
        """What the sealer does when a timer is due."""
        return await self.bus.write(sealer.seal_due, time.time_ns())

    def service(self) -> AnalysisService:
        config = llm_mod.LLMConfig(model="openai/fake", api_base=self.fake.base_url, timeout_s=10)
        return AnalysisService(
            self.db, self.bus, None, config=config, refill_seconds=0.1, live_debounce_s=0
        )

    async def one(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        row = await self.db.fetch_one(sql, params)
        return None if row is None else tuple(row)

    async def results(self, svc: AnalysisService, cid: int) -> dict[str, dict[str, Any]]:
        return {a["pass"]: a for a in await svc.conversation_analyses(cid)}

    def close(self) -> None:
        self.w.close()
        self.db.close()


async def until(fn, seconds: float = 20.0):  # type: ignore[no-untyped-def]
    with anyio.fail_after(seconds):
        while not (value := await fn()):
            await anyio.sleep(0.05)
        return value


@contextlib.asynccontextmanager
async def running(svc: AnalysisService) -> AsyncIterator[None]:
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc.run, stop)
        try:
            yield
        finally:
            stop.set()


@pytest.fixture
async def library(tmp_path: Path) -> AsyncIterator[Library]:
    with FakeLLM() as fake:
        lib = Library(tmp_path, fake)
        try:
            yield lib
        finally:
            lib.close()


@pytest.mark.anyio
async def test_stale_results_count_as_missing_until_the_next_seal_runs_the_passes(
    library: Library,
):
    lib = library
    first = lib.say("lunch?", 300)
    lib.say("sure", 299)
    await lib.open()
    cid, chat_id, sealed = await lib.one(
        "SELECT c.id, c.chat_id, c.sealed FROM messages m"
        " JOIN conversations c ON c.id = m.conversation_id WHERE m.guid = :g",
        {"g": first},
    )
    assert sealed == 1
    svc = lib.service()
    async with running(svc):
        run = await svc.start_run(passes=sorted(SEALED_PASSES), kind="historic")
        await until(lambda: _complete(svc, run.id))
        before = await lib.results(svc, cid)
        assert not any(r["stale"] for r in before.values())

        # 59 minutes after the last one: within 90, so it joins (and reopens) the conversation.
        late = lib.say("sorry, phone died", 240)
        await lib.tail.sync()
        row = await lib.one("SELECT conversation_id FROM messages WHERE guid = :g", {"g": late})
        assert row == (cid,)
        row = await lib.one(
            "SELECT sealed, message_count FROM conversations WHERE id = :c", {"c": cid}
        )
        assert row == (0, 3)
        await until(lambda: _all_stale(lib, svc, cid))

    # Sealed again (its timer is overdue: the late message was 4 hours ago), with no engine
    # or consumer running: the stale results are missing for coverage, missing, backfill.
    resealed = await lib.seal_due()
    assert [s.conversation_id for s in resealed] == [cid]
    cover = {p["pass"]: p for p in (await svc.coverage(chat_id))["passes"]}
    for name in SEALED_PASSES:
        assert (cover[name]["analysed"], cover[name]["missing"], cover[name]["stale"]) == (0, 1, 1)
    missing = {m["pass"]: m for m in await svc.missing(chat_id=chat_id)}
    assert [c["conversation_id"] for c in missing["basic"]["conversations"]] == [cid]
    dry = await svc.backfill(sorted(SEALED_PASSES), dry_run=True)
    assert dry["passes"] == dict.fromkeys(SEALED_PASSES, 1)

    # The consumer reads the seal's conversation_ready_for_analysis: the passes run again.
    async with running(svc):
        after = await until(lambda: _all_fresh(lib, svc, cid))
    for name in SEALED_PASSES:
        assert after[name]["id"] == before[name]["id"]  # replaced in place
        assert after[name]["job_id"] != before[name]["job_id"]
    cover = {p["pass"]: p for p in (await svc.coverage(chat_id))["passes"]}
    assert all(cover[n]["missing"] == 0 for n in SEALED_PASSES)


@pytest.mark.anyio
@pytest.mark.parametrize("reseal_in_flight", [False, True], ids=["open", "resealed"])
async def test_a_late_message_during_a_sealed_pass_call_leaves_no_current_stale_result(
    library: Library, reseal_in_flight: bool
):
    """The call read the conversation before the late message. Stored while the conversation
    is open again, its result is stale at once; if the conversation was even sealed again
    before the call returned, the pass runs once more."""
    lib = library
    lib.say("lunch?", 300)
    lib.say("sure", 299)
    await lib.open()
    cid = (await lib.one("SELECT id FROM conversations"))[0]
    svc = lib.service()
    lib.fake.latency_s = 1.5
    async with running(svc):
        run = await svc.start_run(passes=["basic"], kind="historic")
        await until(lambda: _calls(lib, 1))  # the call is in flight
        lib.say("sorry, phone died", 240)
        await lib.tail.sync()
        assert await lib.one("SELECT sealed FROM conversations WHERE id = :c", {"c": cid}) == (0,)
        if reseal_in_flight:
            await lib.seal_due()
        lib.fake.latency_s = 0.0
        await until(lambda: _complete(svc, run.id))
        if not reseal_in_flight:
            result = (await lib.results(svc, cid))["basic"]
            assert result["stale"] is True
            await lib.seal_due()
        final = await until(lambda: _fresh_after(lib, svc, cid, run.id))
    assert final["stale"] is False
    assert len([r for r in lib.fake.requests if r.response_format]) >= 2


async def _complete(svc: AnalysisService, run_id: str) -> bool:
    return (await svc.get_run(run_id))["status"] == "complete"


async def _all_stale(lib: Library, svc: AnalysisService, cid: int) -> bool:
    found = await lib.results(svc, cid)
    return set(found) >= SEALED_PASSES and all(found[p]["stale"] for p in SEALED_PASSES)


async def _all_fresh(lib: Library, svc: AnalysisService, cid: int) -> Any:
    found = await lib.results(svc, cid)
    ok = set(found) >= SEALED_PASSES and not any(found[p]["stale"] for p in SEALED_PASSES)
    return found if ok else None


async def _calls(lib: Library, n: int) -> bool:
    return lib.fake.in_flight >= n


async def _fresh_after(lib: Library, svc: AnalysisService, cid: int, run_id: str) -> Any:
    """The basic pass's result once it is current and came from a job outside the run."""
    found = (await lib.results(svc, cid)).get("basic")
    if found is None or found["stale"] or found["run_id"] == run_id:
        return None
    return found


@pytest.mark.anyio
async def test_a_late_message_older_than_the_chats_newest_reopens_by_a_fresh_split(
    library: Library,
):
    """Dated before a later conversation of the chat, it takes the fresh-split path: the
    conversation it joins keeps its id and is reopened; the later one is untouched."""
    lib = library
    a = lib.say("lunch?", 300)
    lib.say("sure", 299)
    b = lib.say("how was it?", 100)  # 199 minutes later: a conversation of its own
    await lib.open()
    ids = "SELECT m.conversation_id, c.sealed, c.message_count FROM messages m"
    ids += " JOIN conversations c ON c.id = m.conversation_id WHERE m.guid = :g"
    (ca, sealed_a, _n), (cb, sealed_b, _m) = [await lib.one(ids, {"g": g}) for g in (a, b)]
    assert ca != cb and sealed_a == sealed_b == 1

    late = lib.say("sorry, phone died", 240)  # 59 minutes after the first conversation
    await lib.tail.sync()
    assert await lib.one(ids, {"g": late}) == (ca, 0, 3)
    assert await lib.one(ids, {"g": b}) == (cb, 1, 1)
    events = await lib.db.fetch_all(
        "SELECT type, data FROM events WHERE type = 'conversation_reopened'"
    )
    assert [json.loads(e["data"])["conversation_id"] for e in events] == [ca]
    due = await lib.one("SELECT due_ns FROM seal_timers WHERE conversation_id = :c", {"c": ca})
    assert due == (lib.now - 240 * MIN + GAP_NS,)


@pytest.mark.anyio
async def test_older_messages_merging_two_conversations_drop_the_merged_ones_analyses(
    library: Library,
):
    """Messages dated between two sealed conversations close the gap: a fresh split merges
    the later (smaller) one into the earlier. What was analysed under the later one goes
    (results, commitments, a job still queued for it), `conversation_removed` names where
    its messages went, and its id is never given to a new conversation: caches, citations
    and analyses keyed by it would silently point at other messages."""
    from chatstats.analysis import store as analysis_store
    from chatstats.errors import NotFound
    from chatstats.library.service import Library as LibraryService

    lib = library
    a = lib.say("lunch?", 300)
    lib.say("sure", 299)
    b = lib.say("how was it?", 100)
    await lib.open()
    ids = "SELECT conversation_id FROM messages WHERE guid = :g"
    (ca,), (cb,) = [await lib.one(ids, {"g": g}) for g in (a, b)]
    assert cb == ca + 1  # the newest conversation has the highest id
    (chat_id,) = await lib.one("SELECT chat_id FROM conversations WHERE id = :c", {"c": cb})
    svc = lib.service()
    async with running(svc):
        run = await svc.start_run(passes=sorted(SEALED_PASSES), kind="historic")
        await until(lambda: _complete(svc, run.id), 90)  # the first call loads LiteLLM
    assert set(await lib.results(svc, cb)) == SEALED_PASSES
    # A job still queued (due in an hour) for the later conversation when the merge comes.
    ref = analysis_store.PassRef("basic", 999, 5, "sealed")
    job = await lib.db.write(
        lambda conn: analysis_store.enqueue(
            conn,
            cb,
            chat_id,
            ref,
            now_ns=time.time_ns(),
            max_attempts=3,
            not_before_ns=time.time_ns() + 3600 * 10**9,
        )
    )

    lib.say("on my way", 220)  # 79 minutes after "sure", 60 before the next: one conversation
    lib.say("here", 160)
    await lib.tail.sync()
    assert await lib.one(ids, {"g": b}) == (ca,)
    assert await lib.one("SELECT count(*) FROM conversations WHERE id = :c", {"c": cb}) == (0,)
    assert await lib.one(
        "SELECT merged_into FROM removed_conversations WHERE id = :c", {"c": cb}
    ) == (ca,)
    events = await lib.db.fetch_all("SELECT data FROM events WHERE type = 'conversation_removed'")
    assert [json.loads(e["data"]) for e in events] == [
        {
            "chat_id": chat_id,
            "conversation_id": cb,
            "merged_into": ca,
        }
    ]
    with pytest.raises(NotFound, match=f"merged into conversation {ca}"):
        await LibraryService(lib.db).conversation(cb)

    async with running(svc):
        await until(lambda: _dropped(lib, cb))
        await until(lambda: _all_stale(lib, svc, ca))
    with pytest.raises(NotFound):
        await svc.conversation_analyses(cb)
    assert await lib.one(
        "SELECT state, last_error FROM analysis_jobs WHERE id = :j", {"j": job}
    ) == ("dead", "conversation_removed")

    # A new conversation (the gap since the last message is over 90 minutes) gets a new id.
    new = lib.say("dinner tonight?", 0)
    await lib.tail.sync()
    (cn,) = await lib.one(ids, {"g": new})
    assert cn > cb


async def _dropped(lib: Library, cid: int) -> bool:
    row = await lib.one(
        "SELECT (SELECT count(*) FROM analyses WHERE conversation_id = :c)"
        " + (SELECT count(*) FROM commitments WHERE conversation_id = :c)",
        {"c": cid},
    )
    return row == (0,)
