#!/usr/bin/env python3
"""Chatbot tool benchmark: time per call of each read-only tool, and `chatstats mcp` start.

    .venv/bin/python scripts/bench_tools.py --messages 100000

Makes a sample library (cached under --work), imports it and builds the vector index, then
runs each tool as the chatbot does (`run_read_tool` on one read-only connection, output
bounded to 2,000 tokens, token counting included): search on the planted questions, the
conversations those answers are in, commitments, analyses, stats overall and per chat.
Prints p50/p95 in ms. Then starts `chatstats mcp` through the SDK's stdio client and prints
the time to the first answered tool call (process start, imports, index load, one search).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from chatstats import log
from chatstats.chatbot.tools import run_read_tool, saved_index
from chatstats.config import Settings
from chatstats.context.embed import bundled
from chatstats.context.index import VectorIndex
from chatstats.db import connect
from chatstats.ingest.importer import run_import
from chatstats.sample.generate import make_library
from chatstats.sample.truth import load_truth


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def timed(conn: sqlite3.Connection, settings: Settings, index: Any, name: str, args: Any) -> float:
    t = time.perf_counter()
    run_read_tool(conn, name, args, settings=settings, index=index)
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", default="/tmp/chatstats-bench-tools")
    ap.add_argument("--queries", type=int, default=200, help="planted questions asked at most")
    args = ap.parse_args()
    log.configure("WARNING", stream=sys.stderr)
    work = Path(args.work) / f"{args.messages}-{args.seed}"
    lib, data = work / "lib", work / "data"
    if not (lib / "truth.json").exists():
        t = time.perf_counter()
        make_library(lib, messages=args.messages, seed=args.seed)
        print(f"library: {args.messages} rows in {time.perf_counter() - t:.1f} s")
    db = data / "chatstats.db"
    if not (data / "index.json").exists():
        if data.exists():
            shutil.rmtree(data)
        data.mkdir(parents=True)
        run_import(db, lib / "chat.db", lib / "AddressBook")
        conn = connect(db, write=False)
        t = time.perf_counter()
        VectorIndex(data, bundled()).rebuild(conn)
        conn.close()
        print(f"import and index build done (index {time.perf_counter() - t:.1f} s)")
    settings = Settings(data_dir=str(data), timezone="UTC")
    t = time.perf_counter()
    index = saved_index(settings)
    assert index is not None
    print(f"index load: {time.perf_counter() - t:.2f} s")
    conn = connect(db, write=False)
    truth = load_truth(lib / "truth.json")
    facts = truth.facts[: args.queries]
    run_read_tool(conn, "search_messages", {"query": "warm up"}, settings=settings, index=index)
    lat: dict[str, list[float]] = {}
    conversations: list[int] = []
    for f in facts:
        t = time.perf_counter()
        out = run_read_tool(
            conn, "search_messages", {"query": f.question}, settings=settings, index=index
        )
        lat.setdefault("search_messages", []).append((time.perf_counter() - t) * 1000)
        conversations.append(json.loads(out.content)["hits"][0]["conversation_id"])
    for cid in conversations:
        call = {"conversation_id": cid}
        lat.setdefault("get_conversation", []).append(
            timed(conn, settings, index, "get_conversation", call)
        )
        lat.setdefault("get_analyses", []).append(
            timed(conn, settings, index, "get_analyses", call)
        )
    chats = [
        r[0] for r in conn.execute("SELECT id FROM chats ORDER BY message_count DESC LIMIT 20")
    ]
    for _ in range(5):
        lat.setdefault("get_stats (all)", []).append(timed(conn, settings, index, "get_stats", {}))
        lat.setdefault("list_commitments", []).append(
            timed(conn, settings, index, "list_commitments", {})
        )
    for chat in chats:
        lat.setdefault("get_stats (chat)", []).append(
            timed(conn, settings, index, "get_stats", {"chat_id": chat})
        )
    n = conn.execute("SELECT count(*) FROM messages WHERE kind = 'message'").fetchone()[0]
    print(f"{n} messages; ms per call, p50 / p95 (n):")
    for name, xs in lat.items():
        print(f"  {name:18} {pct(xs, 50):7.1f} / {pct(xs, 95):7.1f}  ({len(xs)})")
    conn.close()
    import anyio

    anyio.run(_mcp_first_call, data, facts[0].question)


async def _mcp_first_call(data: Path, question: str) -> None:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSTATS_")}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "chatstats", "mcp", "--data-dir", str(data)], env=env
    )
    t = time.perf_counter()
    async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        ready = time.perf_counter() - t
        result = await s.call_tool("search_messages", {"query": question})
        assert not result.is_error
        first = time.perf_counter() - t
        t2 = time.perf_counter()
        await s.call_tool("search_messages", {"query": question})
        again = (time.perf_counter() - t2) * 1000
    print(
        f"chatstats mcp: initialized {ready:.2f} s after spawn, first search answered at"
        f" {first:.2f} s (index load included), next search {again:.0f} ms"
    )


if __name__ == "__main__":
    main()
