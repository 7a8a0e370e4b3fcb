"""A daemon killed with SIGKILL in the middle of a turn: the user's message survives, the
aggregates stay exact, and the next start closes the turn with an accounted `interrupted`
answer (and `workflow_failed`) before serving the next turn."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx

from chatstats.testing.fake_llm import FakeLLM, Reply, ToolCalls
from tests.chatbot_support import (
    assert_aggregates_exact,
    assert_messages_accounted,
    call_sums,
    parse_sse,
    rows,
    seed_library,
)
from tests.daemon_proc import ready, serve

TOKEN = "crash-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _daemon(tmp_path: Path, fake: FakeLLM) -> tuple[subprocess.Popen[str], str]:
    env = {
        "CHATSTATS_LLM_MODEL": "openai/fake",
        "CHATSTATS_LLM_API_BASE": fake.base_url,
        "CHATSTATS_LLM_TIMEOUT_S": "60",
        "CHATSTATS_LLM_INPUT_COST_PER_TOKEN": "0.000001",
        "CHATSTATS_LLM_OUTPUT_COST_PER_TOKEN": "0.000002",
    }
    # No chat.db at the source: the import is skipped, the seeded app database is served.
    proc = serve(tmp_path / "nolib", tmp_path / "data", token=TOKEN, env=env)
    return proc, ready(proc)["url"]


def test_a_turn_cut_by_kill_9_is_closed_accounted_at_the_next_start(tmp_path):
    db_path = tmp_path / "data" / "chatstats.db"
    seed_library(db_path)
    with FakeLLM() as fake:
        fake.script(
            [
                ToolCalls((("get_stats", {"chat_id": 1}),)),
                Reply("a long answer that streams slowly " * 4, chunk_delay_s=0.5),
            ]
        )
        proc, url = _daemon(tmp_path, fake)
        try:
            with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
                thread = client.post("/api/chatbot/threads", json={"title": "t"}).json()
                with client.stream(
                    "POST",
                    f"/api/chatbot/threads/{thread['id']}/messages",
                    json={"content": "how many messages?"},
                ) as response:
                    for line in response.iter_lines():
                        if line.startswith("event: delta"):
                            os.kill(proc.pid, signal.SIGKILL)  # mid-answer
                            break
                proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

        # Dead mid-turn: the user's message and the first call's accounting are in.
        (wf,) = rows(db_path, "SELECT id, status FROM thread_workflows")
        assert wf["status"] == "running"
        assert [r["role"] for r in rows(db_path, "SELECT role FROM thread_messages")] == ["user"]
        assert call_sums(db_path, wf["id"])[4] >= 1
        assert_aggregates_exact(db_path)

        fake.script([Reply("Fine again.")])
        proc, url = _daemon(tmp_path, fake)
        try:
            with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
                msgs = client.get(f"/api/chatbot/threads/{thread['id']}/messages").json()
                assert [m["role"] for m in msgs] == ["user", "assistant"]
                answer = msgs[1]
                assert (answer["status"], answer["error_code"]) == ("error", "interrupted")
                prompt, completion, total, _cost, _calls = call_sums(db_path, wf["id"])
                assert total > 0 and answer["total_tokens"] == total
                assert (answer["prompt_tokens"], answer["completion_tokens"]) == (
                    prompt,
                    completion,
                )
                with client.stream(
                    "POST",
                    f"/api/chatbot/threads/{thread['id']}/messages",
                    json={"content": "again?"},
                ) as response:
                    events = parse_sse(list(response.iter_lines()))
                assert events[-1][0] == "message" and events[-1][1]["content"] == "Fine again."
                got = client.get(f"/api/chatbot/threads/{thread['id']}").json()
                assert got["message_count"] == 4
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)

    types = [
        r["type"]
        for r in rows(db_path, "SELECT type FROM events WHERE run_id = ? ORDER BY id", (wf["id"],))
    ]
    assert types[0] == "workflow_started" and types[-1] == "workflow_failed"
    failed = json.loads(
        rows(db_path, "SELECT data FROM events WHERE type = 'workflow_failed'")[0]["data"]
    )
    assert failed["error_code"] == "interrupted" and failed["total_tokens"] == total
    assert (
        rows(db_path, "SELECT count(*) FROM thread_workflows WHERE status = 'running'")[0][0] == 0
    )
    assert_aggregates_exact(db_path)
    assert_messages_accounted(db_path)
