"""The whole pipeline in one daemon: a message lands in chat.db, live sync ingests it, the
conversation is sealed, the sealed passes run through the real LiteLLM client against an
OpenAI-compatible server on loopback, and the results (with usage) are served."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from chatstats.sample.generate import make_library
from chatstats.sample.writer import MessagesWriter
from chatstats.testing.fake_llm import FakeLLM
from tests import daemon_proc

TOKEN = "pipeline"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline-lib")
    make_library(root, messages=300, seed=41)
    return root


def test_a_sealed_conversation_is_analysed_and_served_with_usage(sample: Path, tmp_path: Path):
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
            health = daemon_proc.wait_live(url, TOKEN)
            deadline = time.monotonic() + 30
            assert health["analysis"]["model"] == "openai/fake"

            # A short exchange in a new chat arrives live...
            w = MessagesWriter(lib / "chat.db", create=False)
            h = w.handle("+15550102030")
            chat = w.chat([h])
            now = time.time_ns()
            _r, guid = w.message(
                chat, "can you send me the report by friday?", from_me=False, sender=h, date=now
            )
            w.message(chat, "yes, I'll send it thursday", from_me=True, date=now + 10**9)
            w.close()
            conv_id = None
            while time.monotonic() < deadline and conv_id is None:
                chats = client.get("/api/chats").json()
                mine = [c for c in chats if c["guid"].endswith("+15550102030")]
                if mine:
                    page = client.get(f"/api/chats/{mine[0]['id']}/messages").json()
                    conv_id = next((m["conversation_id"] for m in page if m["guid"] == guid), None)
                time.sleep(0.1)
            assert conv_id is not None
            # ... and is sealed now rather than in 90 minutes (another process, like a user).
            sealed = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "chatstats",
                    "force-seal",
                    str(mine[0]["id"]),
                    "--data-dir",
                    str(data),
                ],
                capture_output=True,
                text=True,
            )
            assert sealed.returncode == 0, sealed.stderr
            analyses: list = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                analyses = client.get(f"/api/conversations/{conv_id}/analyses").json()
                if {"basic", "commitments"} <= {a["pass"] for a in analyses}:
                    break
                time.sleep(0.2)
            passes = {a["pass"] for a in analyses}
            assert {"basic", "commitments"} <= passes
            for a in analyses:
                assert a["usage"]["prompt_tokens"] > 0 and a["usage"]["completion_tokens"] > 0
            assert any(r.response_format for r in llm.requests)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
