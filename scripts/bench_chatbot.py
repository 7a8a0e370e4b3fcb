#!/usr/bin/env python3
"""Chatbot benchmark: the daemon's own time per step and per turn, and time to first delta,
with a fixed-latency model, on a big library.

    .venv/bin/python scripts/bench_chatbot.py --messages 300000 --latency 0.25 --turns 30
    .venv/bin/python scripts/bench_chatbot.py --messages 20000 --compare /tmp/base-tree

A `chatstats serve` subprocess serves a copy of a sample library's app database (the one
scripts/bench_search.py caches, imported and with its vector index, else made here), with
the loopback fake model (in this process) as its LLM: every request waits `--latency`
seconds before it streams (all of its chunks then arrive at once, so every per-chunk cost
of the daemon adds up rather than hiding behind the model's pace). Two kinds of turn
alternate: "tool" turns (step 1 calls search_messages, hybrid over the whole library; step
2 answers) and "direct" turns (one step that answers).

Own time is everything but the model's wait, timed by the client from the stream itself:
a step runs from the POST (step 1) or the previous step's last `tool_result` to the next
`tool_result` or the final `message`, minus the fixed latency; so it holds the request, the
gateway call and its chunks, the SSE frames, the tools and every write. Warm-up turns (the
first search, the first call) are left out. Time to first delta is measured from sending
the POST, minus the model latency before that delta (one for direct turns, two for tool
turns).

With `--compare DIR` a second daemon runs the source tree in DIR (for example `git archive`
of another commit) on its own copy of the library, and each round of turns goes to both in
turn, so the two columns are measured side by side under the same machine load.
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
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chatstats.testing.fake_llm import FakeLLM, Reply, ToolCalls

TOKEN = "bench-chatbot-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ANSWER = "You talked about it twice last spring; the second time you agreed to call back. " * 3
QUESTIONS = ["dinner plans", "the trip to the coast", "birthday present", "call tomorrow"]
KINDS = (("tool", 2), ("direct", 1))


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


@dataclass
class Turn:
    """One measured turn, as the client saw it (seconds from sending the POST)."""

    first_delta: float
    boundaries: list[float]  # the end of each step: its last tool_result, then the message
    message: dict[str, Any]
    deltas: int


@dataclass
class Daemon:
    name: str
    data: Path
    proc: subprocess.Popen[str]
    client: httpx.Client
    thread_id: int = 0
    turns: dict[str, list[Turn]] = field(default_factory=lambda: {"tool": [], "direct": []})
    cpu: dict[str, float] = field(default_factory=lambda: {"tool": 0.0, "direct": 0.0})


def cpu_s(pid: int) -> float:
    """The process's user + system CPU seconds so far (Linux /proc; 0 elsewhere): a figure
    the machine's other load barely moves, unlike wall time."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sse_turn(client: httpx.Client, thread_id: int, content: str) -> Turn:
    began = time.perf_counter()
    first = None
    boundaries: list[float] = []
    event = None
    deltas = 0
    with client.stream(
        "POST", f"/api/chatbot/threads/{thread_id}/messages", json={"content": content}
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                now = time.perf_counter() - began
                if event == "delta":
                    deltas += 1
                    if first is None:
                        first = now
                elif (
                    event == "tool_result" or event == "message"
                ):  # the bench's model asks one tool a step
                    boundaries.append(now)
            elif line.startswith("data: ") and event in ("message", "error"):
                data = json.loads(line[6:])
                if event == "error":
                    raise SystemExit(f"turn failed: {data['code']}")
                assert first is not None
                return Turn(first, boundaries, data, deltas)
    raise SystemExit("the stream ended without a message")


def start(name: str, src: Path | None, data: Path, work: Path, fake: FakeLLM) -> Daemon:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CHATSTATS_")},
        "CHATSTATS_TOKEN": TOKEN,
        "CHATSTATS_LLM_MODEL": "openai/fake",
        "CHATSTATS_LLM_API_BASE": fake.base_url,
        "CHATSTATS_LLM_INPUT_COST_PER_TOKEN": "0.000001",
        "CHATSTATS_LLM_OUTPUT_COST_PER_TOKEN": "0.000002",
    }
    if src is not None:  # the other tree's package first on the path
        env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, "-m", "chatstats", "serve", "--source", str(work / "none.db"),
           "--data-dir", str(data), "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.DEVNULL, cwd=str(src) if src else None)  # fmt: skip
    assert proc.stdout is not None
    url = json.loads(proc.stdout.readline())["url"]
    client = httpx.Client(base_url=url, headers=AUTH, timeout=120)
    return Daemon(name, data, proc, client)


def ready(d: Daemon) -> int:
    while True:  # the saved vector index loaded: search is hybrid
        status = d.client.get("/api/index/status").json()
        if status["items"] and not status["building"]:
            return int(status["items"])
        time.sleep(0.2)


def report(d: Daemon, lat_ms: float) -> list[str]:
    out = []
    steps = [
        (t.boundaries[i] - (t.boundaries[i - 1] if i else 0.0)) * 1000 - lat_ms
        for kind, _ in KINDS
        for t in d.turns[kind]
        for i in range(len(t.boundaries))
    ]
    out.append(f"own time per step: p50 {pct(steps, 50):.1f} / p95 {pct(steps, 95):.1f} /"
               f" max {max(steps):.1f} ms ({len(steps)} steps)")  # fmt: skip
    for kind, n in KINDS:
        ts = d.turns[kind]
        per = [(t.boundaries[i] - (t.boundaries[i - 1] if i else 0.0)) * 1000 - lat_ms
               for t in ts for i in range(len(t.boundaries))]  # fmt: skip
        own = [t.boundaries[-1] * 1000 - n * lat_ms for t in ts]
        stored = [t.message["response_time_ms"] - n * lat_ms for t in ts]
        ttfd = [t.first_delta * 1000 - n * lat_ms for t in ts]
        out.append(f"{kind} turns ({n} step{'s' if n > 1 else ''}): step p50 {pct(per, 50):.1f} /"
                   f" p95 {pct(per, 95):.1f}; turn p50 {pct(own, 50):.1f} / p95 {pct(own, 95):.1f}"
                   f" (stored response_time p50 {pct(stored, 50):.1f}); first delta p50"
                   f" {pct(ttfd, 50):.1f} / p95 {pct(ttfd, 95):.1f} ms;"
                   f" {pct([t.deltas for t in ts], 50):.0f} delta frames;"
                   f" daemon CPU {d.cpu[kind] * 1000 / max(1, len(ts)):.1f} ms a turn")  # fmt: skip
    metrics = d.client.get("/api/metrics").json()["latencies"]
    tool = metrics.get("chatbot.tool.search_messages")
    if tool:
        out.append(f"search_messages tool (daemon metric, warm-up included): p50"
                   f" {tool['p50_ms']:.1f} / p95 {tool['p95_ms']:.1f} ms")  # fmt: skip
    conn = sqlite3.connect(f"file:{d.data / 'chatstats.db'}?mode=ro", uri=True)
    calls = [r[0] - lat_ms for r in conn.execute(
        "SELECT latency_ms FROM llm_calls WHERE purpose = 'chatbot' ORDER BY id")][3:]  # fmt: skip
    conn.close()
    out.append(f"gateway call minus model latency (the LiteLLM call with its chunks, each"
               f" handed on): p50 {pct(calls, 50):.1f} / p95 {pct(calls, 95):.1f} ms")  # fmt: skip
    got = d.client.get(f"/api/chatbot/threads/{d.thread_id}").json()
    out.append(f"thread: {got['message_count']} messages, {got['total_tokens']} tokens,"
               f" ${got['total_cost']:.4f}")  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--latency", type=float, default=0.25, help="the model's fixed wait, s")
    ap.add_argument("--turns", type=int, default=30, help="turns of each kind")
    ap.add_argument("--work", default="/tmp/chatstats-bench-chatbot")
    ap.add_argument("--search-cache", default="/tmp/chatstats-bench-search")
    ap.add_argument("--compare", metavar="DIR",
                    help="a source tree to run a second daemon from, side by side")  # fmt: skip
    args = ap.parse_args()
    work = Path(args.work)
    source = library(args, work)
    trees: list[tuple[str, Path | None]] = [("this tree", None)]
    if args.compare:
        trees.insert(0, (f"--compare {args.compare}", Path(args.compare).resolve()))
    t = time.perf_counter()
    for i in range(len(trees)):
        copy_data(source, work / f"data{i}")
    print(f"library: {args.messages} messages, copied in {time.perf_counter() - t:.1f} s")

    with FakeLLM(responder, latency_s=args.latency) as fake, ExitStack() as stack:
        daemons: list[Daemon] = []
        for i, (name, src) in enumerate(trees):
            t = time.perf_counter()
            d = start(name, src, work / f"data{i}", work, fake)
            stack.callback(d.proc.wait, 30)
            stack.callback(d.proc.terminate)
            stack.callback(d.client.close)
            items = ready(d)
            print(f"{name}: daemon ready with {items} indexed in {time.perf_counter() - t:.1f} s")
            d.thread_id = d.client.post("/api/chatbot/threads", json={"title": "bench"}).json()[
                "id"
            ]
            for kind, _ in KINDS:  # warm-up: first search, first call
                sse_turn(d.client, d.thread_id, f"{kind}: warm up")
            daemons.append(d)
        for i in range(args.turns):
            for d in daemons:
                for kind, _ in KINDS:
                    q = QUESTIONS[i % len(QUESTIONS)]
                    before = cpu_s(d.proc.pid)
                    d.turns[kind].append(sse_turn(d.client, d.thread_id, f"{kind}: {q}"))
                    d.cpu[kind] += cpu_s(d.proc.pid) - before
        lat_ms = args.latency * 1000
        print(f"model latency {lat_ms:.0f} ms per call; {args.turns} turns of each kind per daemon;"
              f" {-(-len(ANSWER) // 8)} chunks an answer")  # fmt: skip
        for d in daemons:
            print(f"== {d.name}")
            for line in report(d, lat_ms):
                print("  " + line)


if __name__ == "__main__":
    main()
