"""The LLM door, through the real LiteLLM client against the scripted FakeLLM server.

LiteLLM is imported once per session (~4 s); the module shares one event loop and one
FakeLLM so the suite stays fast.
"""

from __future__ import annotations

import email.utils
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import anyio
import httpx
import msgspec
import pytest
import structlog

from chatstats import config as config_mod
from chatstats import llm
from chatstats.config import Settings
from chatstats.db import Database
from chatstats.testing.fake_llm import (
    BadJSONBody,
    ClientError,
    Disconnect,
    FakeLLM,
    Malformed,
    RateLimit,
    Reply,
    ServerError,
    Timeout,
    example_for_schema,
)

pytestmark = [
    pytest.mark.anyio,
    # LiteLLM 1.106 reads pydantic attributes pydantic 2.11+ deprecates, on every stream.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:litellm.*"),
]

SECRET = "SECRET-PROMPT-7f3a"
MESSAGES = [
    {"role": "system", "content": "You summarise conversations."},
    {"role": "user", "content": f"Summarise this: {SECRET}"},
]


class Summary(msgspec.Struct):
    mood: Literal["happy", "sad", "neutral"]
    topics: list[str]
    score: int
    note: str | None = None


SCHEMA = msgspec.json.schema(Summary)


@pytest.fixture(scope="module")
def anyio_backend():
    # One loop for the module: LiteLLM keeps per-loop clients and background tasks.
    return "asyncio"


@pytest.fixture(scope="module", autouse=True)
def _plain_structlog() -> Iterator[None]:
    """Another module may have left structlog bound to a stream pytest has since closed;
    these tests read what reaches stdout, so log to whatever stdout is now."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture(scope="module")
async def warm_lag(anyio_backend) -> float:
    """Import LiteLLM once, measuring the worst stall of the loop meanwhile."""
    worst = 0.0
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            before = time.perf_counter()
            await anyio.sleep(0.01)
            worst = max(worst, time.perf_counter() - before - 0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await llm.warm_up()
        done.set()
    return worst


@pytest.fixture(autouse=True)
def _fresh(fake: FakeLLM) -> Iterator[None]:
    fake.reset()
    fake.latency_s = 0.0
    yield
    fake.reset()


@pytest.fixture
async def db(tmp_path: Path, warm_lag: float) -> AsyncIterator[Database]:
    database = Database(tmp_path / "chatstats.db")
    await database.open()
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def config(fake: FakeLLM, warm_lag: float) -> llm.LLMConfig:
    return llm.LLMConfig(model="fake-unpriced", api_base=fake.base_url, timeout_s=5.0)


def rows(db: Database) -> list[dict]:
    import sqlite3

    conn = sqlite3.connect(db.path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM llm_calls ORDER BY id")]
    finally:
        conn.close()


# --- import and warm-up ---------------------------------------------------------------------


def test_import_does_not_load_litellm():
    code = (
        "import sys, time; t = time.perf_counter(); import chatstats.llm; "
        "print(time.perf_counter() - t); "
        "assert 'litellm' not in sys.modules and 'openai' not in sys.modules, 'loaded'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) < 1.0  # cold interpreter; ~12 ms once the daemon runs


async def test_warm_up_leaves_the_loop_serving(warm_lag: float):
    assert llm.loaded()
    assert warm_lag < 1.0  # measured ~0.25 s; importing on the loop would stall ~4 s


# --- success, usage, cost -----------------------------------------------------------------------


async def test_success_parses_and_records_usage(fake, config, db):
    accountant = llm.LLMAccountant(db)
    result = await llm.complete(
        config,
        MESSAGES,
        json_schema=SCHEMA,
        schema_name="summary",
        purpose="analysis",
        record=accountant.record,
        job_id=7,
        run_id="r1",
        conversation_id=42,
    )
    summary = llm.validate(result.parsed, Summary)
    assert summary.mood == "happy" and summary.topics and isinstance(summary.score, int)
    assert result.outcome == "ok" and result.error is None
    assert result.prompt_tokens and result.completion_tokens
    assert result.total_tokens == result.prompt_tokens + result.completion_tokens
    assert result.cost is None and result.provider == "openai"

    [req] = fake.requests
    assert req.model == "fake-unpriced" and req.messages == 2 and req.response_format
    fmt = req.body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "summary"
    assert fmt["json_schema"]["strict"] is True

    [row] = rows(db)
    assert row["id"] == result.call_id
    assert (row["purpose"], row["job_id"], row["run_id"], row["conversation_id"]) == (
        "analysis",
        7,
        "r1",
        42,
    )
    assert row["thread_id"] is None
    assert (row["model"], row["provider"], row["outcome"], row["error"]) == (
        "fake-unpriced",
        "openai",
        "ok",
        None,
    )
    assert row["prompt_tokens"] == result.prompt_tokens
    assert row["completion_tokens"] == result.completion_tokens
    assert row["total_tokens"] == result.total_tokens
    assert row["cost"] is None and row["latency_ms"] > 0 and row["created_ns"] > 0


async def test_plain_completion_without_schema(fake, config):
    fake.script([Reply("just words, not JSON")])
    records: list[llm.CallRecord] = []
    result = await llm.complete(config, MESSAGES, purpose="chatbot", record=records.append)
    assert result.content == "just words, not JSON" and result.parsed is None
    assert not fake.requests[0].response_format
    assert [r.outcome for r in records] == ["ok"]


async def test_priced_model_gets_a_cost(fake):
    config = llm.LLMConfig(
        model="fake-priced",
        api_base=fake.base_url,
        input_cost_per_token=1e-6,
        output_cost_per_token=2e-6,
    )
    records: list[llm.CallRecord] = []
    result = await llm.complete(
        config, MESSAGES, json_schema=SCHEMA, purpose="analysis", record=records.append
    )
    expected = result.prompt_tokens * 1e-6 + result.completion_tokens * 2e-6
    assert result.cost == pytest.approx(expected)
    assert records[0].cost == pytest.approx(expected)


async def test_unpriced_model_cost_is_none_not_a_crash(config):
    records: list[llm.CallRecord] = []
    result = await llm.complete(config, MESSAGES, purpose="analysis", record=records.append)
    assert result.cost is None and records[0].cost is None
    assert records[0].prompt_tokens and records[0].completion_tokens


# --- failures: each classified, each accounted once ----------------------------------------------


async def test_rate_limit_with_retry_after_seconds(fake, config):
    fake.script([RateLimit(retry_after=7)])
    records: list[llm.CallRecord] = []
    with pytest.raises(llm.RateLimited) as info:
        await llm.complete(config, MESSAGES, purpose="analysis", record=records.append)
    err = info.value
    assert err.retryable and err.outcome == "rate_limited" and err.status_code == 429
    assert err.retry_after_s == pytest.approx(7)
    assert [r.outcome for r in records] == ["rate_limited"]
    assert err.record is records[0]
    assert len(fake.requests) == 1  # neither LiteLLM nor the OpenAI SDK retried


async def test_rate_limit_with_retry_after_http_date(fake, config):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    fake.script([RateLimit(retry_after=when)])
    with pytest.raises(llm.RateLimited) as info:
        await llm.complete(config, MESSAGES, purpose="analysis", record=None)
    assert 25 <= info.value.retry_after_s <= 31


async def test_rate_limit_without_retry_after(fake, config):
    fake.script([RateLimit(retry_after=None)])
    with pytest.raises(llm.RateLimited) as info:
        await llm.complete(config, MESSAGES, purpose="analysis", record=None)
    assert info.value.retry_after_s is None


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(fake, config, status):
    fake.script([ServerError(status)])
    records: list[llm.CallRecord] = []
    with pytest.raises(llm.ServerError) as info:
        await llm.complete(config, MESSAGES, purpose="analysis", record=records.append)
    assert info.value.retryable and info.value.status_code == status
    assert [r.outcome for r in records] == ["server_error"]
    assert len(fake.requests) == 1


async def test_timeout(fake):
    config = llm.LLMConfig(model="fake-slow", api_base=fake.base_url, timeout_s=0.3)
    fake.script([Timeout(3)])
    records: list[llm.CallRecord] = []
    started = time.perf_counter()
    with pytest.raises(llm.TimedOut) as info:
        await llm.complete(config, MESSAGES, purpose="analysis", record=records.append)
    assert time.perf_counter() - started < 2.0
    assert info.value.retryable
    assert [r.outcome for r in records] == ["timeout"]
    assert records[0].latency_ms >= 250


async def test_malformed_json_is_invalid_output_and_keeps_usage(fake, config):
    fake.script([Malformed()])
    records: list[llm.CallRecord] = []
    with pytest.raises(llm.InvalidOutput) as info:
        await llm.complete(
            config, MESSAGES, json_schema=SCHEMA, purpose="analysis", record=records.append
        )
    assert info.value.retryable
    [rec] = records
    assert rec.outcome == "invalid_output" and rec.error == "InvalidOutput not_json"
    # The model answered, so the tokens were spent: they are accounted all the same.
    assert rec.prompt_tokens and rec.completion_tokens


async def test_invalid_http_body_is_an_llm_error(fake, config):
    fake.script([BadJSONBody()])
    records: list[llm.CallRecord] = []
    with pytest.raises(llm.LLMError) as info:
        await llm.complete(config, MESSAGES, purpose="analysis", record=records.append)
    assert info.value.retryable
    assert len(records) == 1 and records[0].outcome == info.value.outcome


async def test_dropped_connection_is_connection_failed(fake, config):
    fake.script([Disconnect()])
    with pytest.raises(llm.ConnectionFailed):
        await llm.complete(config, MESSAGES, purpose="analysis", record=None)


async def test_refused_connection_is_connection_failed(warm_lag):
    with anyio.fail_after(10):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()
    config = llm.LLMConfig(model="nobody", api_base=f"http://127.0.0.1:{port}/v1", timeout_s=2)
    records: list[llm.CallRecord] = []
    with pytest.raises(llm.ConnectionFailed):
        await llm.complete(config, MESSAGES, purpose="analysis", record=records.append)
    assert [r.outcome for r in records] == ["connection_error"]


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_client_errors_are_not_retryable(fake, config, status):
    fake.script([ClientError(status)])
    with pytest.raises(llm.BadRequest) as info:
        await llm.complete(config, MESSAGES, purpose="analysis", record=None)
    assert not info.value.retryable and info.value.status_code == status


@pytest.mark.parametrize(
    "fault",
    [
        RateLimit(retry_after=1),
        ServerError(500),
        Timeout(3),
        Malformed(),
        BadJSONBody(),
        Disconnect(),
        ClientError(400),
        None,
    ],
    ids=lambda f: type(f).__name__,
)
async def test_every_call_is_accounted_exactly_once_in_the_db(fake, db, fault):
    config = llm.LLMConfig(model="fake-acct", api_base=fake.base_url, timeout_s=0.3)
    if fault is not None:
        fake.script([fault])
    accountant = llm.LLMAccountant(db)
    call_id = None
    try:
        result = await llm.complete(
            config,
            MESSAGES,
            json_schema=SCHEMA,
            purpose="analysis",
            record=accountant.record,
            run_id="acct",
        )
        call_id = result.call_id
    except llm.LLMError as err:
        call_id = err.call_id
    [row] = rows(db)
    assert row["id"] == call_id and row["run_id"] == "acct" and row["model"] == "fake-acct"
    assert (row["outcome"] == "ok") == (fault is None)
    assert SECRET not in json.dumps(row)


async def test_cancelled_call_is_still_accounted(fake, config):
    fake.script([Timeout(3)])
    records: list[llm.CallRecord] = []
    with anyio.move_on_after(0.2):
        await llm.complete(config, MESSAGES, purpose="analysis", record=records.append)
    assert [r.outcome for r in records] == ["cancelled"]


async def test_not_configured_makes_no_call(fake, warm_lag):
    records: list[llm.CallRecord] = []
    with pytest.raises(llm.NotConfigured) as info:
        await llm.complete(None, MESSAGES, purpose="analysis", record=records.append)
    assert not info.value.retryable
    assert records == [] and fake.requests == []


async def test_sync_recorder_gets_no_id_and_async_recorder_sets_it(config):
    stash: list[llm.CallRecord] = []
    result = await llm.complete(config, MESSAGES, purpose="analysis", record=stash.append)
    assert result.call_id is None and len(stash) == 1

    async def recorder(rec: llm.CallRecord) -> int:
        return 99

    result = await llm.complete(config, MESSAGES, purpose="analysis", record=recorder)
    assert result.call_id == 99


async def test_nothing_private_reaches_stdout_or_stderr(fake, config, capsys):
    fake.script([RateLimit(), ServerError(500), Malformed(), BadJSONBody(), Disconnect()])
    for _ in range(5):
        with pytest.raises(llm.LLMError) as info:
            await llm.complete(config, MESSAGES, json_schema=SCHEMA, purpose="x", record=None)
        assert SECRET not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__
    out, err = capsys.readouterr()
    assert SECRET not in out and SECRET not in err
    # LiteLLM's help banners would break the desktop app's one-JSON-object-per-line stdout.
    assert "Give Feedback" not in out and "LiteLLM" not in out


async def test_concurrent_calls_are_concurrent(fake, config):
    fake.latency_s = 0.2
    results: list[llm.CallResult] = []

    async def one() -> None:
        results.append(await llm.complete(config, MESSAGES, purpose="bench", record=None))

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert len(results) == 5 and fake.max_in_flight == 5
    assert time.perf_counter() - started < 0.9


# --- streaming --------------------------------------------------------------------------------------


async def test_stream_yields_deltas_and_records_usage(fake, db):
    config = llm.LLMConfig(
        model="fake-stream",
        api_base=fake.base_url,
        input_cost_per_token=1e-6,
        output_cost_per_token=1e-6,
    )
    fake.script([Reply("The quick brown fox jumps over the lazy dog.")])
    accountant = llm.LLMAccountant(db)
    stream = llm.stream(config, MESSAGES, purpose="chatbot", record=accountant.record, thread_id=5)
    deltas = [d async for d in stream]
    assert len(deltas) > 1 and "".join(deltas) == "The quick brown fox jumps over the lazy dog."
    result = stream.result
    assert result is not None and result.content == "".join(deltas)
    assert result.prompt_tokens and result.completion_tokens
    assert result.cost == pytest.approx((result.prompt_tokens + result.completion_tokens) * 1e-6)
    body = fake.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    [row] = rows(db)
    assert row["id"] == result.call_id and row["thread_id"] == 5 and row["outcome"] == "ok"
    assert row["completion_tokens"] == result.completion_tokens


async def test_stream_unpriced_has_no_cost(config):
    records: list[llm.CallRecord] = []
    async with llm.stream(config, MESSAGES, purpose="chatbot", record=records.append) as s:
        text = "".join([d async for d in s])
    assert text and s.result is not None and s.result.cost is None
    assert [r.outcome for r in records] == ["ok"] and records[0].prompt_tokens


async def test_stream_failure_is_classified_and_accounted(fake, config):
    fake.script([RateLimit(retry_after=2)])
    records: list[llm.CallRecord] = []
    with pytest.raises(llm.RateLimited) as info:
        async for _ in llm.stream(config, MESSAGES, purpose="chatbot", record=records.append):
            pass
    assert info.value.retry_after_s == pytest.approx(2)
    assert [r.outcome for r in records] == ["rate_limited"]


async def test_stream_closed_early_is_accounted_as_cancelled(fake, config):
    fake.script([Reply("a long answer " * 20)])
    records: list[llm.CallRecord] = []
    async with llm.stream(config, MESSAGES, purpose="chatbot", record=records.append) as s:
        async for _ in s:
            break
    assert [r.outcome for r in records] == ["cancelled"] and s.result is None


async def test_stream_not_configured(warm_lag):
    with pytest.raises(llm.NotConfigured):
        async for _ in llm.stream(None, MESSAGES, purpose="chatbot", record=None):
            pass


# --- helpers ------------------------------------------------------------------------------------


def test_validate_names_the_path_not_the_value():
    with pytest.raises(llm.InvalidOutput) as info:
        llm.validate({"mood": "ecstatic-SECRET", "topics": [], "score": 1}, Summary)
    assert "SECRET" not in str(info.value) and "$.mood" in str(info.value)
    ok = llm.validate({"mood": "sad", "topics": ["x"], "score": 2}, Summary)
    assert ok == Summary(mood="sad", topics=["x"], score=2)


def test_parse_json_accepts_fences_and_rejects_prose():
    assert llm.parse_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert llm.parse_json(' {"a": [1, 2]} ') == {"a": [1, 2]}
    for bad in ("", None, "not json", '{"a": '):
        with pytest.raises(llm.InvalidOutput):
            llm.parse_json(bad)


def test_parse_retry_after():
    now = 1_700_000_000.0
    assert llm.parse_retry_after("3") == 3.0
    assert llm.parse_retry_after("0.5") == 0.5
    assert llm.parse_retry_after("-4") == 0.0
    assert llm.parse_retry_after(email.utils.formatdate(now + 20, usegmt=True), now=now) == 20
    assert llm.parse_retry_after(email.utils.formatdate(now - 20, usegmt=True), now=now) == 0
    for junk in (None, "", "soon", "nan"):
        assert llm.parse_retry_after(junk) is None


def test_configured_reads_llm_settings():
    assert llm.configured(None) is None
    assert llm.configured(Settings(llm_model="")) is None
    env = {
        "CHATSTATS_LLM_MODEL": "openai/gpt-4o-mini",
        "CHATSTATS_LLM_API_BASE": "",
        "CHATSTATS_LLM_TIMEOUT_S": "12.5",
        "CHATSTATS_LLM_INPUT_COST_PER_TOKEN": "1e-7",
        "CHATSTATS_LLM_OUTPUT_COST_PER_TOKEN": "2e-7",
        "CHATSTATS_LLM_MAX_OUTPUT_TOKENS": "800",
        "CHATSTATS_LLM_PROVIDER": "openai",
    }
    cfg = llm.configured(config_mod.load(environ=env))
    assert cfg == llm.LLMConfig(
        model="openai/gpt-4o-mini",
        provider="openai",
        timeout_s=12.5,
        input_cost_per_token=1e-7,
        output_cost_per_token=2e-7,
        max_output_tokens=800,
    )


async def test_usage_totals(db):
    accountant = llm.LLMAccountant(db)

    def rec(**kw) -> llm.CallRecord:
        base = dict(
            purpose="analysis",
            model="m",
            provider="openai",
            prompt_tokens=10,
            completion_tokens=5,
            total_tokens=15,
            cost=0.5,
            latency_ms=1.0,
            outcome="ok",
            error=None,
            run_id="a",
            conversation_id=1,
        )
        base.update(kw)
        return llm.CallRecord(**base)

    await accountant.record(rec())
    await accountant.record(rec(cost=None))  # used tokens, no price
    await accountant.record(
        rec(prompt_tokens=None, completion_tokens=None, total_tokens=None, cost=None,
            outcome="rate_limited", error="RateLimitError 429")
    )  # fmt: skip
    await accountant.record(rec(run_id="b", conversation_id=2, cost=0.25))
    everything = await db.read(llm.usage_totals)
    assert everything == {
        "calls": 4,
        "prompt_tokens": 30,
        "completion_tokens": 15,
        "total_tokens": 45,
        "cost": 0.75,
        "unpriced_calls": 1,
        "failed_calls": 1,
    }
    run_a = await db.read(lambda c: llm.usage_totals(c, run_id="a"))
    assert (run_a["calls"], run_a["cost"], run_a["unpriced_calls"]) == (3, 0.5, 1)
    conv2 = await db.read(lambda c: llm.usage_totals(c, conversation_id=2, run_id="b"))
    assert (conv2["calls"], conv2["prompt_tokens"], conv2["cost"]) == (1, 10, 0.25)
    none = await db.read(lambda c: llm.usage_totals(c, job_id=12345))
    assert none["calls"] == 0 and none["cost"] == 0.0


# --- the fake itself ----------------------------------------------------------------------------


def test_fake_answers_a_sync_client_with_schema_valid_json():
    with FakeLLM() as server:
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": "s", "schema": SCHEMA, "strict": True},
        }
        body = {"model": "m", "messages": MESSAGES, "response_format": response_format}
        r = httpx.post(server.base_url + "/chat/completions", json=body, timeout=5)
        assert r.status_code == 200
        data = r.json()
        assert data["object"] == "chat.completion" and data["model"] == "m"
        assert data["choices"][0]["finish_reason"] == "stop"
        usage = data["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        msgspec.json.decode(data["choices"][0]["message"]["content"], type=Summary)
        server.script([RateLimit(retry_after=4)])
        r = httpx.post(server.base_url + "/chat/completions", json=body, timeout=5)
        assert r.status_code == 429 and r.headers["retry-after"] == "4"
        assert len(server.requests) == 2 and server.pending() == 0


class Item(msgspec.Struct):
    kind: Literal["promise", "request"]
    due: str | None
    weight: float


class Nested(msgspec.Struct):
    items: list[Item]
    count: int
    flag: bool


def test_example_for_schema_covers_refs_enums_and_bounds():
    schema = msgspec.json.schema(Nested)
    assert "$defs" in schema
    value = example_for_schema(schema)
    msgspec.convert(value, Nested)
    bounded = {"type": "integer", "minimum": 3, "maximum": 9}
    assert example_for_schema(bounded) == 3
    assert example_for_schema({"type": "array", "items": {"type": "string"}, "minItems": 2}) == [
        "example",
        "example",
    ]
