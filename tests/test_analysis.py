"""The analysis engine: passes, transcripts, the durable queue through the real LiteLLM client
against a scripted OpenAI-compatible server on loopback, runs, the consumer, a kill -9 and
restart, the API routes and the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from chatstats import llm
from chatstats.analysis import passes, store, transcript
from chatstats.analysis.service import NO_MODEL, AnalysisService
from chatstats.api import analysis as analysis_api
from chatstats.api.app import _json_route, create_app
from chatstats.api.state import AppState
from chatstats.cli import main
from chatstats.config import Settings
from chatstats.db import Database, connect
from chatstats.events import bus as events
from chatstats.events.bus import EventBus
from chatstats.ingest import sealer
from chatstats.llm import tokens
from chatstats.testing.fake_llm import (
    BadJSONBody,
    FakeLLM,
    Malformed,
    RateLimit,
    Reply,
    ServerError,
    Timeout,
)
from tests.analysis_support import T0, S, open_db, seed, tx

REPO = Path(__file__).resolve().parent.parent
TOKEN = "test-token-analysis"
pytestmark = pytest.mark.anyio

FAST = {
    "refill_seconds": 0.1,
    "backoff_base_s": 0.02,
    "backoff_cap_s": 0.2,
    "grace_seconds": 0.2,
    "live_debounce_s": 0.0,
}


@pytest.fixture(scope="module")
def fake():
    with FakeLLM(latency_s=0.01) as server:
        yield server


@pytest.fixture(autouse=True)
def clean_fake(request):
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()
    yield


def llm_config(fake: FakeLLM, **kw: Any) -> llm.LLMConfig:
    options: dict[str, Any] = {
        "model": "openai/fake",
        "api_base": fake.base_url,
        "timeout_s": 1.0,
        "input_cost_per_token": 1e-6,
        "output_cost_per_token": 2e-6,
        **kw,
    }
    return llm.LLMConfig(**options)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "chatstats.db"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    database = Database(db_path)
    await database.open()
    try:
        yield database
    finally:
        database.close()


def sql(db_path: Path) -> sqlite3.Connection:
    return connect(db_path, write=False)


def rows(db_path: Path, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
    conn = sql(db_path)
    try:
        return [tuple(r) for r in conn.execute(query, params)]
    finally:
        conn.close()


def seed_db(db_path: Path, **kw: Any) -> list[int]:
    conn = open_db(db_path)
    try:
        return seed(conn, **kw)
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def running(svc: AnalysisService) -> AsyncIterator[anyio.Event]:
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc.run, stop)
        try:
            yield stop
        finally:
            stop.set()


async def wait_until(predicate: Callable[[], Any], timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return
            await anyio.sleep(0.05)


async def run_done(svc: AnalysisService, run_id: str) -> bool:
    return (await svc.get_run(run_id))["status"] == "complete"


# ---------------------------------------------------------------------------------------------
# Pass files


def test_shipped_passes_load_and_declare_their_triggers():
    found = passes.load()
    assert found.errors == []
    by_name = {p.name: p for p in found.all()}
    assert set(by_name) >= {"basic", "basic_live", "commitments", "commitments_live"}
    assert by_name["basic"].trigger == "sealed"
    assert by_name["basic_live"].trigger == "live"
    assert by_name["commitments"].stores == "commitments"
    for p in by_name.values():
        example = _example(p.schema)
        assert p.normalised(example) == example


def _example(schema: dict[str, Any]) -> Any:
    from chatstats.testing.fake_llm import example_for_schema

    return example_for_schema(schema)


def _write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text, encoding="utf-8")


def test_a_broken_pass_file_is_reported_by_file_and_field_and_skipped(tmp_path, capsys):
    good = (REPO / "prompts" / "basic.toml").read_text()
    _write(tmp_path, "basic.toml", good)
    _write(
        tmp_path,
        "no_trigger.toml",
        good.replace('name = "basic"', 'name = "no_trigger"').replace('trigger = "sealed"\n', ""),
    )
    _write(
        tmp_path,
        "typo.toml",
        good.replace('name = "basic"', 'name = "typo"').replace("enabled = true", "enabeld = true"),
    )
    _write(tmp_path, "bad_toml.toml", "name = \n")
    _write(tmp_path, "wrong_name.toml", good)
    _write(
        tmp_path,
        "no_placeholder.toml",
        good.replace('name = "basic"', 'name = "no_placeholder"').replace(
            "{transcript}", "(nothing)"
        ),
    )
    _write(
        tmp_path,
        "odd_schema.toml",
        good.replace('name = "basic"', 'name = "odd_schema"').replace(
            '[schema.properties.tone]\ntype = "string"', "[schema.properties.tone]\nanyOf = []"
        ),
    )
    found = passes.load(tmp_path)
    assert list(found.passes) == ["basic"]
    errors = {e.file: e.message for e in found.errors}
    assert "missing required field `trigger`" in errors["no_trigger.toml"]
    assert "enabeld" in errors["typo.toml"]
    assert "not valid TOML" in errors["bad_toml.toml"]
    assert "wrong_name.toml" in errors["wrong_name.toml"]
    assert "{transcript}" in errors["no_placeholder.toml"]
    assert "anyOf" in errors["odd_schema.toml"] and "$.tone" in errors["odd_schema.toml"]


def test_output_types_enforce_the_schema():
    p = passes.load().get("commitments")
    ok = {
        "commitments": [
            {"kind": "promise", "who": "Me", "what": "call", "due": None, "status": "open"}
        ]
    }
    assert p.normalised(ok) == ok
    bad = [
        {"commitments": [{**ok["commitments"][0], "kind": "threat"}]},
        {"commitments": [{**ok["commitments"][0], "due": "next week"}]},
        {"commitments": [{**ok["commitments"][0], "extra": 1}]},
        {"commitments": [{"kind": "promise"}]},
        {"items": []},
    ]
    for answer in bad:
        with pytest.raises(msgspec.ValidationError):
            p.check(answer)


def test_render_fills_placeholders_but_never_inside_the_transcript():
    p = passes.load().get("basic")
    msgs = p.render(
        "[10:00] Me: {message_count} {end_time}",
        message_count=3,
        start_time="2024-01-01 10:00",
        end_time="2024-01-01 11:00",
    )
    assert msgs[0]["role"] == "system"
    user = msgs[1]["content"]
    assert "3 messages, 2024-01-01 10:00 to 2024-01-01 11:00" in user
    assert "Me: {message_count} {end_time}" in user


# ---------------------------------------------------------------------------------------------
# Transcripts


def test_transcript_labels_speakers_without_revealing_addresses(db_path):
    ids = seed_db(db_path, chats=2, conversations=1, messages=4)
    conn = sql(db_path)
    try:
        named = transcript.build(conn, ids[0], 1000)
        nameless = transcript.build(conn, ids[1], 1000)
        assert transcript.build(conn, 999, 1000) is None
    finally:
        conn.close()
    assert "Ann Example:" in named.text and "Me:" in named.text
    assert "Person A:" in nameless.text
    assert "+1555" not in named.text + nameless.text
    assert named.omitted == 0 and named.included == 4


def test_a_long_conversation_keeps_its_start_and_end_within_budget(db_path):
    (cid,) = seed_db(db_path, chats=1, conversations=1, messages=2000)
    conn = sql(db_path)
    try:
        t = transcript.build(conn, cid, 2000)
    finally:
        conn.close()
    assert t.tokens <= 2000 and tokens.count(t.text) <= 2000
    assert t.omitted > 0 and t.included + t.omitted == 2000 == t.message_count
    assert f"message 0 of conversation {cid}" in t.text
    assert f"message 1999 of conversation {cid}" in t.text
    assert f"[… {t.omitted} messages left out …]" in t.text
    head, tail = t.text.split("left out")
    assert len(head) < len(tail)  # the end (how it stands) gets the larger share


def test_a_transcript_budget_is_exact_in_real_tokens(db_path):
    """The budget is cl100k tokens, not characters: a whole transcript fits a budget of its
    own token count, and one token less cuts it (and never overflows)."""
    (cid,) = seed_db(db_path, chats=1, conversations=1, messages=40)
    conn = sql(db_path)
    try:
        whole = transcript.build(conn, cid, 100_000)
        exact = transcript.build(conn, cid, tokens.count(whole.text))
        short = transcript.build(conn, cid, tokens.count(whole.text) - 1)
        tiny = transcript.build(conn, cid, 5)
    finally:
        conn.close()
    assert whole.omitted == 0 and exact.text == whole.text
    assert short.omitted > 0 and tokens.count(short.text) < tokens.count(whole.text)
    assert tokens.count(tiny.text) <= 5


# ---------------------------------------------------------------------------------------------
# The engine through LiteLLM and the fake server


def _state_counts(db_path: Path) -> dict[str, int]:
    return dict(rows(db_path, "SELECT state, count(*) FROM analysis_jobs GROUP BY state"))


async def test_a_whole_run_survives_scripted_faults_and_accounts_every_call(db, db_path, fake):
    seed_db(db_path, chats=3, conversations=4)  # 12 conversations, 2 passes: 24 jobs
    fake.script(
        [
            RateLimit(retry_after=0.3),
            ServerError(500),
            Timeout(3.0),
            Malformed(),
            BadJSONBody(),
            Reply({"summary": 5, "topics": [], "tone": "x"}),  # valid JSON, wrong schema
            ServerError(503),
            ServerError(502),
        ]
    )
    svc = AnalysisService(
        db, EventBus(db), None, config=llm_config(fake, timeout_s=0.5), max_attempts=3, **FAST
    )
    async with running(svc):
        run = await svc.start_run(passes=["basic", "commitments"], kind="historic")
        assert run.total == 24
        await wait_until(lambda: run_done(svc, run.id), 40)
        final = await svc.get_run(run.id)

    jobs = rows(db_path, "SELECT id, state, attempts FROM analysis_jobs")
    assert {s for _, s, _ in jobs} <= {"done", "dead"}
    assert final["success"] + final["failed"] == 24 == final["total"]
    # One result per done job, none twice.
    done = [j for j in jobs if j[1] == "done"]
    assert rows(db_path, "SELECT count(*) FROM analyses")[0][0] == len(done)
    assert (
        rows(
            db_path,
            "SELECT count(*) FROM (SELECT 1 FROM analyses"
            " GROUP BY conversation_id, pass, pass_version HAVING count(*) > 1)",
        )[0][0]
        == 0
    )
    # Every attempt is one accounted call, with its outcome; successes carry tokens and cost.
    calls = rows(
        db_path,
        "SELECT job_id, outcome, prompt_tokens, completion_tokens, cost,"
        " latency_ms, model, run_id FROM llm_calls",
    )
    assert len(calls) == sum(a for _, _, a in jobs) == len(fake.requests)
    outcomes = Counter(c[1] for c in calls if c[1] != "ok")
    # A body that is not JSON at all counts as the provider failing (LiteLLM's mapping).
    assert outcomes["rate_limited"] == 1 and outcomes["timeout"] == 1
    assert outcomes["invalid_output"] >= 2 and outcomes["server_error"] >= 3
    assert outcomes.total() == 8
    for job_id, outcome, pt, ct, cost, latency, model, run_id in calls:
        assert job_id is not None and run_id == run.id and model == "openai/fake"
        assert latency > 0
        if outcome == "ok":
            assert pt > 0 and ct > 0 and cost > 0
    assert final["usage"]["calls"] == len(calls)
    assert final["usage"]["cost"] > 0
    # The schema-invalid answer is accounted as invalid_output, with its path, not its values.
    errors = [
        r[0] for r in rows(db_path, "SELECT error FROM llm_calls WHERE outcome = 'invalid_output'")
    ]
    assert any("$.summary" in (e or "") for e in errors)
    # Retry-After is honoured: the retry of the rate-limited attempt waited at least that long.
    retry_events = rows(db_path, "SELECT data FROM events WHERE type = 'retry'")
    waits = [
        json.loads(d)["retry_in_s"]
        for (d,) in retry_events
        if json.loads(d)["error"].startswith("rate_limited")
    ]
    assert waits and min(waits) >= 0.3
    # Progress on the historic scope: starting, seeded, throttled completions, complete.
    types = [
        t for (t,) in rows(db_path, "SELECT type FROM events WHERE scope = 'historic' ORDER BY id")
    ]
    assert types[:2] == ["run_starting", "run_seeded"] and types[-1] == "run_complete"
    assert types.count("analysis_completed") < 24
    # One shape on both audiences: every job on its chat's scope, the same keys on the run's.
    completed = rows(db_path, "SELECT scope, data FROM events WHERE type = 'analysis_completed'")
    per_chat = [json.loads(d) for scope, d in completed if scope.startswith("chat:")]
    per_run = [json.loads(d) for scope, d in completed if scope == "historic"]
    assert len(per_chat) == 24 and per_run
    assert {frozenset(d) for d in per_chat + per_run} == {frozenset(per_chat[0])}
    assert all(d["run_id"] == run.id and d["total"] == 24 for d in per_chat + per_run)
    assert sum(d["status"] == "success" for d in per_chat) == final["success"]
    assert rows(
        db_path, "SELECT count(*) FROM events WHERE scope LIKE 'task:%' AND type = 'completed'"
    )[0][0] == len(done)
    assert fake.max_in_flight <= svc.engine.concurrency


async def test_a_job_out_of_attempts_is_dead_listed_and_retryable(db, db_path, fake):
    (cid,) = seed_db(db_path, chats=1, conversations=1)
    fake.script([ServerError(500)] * 3)
    svc = AnalysisService(db, EventBus(db), None, config=llm_config(fake), max_attempts=3, **FAST)
    async with running(svc):
        run = await svc.start_run(passes=["basic"])
        await wait_until(lambda: run_done(svc, run.id))
        after = await svc.get_run(run.id)
        assert (after["success"], after["failed"]) == (0, 1)
        (dead,) = await svc.jobs(state="dead")
        assert dead.attempts == 3 and dead.last_error.startswith("server_error")
        assert (
            rows(db_path, "SELECT count(*) FROM llm_calls WHERE job_id = ?", (dead.id,))[0][0] == 3
        )
        assert rows(
            db_path,
            "SELECT type FROM events WHERE scope = ? AND type = 'failed'",
            (f"task:{dead.id}",),
        )
        await svc.retry(dead.id)
        await wait_until(lambda: run_done(svc, run.id))
        again = await svc.get_run(run.id)
    assert (again["success"], again["failed"]) == (1, 0)
    assert _state_counts(db_path) == {"done": 1}
    assert (
        rows(db_path, "SELECT count(*) FROM analyses WHERE conversation_id = ?", (cid,))[0][0] == 1
    )
    assert rows(db_path, "SELECT count(*) FROM llm_calls")[0][0] == 4


async def test_a_bad_request_is_not_retried(db, db_path, fake):
    from chatstats.testing.fake_llm import ClientError

    seed_db(db_path, chats=1, conversations=1)
    fake.script([ClientError(400)])
    svc = AnalysisService(db, EventBus(db), None, config=llm_config(fake), **FAST)
    async with running(svc):
        run = await svc.start_run(passes=["basic"])
        await wait_until(lambda: run_done(svc, run.id))
    assert rows(db_path, "SELECT state, attempts FROM analysis_jobs") == [("dead", 1)]
    assert rows(db_path, "SELECT outcome FROM llm_calls") == [("bad_request",)]


async def test_no_model_leaves_jobs_pending_with_a_clear_status(db, db_path):
    seed_db(db_path, chats=1, conversations=2)
    svc = AnalysisService(db, EventBus(db), Settings(data_dir=str(db_path.parent)), **FAST)
    assert svc.config is None
    async with running(svc):
        run = await svc.start_run()
        await anyio.sleep(0.3)
        status = await svc.status()
    assert status["state"] == "waiting" and status["message"] == NO_MODEL
    assert status["jobs"]["pending"] == run.total == 4
    assert _state_counts(db_path) == {"pending": 4}


async def test_shutdown_hands_a_job_in_flight_back(db, db_path, fake):
    seed_db(db_path, chats=1, conversations=1)
    fake.script([Timeout(5.0)])
    svc = AnalysisService(db, EventBus(db), None, config=llm_config(fake, timeout_s=10), **FAST)
    async with running(svc) as stop:
        await svc.start_run(passes=["basic"])
        await wait_until(lambda: svc.engine.in_flight == 1)
        stop.set()
    assert rows(db_path, "SELECT state, attempts FROM analysis_jobs") == [("pending", 0)]
    assert rows(db_path, "SELECT outcome FROM llm_calls") == [("cancelled",)]


async def test_jobs_left_running_by_a_crash_are_recovered_at_start(db, db_path, fake):
    seed_db(db_path, chats=1, conversations=2)
    svc = AnalysisService(db, EventBus(db), None, config=llm_config(fake), **FAST)
    run = await svc.start_run(passes=["basic"])
    await db.write(lambda c: c.execute("UPDATE analysis_jobs SET state = 'running', attempts = 1"))
    async with running(svc):
        await wait_until(lambda: run_done(svc, run.id))
    assert svc.engine.counters["recovered"] == 2
    assert rows(db_path, "SELECT state, attempts FROM analysis_jobs") == [("done", 2)] * 2


async def test_a_live_pass_asked_again_while_running_runs_again(db, db_path, fake):
    (cid,) = seed_db(db_path, chats=1, conversations=1, sealed=False)
    ref = store.PassRef("basic_live", 1, 10, "live")

    def first(conn):
        return store.enqueue(conn, cid, 1, ref, now_ns=time.time_ns(), max_attempts=3)

    job_id = await db.write(first)
    claimed = await db.write(store.claim, job_id, time.time_ns())
    assert await db.write(first) is None  # running: marked for a rerun instead
    assert await db.write(store.finish, claimed, time.time_ns()) is True
    assert await db.write(first) is not None


# ---------------------------------------------------------------------------------------------
# A kill -9 in the middle of a run, then a restart


def _spawn(db_path: Path, fake: FakeLLM) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.analysis_proc", str(db_path), fake.base_url],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_killed_engine_restarts_and_finishes_its_run_without_duplicates(db_path):
    seed_db(db_path, chats=4, conversations=10)  # 40 conversations, 2 passes: 80 jobs

    async def start() -> str:
        db = Database(db_path)
        await db.open()
        try:
            svc = AnalysisService(db, EventBus(db), None, config=None)
            run = await svc.start_run(passes=["basic", "commitments"])
            return run.id
        finally:
            db.close()

    run_id = anyio.run(start)

    def status() -> tuple[str, int]:
        return rows(db_path, "SELECT status, success FROM analysis_runs WHERE id = ?", (run_id,))[0]

    with FakeLLM(latency_s=0.15) as fake:
        proc = _spawn(db_path, fake)
        try:
            deadline = time.monotonic() + 30
            # Kill mid-run: after some results, at a moment a call is in flight (a job is
            # 'running' for its 150 ms; between batches of the queue none may be).
            while (
                status()[1] < 10
                or not rows(db_path, "SELECT count(*) FROM analysis_jobs WHERE state = 'running'")[
                    0
                ][0]
            ):
                assert time.monotonic() < deadline, "the engine made no progress"
                assert proc.poll() is None
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        interrupted = rows(db_path, "SELECT count(*) FROM analysis_jobs WHERE state = 'running'")
        assert status()[0] == "running"
        proc = _spawn(db_path, fake)
        try:
            deadline = time.monotonic() + 30
            while status()[0] != "complete":
                assert time.monotonic() < deadline, "the restarted engine did not finish"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        requests = len(fake.requests)

    assert interrupted[0][0] >= 1  # the kill really did land mid-run
    assert rows(db_path, "SELECT status, total, success, failed FROM analysis_runs") == [
        ("complete", 80, 80, 0)
    ]
    assert rows(
        db_path, "SELECT count(*), count(DISTINCT conversation_id || pass) FROM analyses"
    ) == [(80, 80)]
    assert _state_counts(db_path) == {"done": 80}
    assert rows(db_path, "SELECT count(*) FROM analysis_jobs")[0][0] == 80
    ok = rows(db_path, "SELECT count(*) FROM llm_calls WHERE outcome = 'ok'")[0][0]
    assert ok >= 80
    # Only calls the kill caught went unaccounted: each worker holds at most one, either in
    # flight (at most the concurrency, 4) or answered and waiting to be saved (8 workers).
    recorded = rows(db_path, "SELECT count(*) FROM llm_calls")[0][0]
    assert requests - 8 <= recorded <= requests


# ---------------------------------------------------------------------------------------------
# The consumer: sealed conversations and new messages become jobs


async def test_sealed_and_live_events_queue_their_passes(db, db_path, fake):
    (open_cid,) = seed_db(db_path, chats=1, conversations=1, sealed=False)
    bus = EventBus(db, poll_seconds=0.1)
    svc = AnalysisService(db, bus, None, config=llm_config(fake), **FAST)
    new_ids = [
        r[0]
        for r in rows(db_path, "SELECT id FROM messages WHERE conversation_id = ?", (open_cid,))
    ]

    def synced(conn):
        events.append(
            conn,
            scope="chat:1",
            type="messages_synced",
            data={
                "chat_id": 1,
                "new_message_ids": new_ids[-2:],
                "changed_message_ids": [],
                "conversation_ids": [open_cid],
            },
        )
        events.append(
            conn,
            scope="chat:1",
            type="messages_synced",
            data={
                "chat_id": 1,
                "new_message_ids": [],
                "changed_message_ids": new_ids,
                "conversation_ids": [open_cid],
            },
        )  # receipts only: nothing to do

    async with running(svc):
        await bus.write(synced)
        await wait_until(lambda: _state_counts(db_path).get("done", 0) == 2)
        live = {p for (p,) in rows(db_path, "SELECT pass FROM analyses")}
        assert live == {"basic_live", "commitments_live"}
        assert (
            rows(
                db_path, "SELECT count(*) FROM commitments WHERE conversation_id = ?", (open_cid,)
            )[0][0]
            >= 1
        )

        await bus.write(lambda conn: sealer.force_seal(conn, 1, T0 + 10**6 * S))
        await wait_until(lambda: _state_counts(db_path).get("done", 0) == 4)
        analysed = {p for (p,) in rows(db_path, "SELECT pass FROM analyses")}
        assert analysed == {"basic_live", "commitments_live", "basic", "commitments"}
        # The sealed pass's commitments replace the live ones.
        (owner,) = {
            p
            for (p,) in rows(
                db_path, "SELECT a.pass FROM commitments m JOIN analyses a ON a.id = m.analysis_id"
            )
        }
        assert owner == "commitments"
        cursor = rows(db_path, "SELECT last_id FROM event_cursors WHERE name = 'analysis'")[0][0]
        assert (
            cursor
            >= rows(
                db_path, "SELECT max(id) FROM events WHERE type = 'conversation_ready_for_analysis'"
            )[0][0]
        )
        scopes = {
            s
            for (s,) in rows(db_path, "SELECT scope FROM events WHERE type = 'commitments_updated'")
        }
        assert scopes == {"commitments:1"}

    # A restart reads on from the cursor: nothing is queued twice.
    svc2 = AnalysisService(
        db, EventBus(db, poll_seconds=0.1), None, config=llm_config(fake), **FAST
    )
    async with running(svc2):
        # Wait until the new consumer has read past an event appended after it started (a
        # fixed sleep would pass even if it never ran).
        marker = await svc2.bus.publish("test", "test_marker", {})
        await wait_until(lambda: (svc2.consumer_cursor or 0) >= marker)
    assert rows(db_path, "SELECT count(*) FROM analysis_jobs")[0][0] == 4


# ---------------------------------------------------------------------------------------------
# HTTP routes


@contextlib.asynccontextmanager
async def client_for(db: Database, db_path: Path, svc: AnalysisService | None):
    state = AppState(
        settings=Settings(data_dir=str(db_path.parent)),
        db=db,
        token=TOKEN,
        started_ns=time.time_ns(),
    )
    if svc is not None:
        state.analysis = svc  # type: ignore[attr-defined]
    app = create_app(state)
    mounted = {getattr(r, "path", None) for r in app.router.routes}
    if "/api/analysis/passes" not in mounted:
        app.router.routes.extend(_json_route(*spec) for spec in analysis_api.ROUTES)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="http://127.0.0.1:8765",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:
        yield client


async def test_analysis_routes(db, db_path, fake):
    seed_db(db_path, chats=2, conversations=2)
    fake.script([ServerError(500)])
    svc = AnalysisService(db, EventBus(db), None, config=llm_config(fake), max_attempts=1, **FAST)
    async with client_for(db, db_path, svc) as client, running(svc):
        r = await client.get("/api/analysis/passes")
        assert r.status_code == 200
        assert {
            "name": "basic",
            "version": 1,
            "category": "conversation_analysis",
            "priority": 20,
            "trigger": "sealed",
            "enabled": True,
        }.items() <= r.json()[2].items()

        r = await client.post("/api/analysis/backfill", json={"pass": "basic", "dry_run": True})
        assert r.json()["total"] == 4 and r.json()["run_id"] is None

        r = await client.post(
            "/api/analysis/runs", json={"passes": ["basic", "commitments"], "chat_ids": [1]}
        )
        run_id = r.json()["run_id"]
        assert r.json()["total"] == 4
        await wait_until(lambda: run_done(svc, run_id))
        r = await client.get(f"/api/analysis/runs/{run_id}")
        body = r.json()
        assert body["status"] == "complete" and body["success"] + body["failed"] == 4
        assert body["failed"] == 1 and body["pending"] == 0
        assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["cost"] > 0

        (dead,) = (await client.get("/api/analysis/jobs?state=dead")).json()
        r = await client.post(f"/api/analysis/jobs/{dead['id']}/retry")
        assert r.json()["state"] == "pending"
        assert (await client.post(f"/api/analysis/jobs/{dead['id']}/retry")).status_code == 400
        await wait_until(lambda: run_done(svc, run_id))

        r = await client.get("/api/conversations/1/analyses")
        items = r.json()
        assert {i["pass"] for i in items} == {"basic", "commitments"}
        assert items[0]["usage"]["completion_tokens"] > 0 and items[0]["created_at"].endswith("Z")

        r = await client.get("/api/commitments?chat_id=1&status=open")
        assert len(r.json()) == 2 and r.json()[0]["kind"] == "promise"
        assert (await client.get("/api/commitments?chat_id=2")).json() == []
        assert (await client.get("/api/commitments?status=nope")).status_code == 400

        cov = (await client.get("/api/analysis/coverage?chat_id=1")).json()
        basic = next(p for p in cov["passes"] if p["pass"] == "basic")
        assert (basic["conversations"], basic["analysed"], basic["missing"]) == (2, 2, 0)

        r = await client.post("/api/analysis/backfill", json={"pass": "basic", "limit": 1})
        assert r.json()["total"] == 1 and r.json()["run_id"]

        status = (await client.get("/api/analysis/status")).json()
        assert status["state"] in ("running", "idle") and status["model"] == "openai/fake"

        for method, url, body, code in [
            ("get", "/api/analysis/runs/ffff", None, 404),
            ("get", "/api/analysis/runs/not-hex", None, 404),
            ("post", "/api/analysis/runs", {"passes": ["nope"]}, 404),
            ("post", "/api/analysis/runs", {"pases": ["basic"]}, 400),
            ("post", "/api/analysis/backfill", {"pass": "basic", "dry_run": "yes"}, 400),
            ("get", "/api/analysis/jobs?state=lost", None, 400),
            ("post", "/api/analysis/jobs/999/retry", None, 404),
            ("get", "/api/conversations/999/analyses", None, 404),
        ]:
            r = await getattr(client, method)(url, **({"json": body} if body is not None else {}))
            assert r.status_code == code, (url, r.text)
            assert set(r.json()["error"]) == {"code", "message"}


async def test_routes_work_without_a_daemon_service(db, db_path):
    seed_db(db_path, chats=1, conversations=1)
    async with client_for(db, db_path, None) as client:
        r = await client.post("/api/analysis/backfill", json={})
        assert r.status_code == 200 and r.json()["total"] == 2
        status = (await client.get("/api/analysis/status")).json()
        assert status["message"] == NO_MODEL and status["jobs"]["pending"] == 2


# ---------------------------------------------------------------------------------------------
# Command line


def test_cli_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CHATSTATS_LLM_MODEL", raising=False)
    path = tmp_path / "chatstats.db"
    seed_db(path, chats=2, conversations=3)
    seed_db(path, chats=1, conversations=1, sealed=False, first_chat=9)
    d = ["--data-dir", str(tmp_path)]

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, *d])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = run("passes")
    assert code == 0 and "basic_live" in out and NO_MODEL in out
    code, out, _ = run("backfill", "basic", "--dry-run")
    assert code == 0 and "would queue 6" in out
    assert _state_counts(path) == {}
    code, out, _ = run("backfill", "basic", "--limit", "2")
    assert code == 0 and "queued 2" in out
    code, out, _ = run("backfill-all", "--json")
    result = json.loads(out)
    assert result["passes"] == {
        "basic_live": 1,
        "commitments_live": 1,
        "basic": 4,
        "commitments": 6,
    }
    code, out, _ = run("stats", "--chat-id", "1")
    assert code == 0 and "chat 1" in out
    code, out, _ = run("missing", "--pass", "basic", "--json")
    assert json.loads(out)[0]["missing"] == 6
    conn = open_db(path)
    tx(
        conn,
        lambda c: c.execute(
            "UPDATE analysis_jobs SET state = 'dead', attempts = 5,"
            " last_error = 'server_error: ServerError' WHERE id = 1"
        ),
    )
    conn.close()
    code, out, _ = run("jobs", "--state", "dead")
    assert code == 0 and "server_error" in out
    code, out, _ = run("retry", "1")
    assert code == 0 and "job 1" in out
    code, _, err = run("retry", "1")
    assert code == 1 and "not dead" in err
    code, _, err = run("backfill", "nope")
    assert code == 1 and "no analysis pass named 'nope'" in err
    code, _, err = run("retry")
    assert code == 2


def test_cli_without_a_database_lists_passes_and_refuses_the_rest(tmp_path, capsys):
    assert main(["passes", "--data-dir", str(tmp_path)]) == 0
    assert "commitments" in capsys.readouterr().out
    assert main(["stats", "--data-dir", str(tmp_path)]) == 1
    assert "run chatstats import first" in capsys.readouterr().err


async def test_an_absurd_retry_after_is_capped(db, db_path, fake):
    """A Retry-After years away (or a bogus one) must not park a job for good."""
    import time

    from chatstats.analysis.queue import MAX_RETRY_AFTER_S
    from chatstats.testing.fake_llm import RateLimit

    seed_db(db_path, chats=1, conversations=1)
    fake.script([RateLimit(retry_after=10**8)])
    svc = AnalysisService(db, EventBus(db), None, config=llm_config(fake), **FAST)
    async with running(svc):
        await svc.start_run(passes=["basic"])

        def retried() -> bool:
            return (
                rows(db_path, "SELECT attempts FROM analysis_jobs")[0][0] == 1
                and rows(db_path, "SELECT state FROM analysis_jobs")[0][0] == "pending"
            )

        await wait_until(retried)
    not_before = rows(db_path, "SELECT not_before_ns FROM analysis_jobs")[0][0]
    assert not_before <= time.time_ns() + int(MAX_RETRY_AFTER_S * 1.2 * 1e9)
