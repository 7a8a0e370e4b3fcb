"""A late message: one that arrives after its conversation was sealed, dated within 90
minutes of its end (a phone that was offline, another device syncing late). Decided by
message times, as a fresh split would: it joins that conversation, which is reopened
(unsealed, timer re-armed, `conversation_reopened` published), its analyses are marked
stale and counted as missing, and the sealed passes run again once it is sealed again.

The first test drives the whole daemon: the chat.db writer in this process, the daemon in
another, the real LiteLLM client against a scripted server. The second checks the parts a
user reaches without a model (coverage, missing, backfill) on the same facts.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatstats.ingest import tracker
from chatstats.sample.library import make_library
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


def events_of(client: httpx.Client, chat_id: int, until: str) -> list[dict[str, Any]]:
    """The chat's events on the analysis stream (SSE 5, from the start), up to the first
    of type `until`."""
    out: list[dict[str, Any]] = []
    params = {"start_id": "0", "scope": f"chat:{chat_id}"}
    path = "/api/analysis/streaming/redis_stream/task_events:analysis"
    with client.stream("GET", path, params=params, timeout=10) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                out.append(json.loads(line[5:]))
                if out[-1]["type"] == until:
                    return out
    raise AssertionError(f"no {until} event")


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
                return next(
                    (m["conversation_id"] for m in page if m["guid"] == message_guid), None
                )

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
            reopened = events_of(client, chat["id"], "conversation_reopened")[-1]
            assert reopened["data"]["conversation_id"] == cid
            assert reopened["data"]["message_count"] == 3
            stale = wait_for(
                lambda: (r := sealed_results(client, cid))
                and all(r[p]["stale"] for p in SEALED_PASSES)
                and r,
                what="stale analyses",
            )
            assert {p: stale[p]["id"] for p in SEALED_PASSES} == {
                p: before[p]["id"] for p in SEALED_PASSES
            }
            with sqlite3.connect(data / "chatstats.db") as conn:  # a read, beside the daemon
                status = tracker.status(conn, time.time_ns())
            timer = next(c for c in status if c.conversation_id == cid)
            assert timer.scheduled and 8 * 60 < timer.seconds_left <= 10 * 60  # from the late one

            # Sealed again (now, by hand, rather than in 10 minutes): the sealed passes run
            # again; while they do, the stale results count as missing.
            llm.latency_s = 3.0
            sealed = subprocess.run(
                [sys.executable, "-m", "chatstats", "force-seal", str(chat["id"])]
                + ["--data-dir", str(data)],
                capture_output=True,
                text=True,
            )
            assert sealed.returncode == 0, sealed.stderr
            cover = client.get("/api/analysis/coverage", params={"chat_id": chat["id"]}).json()
            basic = next(p for p in cover["passes"] if p["pass"] == "basic")
            assert (basic["conversations"], basic["analysed"], basic["missing"]) == (1, 0, 1)
            assert basic["stale"] == 1
            llm.latency_s = 0.0
            after = wait_for(
                lambda: (r := sealed_results(client, cid))
                and not any(r[p]["stale"] for p in SEALED_PASSES)
                and r,
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
