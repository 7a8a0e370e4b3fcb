"""Live-sync latency (chat.db commit → SSE event) and the daemon's idle CPU.

    .venv/bin/python scripts/bench_live.py [--messages 200] [--interval 0.1] [--idle 10]

A sample library is generated, `chatstats serve` runs as its own process, a reader follows
the busiest 1:1 chat's SSE stream, and the simulated correspondent (another process,
Messages.app-like transactions) writes `--messages` messages. Latency of each message is
the SSE arrival time minus the writer's commit time (same machine clock). Idle CPU is the
daemon's user+system time over `--idle` seconds with nothing happening, as % of one core.
Targets: p95 ≤ 100 ms, idle CPU < 1%.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

TOKEN = "bench-live"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--library-size", type=int, default=20_000)
    ap.add_argument("--work", default="/tmp/chatstats-bench-live")
    args = ap.parse_args()

    from chatstats.sample.generate import make_library

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    lib = work / "lib"
    make_library(lib, messages=args.library_size, seed=4, truth=False)
    env = {**os.environ, "CHATSTATS_TOKEN": TOKEN, "CHATSTATS_LOG_LEVEL": "WARNING"}
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chatstats",
            "serve",
            "--source",
            str(lib / "chat.db"),
            "--addressbook",
            str(lib / "AddressBook"),
            "--data-dir",
            str(work / "data"),
            "--port",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        base = json.loads(daemon.stdout.readline())["url"]
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"})
        while (client.get("/api/health").json()["live"] or {}).get("state") != "ok":
            time.sleep(0.1)
        conn = sqlite3.connect(lib / "chat.db")
        guid = conn.execute(
            "SELECT c.guid FROM chat_message_join j JOIN chat c ON c.ROWID = j.chat_id"
            " WHERE c.style = 45 GROUP BY j.chat_id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()[0]
        conn.close()
        chat_id = next(
            c["id"] for c in client.get("/api/chats?limit=500").json() if c["guid"] == guid
        )

        # Let start-up work settle: the vector index is built (or loaded) after the import.
        index_s = time.monotonic()
        while True:
            idx = client.get("/api/index/status").json()
            if idx.get("built_at") and not idx.get("building"):
                break
            time.sleep(0.2)
        print(
            f"index ready {time.monotonic() - index_s:.1f} s after live sync ({idx['items']} units)"
        )
        time.sleep(2.0)
        c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(args.idle)
        idle_pct = 100 * (cpu_seconds(daemon.pid) - c0) / (time.monotonic() - t0)

        arrivals: dict[str, int] = {}
        ready = threading.Event()

        def follow() -> None:
            with (
                httpx.Client(
                    base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=None
                ) as c,
                c.stream("GET", f"/api/live-sync/stream/chat/{chat_id}/messages") as r,
            ):
                event = ""
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                        if event == "ready":
                            ready.set()
                    elif line.startswith("data:") and event == "update":
                        now = time.time_ns()
                        for m in json.loads(line[5:])["messages"]:
                            arrivals.setdefault(m["guid"], now)

        threading.Thread(target=follow, daemon=True).start()
        ready.wait(10)
        c1, t1 = cpu_seconds(daemon.pid), time.monotonic()
        writer = subprocess.run(
            [
                sys.executable,
                "-m",
                "chatstats.sample.correspondent",
                "--db",
                str(lib / "chat.db"),
                "--count",
                str(args.messages),
                "--interval",
                str(args.interval),
                "--plain",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        busy_pct = 100 * (cpu_seconds(daemon.pid) - c1) / (time.monotonic() - t1)
        commits = {}
        for line in writer.stdout.splitlines():
            note = json.loads(line)
            commits[note["guid"]] = note["committed_ns"]
        deadline = time.monotonic() + 10
        while len(set(commits) & set(arrivals)) < len(commits) and time.monotonic() < deadline:
            time.sleep(0.05)
        lat = sorted((arrivals[g] - c) / 1e6 for g, c in commits.items() if g in arrivals)
        missing = len(commits) - len(lat)
        p95 = lat[int(0.95 * (len(lat) - 1))] if lat else float("nan")
        print(f"messages: {len(commits)} written, {len(lat)} seen on SSE, {missing} missing")
        print(
            f"commit->SSE latency ms: p50 {statistics.median(lat):.1f}  p95 {p95:.1f}"
            f"  max {lat[-1]:.1f}   (target p95 <= 100)"
        )
        print(
            f"daemon CPU: idle {idle_pct:.2f}% of a core over {args.idle:.0f} s (target < 1%);"
            f" while receiving {busy_pct:.1f}%"
        )
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


if __name__ == "__main__":
    main()
