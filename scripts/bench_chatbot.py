#!/usr/bin/env python3
"""Chatbot benchmark: the daemon's own time per step and per turn, and time to first delta,
with a fixed-latency model, on a big library.

    .venv/bin/python scripts/bench_chatbot.py --messages 300000 --latency 0.25 --turns 30

A `chatstats serve` subprocess serves a copy of a sample library's app database (the one
scripts/bench_search.py caches, imported and with its vector index, else made here), with
the loopback fake model (in this process) as its LLM: every request waits `--latency`
seconds before it streams. Two kinds of turn alternate: "tool" turns (step 1 calls
search_messages, hybrid over the whole library; step 2 answers) and "direct" turns (one step
that answers).

Own time is everything but the model's wait: a step's wall time (the daemon's
`chatbot.step` metric: the call, its streaming to the client, the tools it asked for and
the writes) minus the fixed latency; per turn, the stored `response_time_ms` minus latency
times its steps. Time to first delta is measured by the client from sending the POST,
minus the model latency before that delta (one for direct turns, two for tool turns).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from chatstats.testing.fake_llm import FakeLLM, Reply, ToolCalls

TOKEN = "bench-chatbot-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ANSWER = "You talked about it twice last spring; the second time you agreed to call back. " * 3
QUESTIONS = ["dinner plans", "the trip to the coast", "birthday present", "call tomorrow"]


def pct(xs: list[float], p: float) -> float:
    """Nearest rank, like chatstats.metrics."""
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, -(-len(xs) * p // 100) - 1))] if xs else float("nan")


def responder(request: dict[str, Any]) -> Any:
    messages = request.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") == "tool" or str(last.get("content", "")).startswith("direct:"):
        return Reply(ANSWER)
    query = str(last.get("content", "")).removeprefix("tool:").strip() or "plans"
    return ToolCalls((("search_messages", {"query": query, "limit": 10}),))


def library(args: argparse.Namespace, work: Path) -> Path:
    """An app database with a vector index: bench_search's cache, else made here."""
    cached = Path(args.search_cache) / f"{args.messages}-{args.seed}" / "data"
    if (cached / "chatstats.db").exists() and (cached / "index.json").exists():
        return cached
    from types import SimpleNamespace

    from chatstats.context.embed import bundled
    from chatstats.context.search import SearchIndex
    from chatstats.ingest.importer import run_import
    from chatstats.sample.generate import make_library

    source = work / "source"
    lib, data = source / "lib", source / "data"
    if not (data / "index.json").exists():
        make_library(lib, messages=args.messages, seed=args.seed)
        data.mkdir(parents=True, exist_ok=True)
        run_import(data / "chatstats.db", lib / "chat.db", lib / "AddressBook")
        state = SimpleNamespace(
            settings=SimpleNamespace(data_dir=str(data)),
            db=SimpleNamespace(path=data / "chatstats.db"),
        )
        search = SearchIndex(state, bundled())
        conn = sqlite3.connect(f"file:{data / 'chatstats.db'}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        search.index.rebuild(conn)
        search.index.save()
        conn.close()
    return data


def copy_data(source: Path, data: Path) -> None:
    """A private copy (the daemon migrates and writes it): the database through SQLite's
    backup, so a WAL in the source is folded in; the index files as they are."""
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    src = sqlite3.connect(f"file:{source / 'chatstats.db'}?mode=ro", uri=True)
    dst = sqlite3.connect(data / "chatstats.db")
    src.backup(dst)
    dst.close()
    src.close()
    os.chmod(data / "chatstats.db", 0o600)
    for f in source.iterdir():
        if f.name.startswith(("index", "vectors")):
            shutil.copy2(f, data / f.name)


def sse_turn(client: httpx.Client, thread_id: int, content: str) -> tuple[float, dict[str, Any]]:
    """(seconds to the first delta, the stored message)."""
    began = time.perf_counter()
    first = None
    event = None
    with client.stream(
        "POST", f"/api/chatbot/threads/{thread_id}/messages", json={"content": content}
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                if event == "delta" and first is None:
                    first = time.perf_counter() - began
            elif line.startswith("data: ") and event in ("message", "error"):
                data = json.loads(line[6:])
                if event == "error":
                    raise SystemExit(f"turn failed: {data['code']}")
                assert first is not None
                return first, data
    raise SystemExit("the stream ended without a message")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--latency", type=float, default=0.25, help="the model's fixed wait, s")
    ap.add_argument("--turns", type=int, default=30, help="turns of each kind")
    ap.add_argument("--work", default="/tmp/chatstats-bench-chatbot")
    ap.add_argument("--search-cache", default="/tmp/chatstats-bench-search")
    args = ap.parse_args()
    work = Path(args.work)
    data = work / "data"
    t = time.perf_counter()
    copy_data(library(args, work), data)
    print(f"library: {args.messages} messages, copied in {time.perf_counter() - t:.1f} s")

    with FakeLLM(responder, latency_s=args.latency) as fake:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CHATSTATS_")},
            "CHATSTATS_TOKEN": TOKEN,
            "CHATSTATS_LLM_MODEL": "openai/fake",
            "CHATSTATS_LLM_API_BASE": fake.base_url,
            "CHATSTATS_LLM_INPUT_COST_PER_TOKEN": "0.000001",
            "CHATSTATS_LLM_OUTPUT_COST_PER_TOKEN": "0.000002",
        }
        cmd = [sys.executable, "-m", "chatstats", "serve", "--source", str(work / "none.db"),
               "--data-dir", str(data), "--port", "0"]  # fmt: skip
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            assert proc.stdout is not None
            url = json.loads(proc.stdout.readline())["url"]
            with httpx.Client(base_url=url, headers=AUTH, timeout=120) as client:
                while True:  # the saved vector index loaded: search is hybrid
                    status = client.get("/api/index/status").json()
                    if status["items"] and not status["building"]:
                        break
                    time.sleep(0.2)
                print(f"daemon ready with {status['items']} indexed in "
                      f"{time.perf_counter() - t:.1f} s")  # fmt: skip
                thread = client.post("/api/chatbot/threads", json={"title": "bench"}).json()
                for kind in ("tool", "direct"):  # warm-up: first search, first call
                    sse_turn(client, thread["id"], f"{kind}: warm up")
                measured: dict[str, list[tuple[float, dict[str, Any]]]] = {"tool": [], "direct": []}
                for i in range(args.turns):
                    for kind in ("tool", "direct"):
                        q = QUESTIONS[i % len(QUESTIONS)]
                        measured[kind].append(sse_turn(client, thread["id"], f"{kind}: {q}"))
                metrics = client.get("/api/metrics").json()
                got = client.get(f"/api/chatbot/threads/{thread['id']}").json()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    lat_ms = args.latency * 1000
    print(f"model latency {lat_ms:.0f} ms per call; {args.turns} turns of each kind")
    lat = metrics["latencies"]
    step = lat["chatbot.step"]
    # Own time per step: the metric's percentiles (warm-up included: the window is 5 min)
    # less the fixed latency.
    print(
        f"own time per step: p50 {step['p50_ms'] - lat_ms:.1f} ms, p95 "
        f"{step['p95_ms'] - lat_ms:.1f} ms, max {step['max_ms'] - lat_ms:.1f} ms"
        f" ({step['count']} steps)"
    )
    mine = lat["chatbot.step_own"]
    print(
        f"  of which the chatbot's code outside the model call (writes, history, tools):"
        f" p50 {mine['p50_ms']:.1f} / p95 {mine['p95_ms']:.1f} ms"
    )
    conn = sqlite3.connect(f"file:{data / 'chatstats.db'}?mode=ro", uri=True)
    calls = [r[0] - lat_ms for r in conn.execute(
        "SELECT latency_ms FROM llm_calls WHERE purpose = 'chatbot' ORDER BY id")][4:]  # fmt: skip
    chunks = -(-len(ANSWER) // 8)  # the fake streams 8 characters a chunk
    conn.close()
    print(
        f"  and the gateway call minus model latency (LiteLLM client: request, {chunks} chunks"
        f" parsed for an answer, each delta handed on to the SSE stream): p50 {pct(calls, 50):.1f} / p95 {pct(calls, 95):.1f} ms"
    )
    for kind, steps in (("tool", 2), ("direct", 1)):
        own = [m["response_time_ms"] - steps * lat_ms for _, m in measured[kind]]
        ttfd = [f * 1000 - steps * lat_ms for f, _ in measured[kind]]
        print(
            f"{kind:>6} turns ({steps} step{'s' if steps > 1 else ''}): own time per turn p50"
            f" {pct(own, 50):.1f} / p95 {pct(own, 95):.1f} ms; first delta minus model"
            f" latency p50 {pct(ttfd, 50):.1f} / p95 {pct(ttfd, 95):.1f} ms"
        )
    tool = lat.get("chatbot.tool.search_messages")
    if tool:
        print(f"search_messages (hybrid, {args.messages} messages): p50 {tool['p50_ms']:.1f}"
              f" / p95 {tool['p95_ms']:.1f} ms")  # fmt: skip
    print(f"thread: {got['message_count']} messages, {got['total_tokens']} tokens,"
          f" ${got['total_cost']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
