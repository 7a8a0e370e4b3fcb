"""Whole chatbot turns over real HTTP on loopback, through the real LiteLLM client against the
loopback fake model: events in order, usage summed from the recorded calls, aggregates exact,
workflow events and metrics, citations that exist, and every failure of issue 10 item 4."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from chatstats import llm
from chatstats.chatbot import turn as turn_module
from chatstats.chatbot.turn import MAX_STEPS
from chatstats.events import catalogue
from chatstats.llm import tokens
from chatstats.testing.fake_llm import (
    Disconnect,
    FakeLLM,
    RateLimit,
    Reply,
    ServerError,
    Timeout,
    ToolCalls,
)
from tests.chatbot_support import (
    assert_aggregates_exact,
    assert_messages_accounted,
    call_sums,
    llm_settings,
    rows,
    seed_library,
    serving,
    turn,
)

pytestmark = pytest.mark.anyio

WORKFLOW_TYPES = (
    "workflow_started",
    "model_response",
    "tool_called",
    "workflow_completed",
    "workflow_failed",
)


@pytest.fixture(scope="module")
def fake():
    anyio.run(llm.warm_up)  # import LiteLLM (seconds) before any turn's timeouts run
    with FakeLLM() as server:
        yield server


@pytest.fixture(autouse=True)
def clean_fake(request):
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    seed_library(tmp_path / "chatstats.db")
    return tmp_path


def names(events: list[tuple[str, Any]]) -> list[str]:
    return [e for e, _ in events]


def workflow_events(db_path: Path, workflow_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (r[0], r[1], json.loads(r[2]))
        for r in rows(
            db_path,
            "SELECT type, scope, data FROM events WHERE run_id = ? ORDER BY id",
            (workflow_id,),
        )
    ]


async def test_a_turn_with_a_tool_call_streams_in_order_and_stores_the_sum_of_its_calls(
    fake, data_dir
):
    db_path = data_dir / "chatstats.db"
    fake.script(
        [
            ToolCalls((("search_messages", {"query": "call tomorrow"}),), content="Looking. "),
            Reply("You said you would call tomorrow."),
        ]
    )
    async with serving(llm_settings(fake, data_dir)) as (client, state):
        r = await client.post(
            "/api/chatbot/threads", json={"title": "Promises", "contexts": [{"chat_id": 1}]}
        )
        assert r.status_code == 200, r.text
        thread = r.json()
        assert thread["contexts"] == [{"chat_id": 1}] and thread["message_count"] == 0

        events = await turn(client, thread["id"])
        kinds = names(events)
        assert kinds[0] == "turn_started" and kinds[-1] == "message"
        assert kinds.index("tool_call") < kinds.index("tool_result")
        assert kinds.count("delta") >= 2 and "error" not in kinds
        _, call = events[kinds.index("tool_call")]
        assert call["name"] == "search_messages" and call["arguments"] == {"query": "call tomorrow"}
        _, result = events[kinds.index("tool_result")]
        assert result["id"] == call["id"] and result["error"] is None and result["count"] > 0
        text = "".join(d["text"] for e, d in events if e == "delta")
        msg = events[-1][1]
        assert msg["content"] == text == "Looking. You said you would call tomorrow."
        assert (msg["role"], msg["status"], msg["tool_calls"]) == ("assistant", "complete", 1)
        assert msg["model"] == "openai/fake" and msg["provider"] == "openai"
        assert events[0][1] == {"thread_id": thread["id"], "user_message_id": msg["id"] - 1}

        # Tokens and cost are the sums over the turn's two recorded calls.
        prompt, completion, total, cost, calls = call_sums(db_path, msg["workflow_id"])
        assert calls == 2 and prompt > 0 and completion > 0
        assert (msg["prompt_tokens"], msg["completion_tokens"], msg["total_tokens"]) == (
            prompt, completion, total)  # fmt: skip
        assert msg["cost"] == pytest.approx(cost) and cost == pytest.approx(
            prompt * 1e-6 + completion * 2e-6
        )
        # The second request carried the tool's answer, scoped to the thread's chat.
        second = fake.requests[-1].body["messages"]
        assert second[-1]["role"] == "tool" and second[-2]["tool_calls"][0]["id"] == call["id"]
        hits = json.loads(second[-1]["content"])["hits"]
        assert hits and {h["chat_id"] for h in hits} == {1}
        assert [t["function"]["name"] for t in fake.requests[0].body["tools"]] == [
            "search_messages", "get_conversation", "list_commitments", "get_analyses",
            "get_stats", "create_document"]  # fmt: skip

        # Citations name messages that exist, in the thread's chat.
        # Each carries its chat, so a client can open it without asking which chat it is in.
        cites = msg["citations"]
        assert cites and all(set(c) == {"message_guid", "chat_id"} for c in cites)
        guids = [c["message_guid"] for c in cites]
        found = rows(
            db_path,
            "SELECT guid, chat_id FROM messages WHERE guid IN (SELECT value FROM json_each(?))",
            (json.dumps(guids),),
        )
        assert len(found) == len(guids) and {r[1] for r in found} == {1}
        assert dict(found) == {c["message_guid"]: c["chat_id"] for c in cites}

        # The stored messages and the thread's aggregates.
        stored = (await client.get(f"/api/chatbot/threads/{thread['id']}/messages")).json()
        assert [m["role"] for m in stored] == ["user", "assistant"]
        assert stored[0]["content"] == "What did I promise?" and stored[1] == msg
        thread = (await client.get(f"/api/chatbot/threads/{thread['id']}")).json()
        assert thread["message_count"] == 2 and thread["total_tokens"] == total
        assert thread["total_cost"] == pytest.approx(cost)

        # Seed 003's checklist: the durable row, the events, the metrics.
        (wf,) = rows(db_path, "SELECT * FROM thread_workflows")
        assert (wf["status"], wf["steps"], wf["llm_calls"], wf["tool_calls"]) == (
            "completed", 2, 2, 1)  # fmt: skip
        assert wf["assistant_message_id"] == msg["id"]
        logged = workflow_events(db_path, msg["workflow_id"])
        assert [t for t, _, _ in logged] == [
            "workflow_started", "model_response", "tool_called", "model_response",
            "workflow_completed"]  # fmt: skip
        assert {s for _, s, _ in logged} == {f"thread:{thread['id']}"}
        # Each is its catalogued payload, whole (no field left to its default by mistake).
        typed = [catalogue.decode(t, d) for t, _, d in logged]
        assert [type(p) for p in typed] == [
            catalogue.WorkflowStarted, catalogue.ModelResponse, catalogue.ToolCalled,
            catalogue.ModelResponse, catalogue.WorkflowCompleted]  # fmt: skip
        assert all(catalogue.data_of(p) == d for p, (_, _, d) in zip(typed, logged, strict=True))
        started, first, tool, second, _ = typed
        assert isinstance(started, catalogue.WorkflowStarted)
        assert (started.user_message_id, started.model) == (msg["id"] - 1, "openai/fake")
        assert isinstance(first, catalogue.ModelResponse) and isinstance(
            second, catalogue.ModelResponse
        )
        assert (first.step, second.step, first.outcome) == (1, 2, "ok")
        assert {first.call_id, second.call_id} == {
            r[0] for r in rows(db_path, "SELECT id FROM llm_calls")
        }
        assert isinstance(tool, catalogue.ToolCalled) and (tool.step, tool.error) == (1, None)
        done = logged[-1][2]
        assert (done["prompt_tokens"], done["completion_tokens"], done["cost"]) == (
            prompt, completion, msg["cost"])  # fmt: skip
        assert done["response_time_ms"] == msg["response_time_ms"] > 0
        assert logged[2][2]["tool"] == "search_messages" and logged[2][2]["count"] > 0
        snap = state.metrics.snapshot()
        counters = snap["counters"]
        assert counters["chatbot.workflows_started"] == counters["chatbot.workflows_completed"] == 1
        assert counters["chatbot.llm_calls"] == 2 and counters["chatbot.tool_calls"] == 1
        assert counters["chatbot.prompt_tokens"] == prompt
        assert snap["gauges"]["chatbot.workflows_active"] == 0
        assert snap["latencies"]["chatbot.step"]["count"] == 2
        assert snap["latencies"]["chatbot.turn"]["count"] == 1


async def test_a_burst_of_chunks_goes_out_in_few_delta_events_and_a_slow_stream_piece_by_piece(
    fake, data_dir
):
    # The fake streams 8 characters a chunk: 50 chunks arriving together are sent as a few
    # delta events, the first at once; chunks further apart than the window go one by one.
    burst = "".join(f"word{i:03d} " for i in range(50))
    slow = "abcdefgh" * 4
    assert slow and turn_module.DELTA_COALESCE_S < 0.15
    fake.script([Reply(burst), Reply(slow, chunk_delay_s=0.15)])
    async with serving(llm_settings(fake, data_dir)) as (client, _state):
        thread = (await client.post("/api/chatbot/threads", json={})).json()
        events = await turn(client, thread["id"], "go")
        deltas = [d["text"] for e, d in events if e == "delta"]
        assert "".join(deltas) == burst == events[-1][1]["content"]
        assert 1 <= len(deltas) < 50 // 4, len(deltas)
        events = await turn(client, thread["id"], "slowly")
        deltas = [d["text"] for e, d in events if e == "delta"]
        assert deltas == ["abcdefgh"] * 4 and events[-1][1]["content"] == slow


async def test_a_document_keeps_the_contexts_its_thread_had_and_counts_reads(fake, data_dir):
    fake.script(
        [
            ToolCalls((("create_document", {"title": "Plans", "content": "1. call Ann"}),)),
            Reply("Saved it as a document."),
        ]
    )
    async with serving(llm_settings(fake, data_dir)) as (client, _state):
        thread = (
            await client.post("/api/chatbot/threads", json={"contexts": [{"contact_id": 1}]})
        ).json()
        events = await turn(client, thread["id"], "Write my plans down")
        _, result = next(e for e in events if e[0] == "tool_result")
        assert (result["name"], result["count"], result["error"]) == ("create_document", 1, None)
        r = await client.patch(
            f"/api/chatbot/threads/{thread['id']}", json={"contexts": [{"chat_id": 2}]}
        )
        assert r.json()["contexts"] == [{"chat_id": 2}]

        (listed,) = (await client.get("/api/chatbot/documents")).json()
        assert listed["contexts"] == [{"contact_id": 1}] and "content" not in listed
        assert listed["thread_id"] == thread["id"] and listed["read_count"] == 0
        doc = (await client.get(f"/api/chatbot/documents/{listed['id']}")).json()
        assert (doc["title"], doc["content"]) == ("Plans", "1. call Ann")
        read = (await client.post(f"/api/chatbot/documents/{listed['id']}/read")).json()
        assert read["read_count"] == 1 and read["last_read_at"].endswith("Z")
        assert (await client.get("/api/chatbot/documents/999")).status_code == 404
        assert (await client.post("/api/chatbot/documents/999/read")).status_code == 404


# Each fault: what the model does, the stream's last event, the stored status and code.
FAULTS = {
    "rate_limited": ([RateLimit(retry_after=1)], "error", "error", "llm_rate_limited"),
    "server_error": ([ServerError(500)], "error", "error", "llm_server_error"),
    "timeout": ([Timeout(3.0)], "error", "error", "llm_timeout"),
    "dropped": ([Disconnect()], "error", "error", None),
    "step_limit": (
        [ToolCalls((("get_stats", {}),)) for _ in range(MAX_STEPS)],
        "error",
        "error",
        "step_limit",
    ),
    "malformed_arguments": (
        [ToolCalls((("search_messages", '{"query": "call'),)), Reply("Nothing found.")],
        "message",
        "complete",
        None,
    ),
    "unknown_tool": (
        [ToolCalls((("delete_everything", {}),)), Reply("I cannot do that.")],
        "message",
        "complete",
        None,
    ),
    "partial_then_failure": (
        [ToolCalls((("get_stats", {}),), content="Checking. "), ServerError(503)],
        "error",
        "partial",
        "llm_server_error",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_failing_turn_is_stored_accounted_and_the_next_turn_works(fake, data_dir, fault):
    script, last, status, code = FAULTS[fault]
    db_path = data_dir / "chatstats.db"
    fake.script(script)
    async with serving(llm_settings(fake, data_dir)) as (client, state):
        thread = (await client.post("/api/chatbot/threads", json={})).json()
        events = await turn(client, thread["id"], "first question")
        assert names(events)[0] == "turn_started" and names(events)[-1] == last
        assert names(events).count("message") + names(events).count("error") == 1
        stored = (await client.get(f"/api/chatbot/threads/{thread['id']}/messages")).json()
        user, answer = stored
        assert user["content"] == "first question"  # never lost
        assert answer["status"] == status
        if code is not None:
            assert answer["error_code"] == code
        if last == "error":
            assert events[-1][1]["code"] == answer["error_code"]
            assert set(events[-1][1]) == {"code", "message"}
            (failed,) = [catalogue.decode(t, d) for t, _, d in workflow_events(
                db_path, answer["workflow_id"]) if t.startswith("workflow_")][1:]  # fmt: skip
            assert isinstance(failed, catalogue.WorkflowFailed)
            assert (failed.error_code, failed.partial) == (
                answer["error_code"],
                status == "partial",
            )
            assert (failed.message_id, failed.total_tokens) == (
                answer["id"],
                answer["total_tokens"],
            )
        if fault in ("malformed_arguments", "unknown_tool"):
            _, result = next(e for e in events if e[0] == "tool_result")
            assert result["count"] == 0
            assert result["error"] == {
                "malformed_arguments": "invalid_arguments", "unknown_tool": "unknown_tool"
            }[fault]  # fmt: skip
            told = json.loads(fake.requests[-1].body["messages"][-1]["content"])
            assert "error" in told
        if fault == "partial_then_failure":
            assert answer["content"] == "Checking. "
        *_, total, _cost, calls = call_sums(db_path, answer["workflow_id"])
        assert calls >= 1 and answer["total_tokens"] == total

        # The next turn works.
        fake.script([Reply("All good now.")])
        events = await turn(client, thread["id"], "second question")
        assert names(events)[-1] == "message" and events[-1][1]["content"] == "All good now."
        assert state.metrics.snapshot()["gauges"]["chatbot.workflows_active"] == 0
    assert_aggregates_exact(db_path)
    assert_messages_accounted(db_path)


async def test_a_client_that_leaves_mid_stream_leaves_a_partial_answer_accounted(fake, data_dir):
    db_path = data_dir / "chatstats.db"
    fake.script([Reply("one two three four five six seven eight nine ten", chunk_delay_s=0.2)])
    async with serving(llm_settings(fake, data_dir, llm_timeout_s=10.0)) as (client, state):
        thread = (await client.post("/api/chatbot/threads", json={})).json()
        with anyio.fail_after(20):
            async with client.stream(
                "POST",
                f"/api/chatbot/threads/{thread['id']}/messages",
                json={"content": "count"},
            ) as response:
                async for line in response.aiter_lines():
                    if line.startswith("event: delta"):
                        break  # leave after the first piece
            while not rows(db_path, "SELECT 1 FROM thread_workflows WHERE status != 'running'"):
                await anyio.sleep(0.05)
        _user, answer = (await client.get(f"/api/chatbot/threads/{thread['id']}/messages")).json()
        assert (answer["status"], answer["error_code"]) == ("partial", "client_disconnected")
        assert answer["content"] and "one two three four five six seven eight nine ten".startswith(
            answer["content"]
        )
        ((outcome,),) = rows(db_path, "SELECT outcome FROM llm_calls")
        assert outcome == "cancelled"
        fake.script([Reply("Back.")])
        assert names(await turn(client, thread["id"]))[-1] == "message"
        assert state.metrics.snapshot()["counters"]["chatbot.workflows_failed"] == 1
    assert_aggregates_exact(db_path)
    assert_messages_accounted(db_path)


async def test_without_a_model_a_turn_says_so_and_everything_else_works(data_dir):
    db_path = data_dir / "chatstats.db"
    async with serving(llm_settings(None, data_dir)) as (client, _state):
        thread = (await client.post("/api/chatbot/threads", json={"title": "t"})).json()
        events = await turn(client, thread["id"])
        assert names(events) == ["turn_started", "error"]
        assert events[-1][1]["code"] == "llm_not_configured"
        assert "CHATSTATS_LLM_MODEL" in events[-1][1]["message"]
        user, answer = (await client.get(f"/api/chatbot/threads/{thread['id']}/messages")).json()
        assert user["content"] == "What did I promise?" and answer["status"] == "error"
        assert answer["total_tokens"] == 0 and answer["cost"] == 0.0
        assert (await client.get("/api/chatbot/threads")).json()[0]["message_count"] == 2
        assert (await client.get("/api/chatbot/documents")).json() == []
        assert (await client.get("/api/chats")).status_code == 200
    assert_aggregates_exact(db_path)


async def test_many_concurrent_turns_keep_every_aggregate_exact(fake, data_dir):
    db_path = data_dir / "chatstats.db"
    fake.script(
        [
            ToolCalls((("search_messages", {"query": "tomorrow"}),)),
            ServerError(500),
            RateLimit(),
            ToolCalls((("get_conversation", {"conversation_id": 1}),)),
        ]
    )
    async with serving(llm_settings(fake, data_dir)) as (client, _state):
        threads = [(await client.post("/api/chatbot/threads", json={})).json()["id"] for _ in "ab"]
        outcomes: list[str] = []

        async def ask(thread_id: int, n: int) -> None:
            events = await turn(client, thread_id, f"question {n}")
            outcomes.append(events[-1][0])

        async with anyio.create_task_group() as tg:
            for n in range(12):
                tg.start_soon(ask, threads[n % 2], n)
        assert len(outcomes) == 12 and outcomes.count("error") == 2
        listed = (await client.get("/api/chatbot/threads")).json()
        assert sum(t["message_count"] for t in listed) == 24
        assert (
            rows(db_path, "SELECT count(*) FROM thread_workflows WHERE status = 'running'")[0][0]
            == 0
        )
    assert_aggregates_exact(db_path)
    assert_messages_accounted(db_path)


async def test_bad_requests_are_clear_json_errors_and_store_nothing(fake, data_dir):
    db_path = data_dir / "chatstats.db"
    async with serving(llm_settings(fake, data_dir)) as (client, _state):
        thread = (await client.post("/api/chatbot/threads", json={})).json()
        msgs = f"/api/chatbot/threads/{thread['id']}/messages"
        for method, url, body, status in [
            ("post", "/api/chatbot/threads", {"contexts": [{"chat_id": 99}]}, 404),
            ("post", "/api/chatbot/threads", {"contexts": [{"chat_id": 1, "contact_id": 1}]}, 400),
            ("post", "/api/chatbot/threads", {"contexts": [{"chat_id": "1"}]}, 400),
            ("post", "/api/chatbot/threads", {"contexts": {"chat_id": 1}}, 400),
            ("post", "/api/chatbot/threads", {"title": 5}, 400),
            ("post", "/api/chatbot/threads", {"name": "x"}, 400),
            ("post", "/api/chatbot/threads", [1], 400),
            ("patch", "/api/chatbot/threads/999", {"title": "x"}, 404),
            ("get", "/api/chatbot/threads/999", None, 404),
            ("get", "/api/chatbot/threads?limit=0", None, 400),
            ("get", f"{msgs}?after_id=x", None, 400),
            ("post", "/api/chatbot/threads/999/messages", {"content": "hi"}, 404),
            ("post", msgs, {"content": ""}, 400),
            ("post", msgs, {"content": "   "}, 400),
            ("post", msgs, {"content": 3}, 400),
            ("post", msgs, {"content": "x" * 20_001}, 400),
            ("post", msgs, {"content": "hi", "model": "gpt"}, 400),
            ("post", msgs, None, 400),
        ]:
            kw: dict[str, Any] = {"json": body} if body is not None else {}
            r = await getattr(client, method)(url, **kw)
            assert r.status_code == status, (url, body, r.text)
            assert r.headers["content-type"] == "application/json"
            assert set(r.json()["error"]) == {"code", "message"}
        r = await client.post(msgs, content=b"{not json")
        assert r.status_code == 400
    assert rows(db_path, "SELECT count(*) FROM thread_messages")[0][0] == 0
    assert rows(db_path, "SELECT count(*) FROM threads")[0][0] == 1


async def test_a_turns_tool_outputs_share_one_budget(fake, data_dir, monkeypatch):
    monkeypatch.setattr(turn_module, "TURN_TOOL_TOKENS", 150)
    search = ("search_messages", {"query": "call tomorrow"})
    fake.script([ToolCalls((search, search)), Reply("Done.")])
    async with serving(llm_settings(fake, data_dir)) as (client, _state):
        thread = (await client.post("/api/chatbot/threads", json={})).json()
        events = await turn(client, thread["id"])
        results = [d for e, d in events if e == "tool_result"]
        assert [r["error"] for r in results] == [None, "budget_spent"]
        assert results[0]["count"] > 0 and events[-1][0] == "message"
        told = fake.requests[-1].body["messages"]
        assert sum(tokens.count(m["content"]) for m in told if m["role"] == "tool") < 200


async def test_a_turn_cut_by_shutdown_is_stored_as_interrupted(fake, data_dir):
    db_path = data_dir / "chatstats.db"
    fake.script([Reply("one two three four five six seven eight", chunk_delay_s=0.2)])
    async with serving(llm_settings(fake, data_dir, llm_timeout_s=10.0)) as (client, state):
        thread = (await client.post("/api/chatbot/threads", json={})).json()
        with anyio.fail_after(20):
            async with client.stream(
                "POST", f"/api/chatbot/threads/{thread['id']}/messages", json={"content": "go"}
            ) as response:
                lines = []
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line.startswith("event: delta"):
                        state.shutdown.set()  # the daemon stops: the stream ends
            while not rows(db_path, "SELECT 1 FROM thread_workflows WHERE status != 'running'"):
                await anyio.sleep(0.05)
        _user, answer = (await client.get(f"/api/chatbot/threads/{thread['id']}/messages")).json()
        assert (answer["status"], answer["error_code"]) == ("partial", "interrupted")
        assert "event: message" not in lines
    assert_aggregates_exact(db_path)
    assert_messages_accounted(db_path)
