"""Latency of the read API over loopback HTTP, against an imported library.

    python scripts/bench_api.py --data-dir DIR [--requests 500] [--warmup 50] [--search WORD]

Serves DIR/chatstats.db with uvicorn in this process on a free loopback port (the daemon's
own socket and server settings) and times sequential requests from one keep-alive client:
the chat list, the newest page of the biggest chat, a page deep in its history (before_id),
and the other list routes. Client time is included, as a UI would see it. Target: p99 under
20 ms. Opening the database applies pending migrations, as the daemon would.
"""

from __future__ import annotations

import argparse
import secrets
import sqlite3
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import anyio
import httpx

from chatstats import config, daemon, log
from chatstats.api.app import create_app
from chatstats.api.state import AppState
from chatstats.db import Database


def _targets(db_path: Path, search: str | None) -> list[tuple[str, str, int | None]]:
    """(name, url, request count or None for the default). Picking them needs SQL the API
    has no route for (the biggest chat, a cursor 90% of the way back), so read it directly."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT id, message_count FROM chats ORDER BY message_count DESC, id LIMIT 1"
        ).fetchone()
        if row is None:
            return [("chats", "/api/chats", None)]
        chat_id, count = row
        deep = conn.execute(
            "SELECT id FROM messages WHERE chat_id = :chat ORDER BY date_ns DESC, id DESC"
            " LIMIT 1 OFFSET :skip",
            {"chat": chat_id, "skip": max(0, count * 9 // 10)},
        ).fetchone()
    finally:
        conn.close()
    targets = [
        ("health", "/api/health", None),
        ("chats", "/api/chats", None),
        (f"chat {chat_id} messages ({count:,})", f"/api/chats/{chat_id}/messages?limit=50", None),
    ]
    if deep is not None:
        url = f"/api/chats/{chat_id}/messages?limit=50&before_id={deep[0]}"
        targets.append(("  ... 90% back (before_id)", url, None))
    targets += [
        ("contacts", "/api/contacts", None),
        ("conversations", "/api/conversations", None),
        ("conversations of that chat", f"/api/conversations?chat_id={chat_id}", None),
    ]
    if search:
        targets.append((f"search {search!r}", f"/api/search?q={search}", 50))
    return targets


async def _measure(client: httpx.AsyncClient, url: str, warmup: int, n: int) -> list[float]:
    for _ in range(warmup):
        (await client.get(url)).raise_for_status()
    times = []
    for _ in range(n):
        began = time.perf_counter()
        response = await client.get(url)
        times.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
    return times


async def run(data_dir: Path, requests: int, warmup: int, search: str | None) -> int:
    db_path = data_dir / "chatstats.db"
    if not db_path.exists():
        print(f"no library at {db_path}: import one first (chatstats import --data-dir DIR)")
        print(__doc__)
        return 2
    log.configure("WARNING")
    db = Database(db_path)
    await db.open()
    token = secrets.token_urlsafe(16)
    state = AppState(
        settings=config.load({"data_dir": str(data_dir)}),
        db=db,
        token=token,
        started_ns=time.time_ns(),
    )
    server = daemon.http_server(create_app(state))
    sock = daemon.open_listener("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(server.serve, sockets=[sock]))
            while not server.started:
                await anyio.sleep(0.01)
            headers = {"Authorization": f"Bearer {token}"}
            print(f"{'route':40s} {'n':>5s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
            async with httpx.AsyncClient(base_url=url, headers=headers) as client:
                for name, path, n in _targets(db_path, search):
                    count = n or requests
                    times = await _measure(client, path, min(warmup, count), count)
                    p99 = statistics.quantiles(times, n=100, method="inclusive")[98]
                    print(
                        f"{name:40s} {count:5d} {statistics.median(times):8.2f}"
                        f" {p99:8.2f} {max(times):8.2f}"
                    )
            server.should_exit = True
    finally:
        db.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="data directory of an imported library")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per route")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests first")
    parser.add_argument("--search", help="also time a search for this word (50 requests)")
    args = parser.parse_args()
    if args.data_dir is None:
        parser.print_usage()
        return 2
    return anyio.run(run, args.data_dir, args.requests, args.warmup, args.search)


if __name__ == "__main__":
    sys.exit(main())
