"""Statistics speed on the 300k library: p50/p95 of each route, and the import's time with
and without stats maintenance (the 0007 and 0011 triggers and rebuilds), side by side.

    .venv/bin/python scripts/bench_stats.py [--messages 300000] [--runs 2] [--requests 40]
                                            [--work /tmp/stats-bench]

Routes go through the app over httpx's ASGI transport (routing, auth, JSON included; no
socket). The import without stats runs the same code with the statistics migrations (0007, 0011,
0015, 0016) left out. Each
import runs in a fresh child process; runs alternate and medians are shown, with the
ratio within each side-by-side pair (the figure to trust on a shared machine).
Targets: every route p95 <= 20 ms; import slower by <= 10%.

`--live N` also times what statistics add to a live batch, side by side: N one-message
batches (a reply, then a received message, alternating) synced by the live tail into a copy
of the imported database with the statistics triggers, and into one without them; each
batch is the writer's transaction (triggers, the words drain, commit) plus the one
`live_counts` read the chats and contacts streams publish with. commit->SSE includes this.
The first WARMUP batches of each are synced but not timed (cold page caches).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, shutil, sys, time
from pathlib import Path
import chatstats.db as db
mode, lib, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
if mode == "nostats":
    schema = out / "schema"
    schema.mkdir()
    for p in db.schema_dir().glob("*.sql"):
        if "_stats" not in p.name:  # 0007, 0011, 0015, 0016
            shutil.copy(p, schema / p.name)
    db.schema_dir = lambda: schema
from chatstats.ingest.importer import run_import
t0 = time.perf_counter()
run_import(out / "chatstats.db", lib / "chat.db", lib / "AddressBook")
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def import_once(mode: str, lib: Path, work: Path) -> float:
    out = work / f"out-{mode}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    res = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(lib), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(res.stdout.splitlines()[-1])["seconds"])


async def routes(data: Path, requests: int) -> None:
    import httpx

    from chatstats import log

    log.configure("WARNING")

    from chatstats.api.app import create_app
    from chatstats.api.state import AppState
    from chatstats.config import Settings
    from chatstats.db import Database

    db = Database(data / "chatstats.db")
    await db.open()
    st = AppState(
        settings=Settings(data_dir=str(data), timezone="America/New_York"),
        db=db,
        token="bench-token",
        started_ns=time.time_ns(),
    )
    conn = __import__("sqlite3").connect(data / "chatstats.db")
    top_chat, top_n = conn.execute(
        "SELECT chat_id, SUM(messages) FROM stats_buckets GROUP BY chat_id ORDER BY 2 DESC LIMIT 1"
    ).fetchone()
    top_contact = conn.execute(
        "SELECT h.contact_id FROM stats_buckets b JOIN handles h ON h.id = b.handle_id"
        " WHERE h.contact_id IS NOT NULL GROUP BY 1 ORDER BY SUM(b.messages) DESC LIMIT 1"
    ).fetchone()[0]
    last_year = time.gmtime(
        conn.execute("SELECT MAX(bucket) FROM stats_buckets").fetchone()[0] * 900
    ).tm_year
    conn.close()
    urls = {
        "overview": "/api/stats/overview",
        "overview since/until": "/api/stats/overview?since=2020-03-01T10:07:00Z&until=2023-07-01T00:00:00Z",
        f"chat (largest, {top_n} msgs)": f"/api/stats/chats/{top_chat}",
        "contact (most messages)": f"/api/stats/contacts/{top_contact}",
        f"wrapped {last_year}": f"/api/stats/wrapped?year={last_year}",
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(create_app(st)),
        base_url="http://127.0.0.1:8765",
        headers={"Authorization": "Bearer bench-token"},
    ) as c:
        for name, url in urls.items():
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                r = await c.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
            times.sort()
            p95 = times[min(len(times) - 1, -(-95 * len(times) // 100) - 1)]
            print(f"  {name:<32} p50 {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms")
    db.close()


WARMUP = 5  # live batches synced before any is timed


async def live(work: Path, batches: int) -> None:
    import io
    import sqlite3

    from chatstats import log

    log.configure("WARNING")
    from chatstats.db import Database
    from chatstats.ingest.live import LiveTail
    from chatstats.sample.correspondent import Correspondent
    from chatstats.stats import maintain, service

    runs = {}
    for mode in ("without stats", "with stats"):
        d = work / f"live-{mode.split()[0]}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        src = sqlite3.connect(work / "out-stats" / "chatstats.db")
        dst = sqlite3.connect(d / "chatstats.db")
        src.backup(dst)
        src.close()
        if mode == "without stats":
            dst.execute("BEGIN")
            maintain.suspend(dst)  # dropped, never resumed
            dst.execute("COMMIT")
        dst.close()
        lib = sqlite3.connect(work / "lib" / "chat.db")
        out = sqlite3.connect(d / "chat.db")
        lib.backup(out)
        lib.close()
        out.close()
        db = Database(d / "chatstats.db")
        await db.open()
        tail = LiveTail(db, d / "chat.db")
        await tail.sync()
        runs[mode] = (Correspondent(d / "chat.db", seed=7, out=io.StringIO()), db, tail, [])
    reads: list[float] = []
    for i in range(-WARMUP, batches):  # the two side by side, batch by batch
        for mode, (who, db, tail, times) in runs.items():
            who.reply() if i % 2 else who.receive()
            t0 = time.perf_counter()
            outcome = await tail.sync()
            if i < 0:  # the first batches after opening fill caches: not what a batch costs
                continue
            times.append((time.perf_counter() - t0) * 1000)
            if mode == "with stats":
                t0 = time.perf_counter()
                await db.read(service.live_counts, list(outcome.chat_ids), [])
                reads.append((time.perf_counter() - t0) * 1000)

    def p95(xs: list[float]) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, -(-95 * len(xs) // 100) - 1)]

    for mode, (who, db, _tail, times) in runs.items():
        who.close()
        db.close()
        print(
            f"  live sync {mode:<14} p50 {statistics.median(times):6.2f} ms"
            f"   p95 {p95(times):6.2f} ms"
        )
    print(
        f"  live_counts read (with stats) p50 {statistics.median(reads):6.2f} ms"
        f"   p95 {p95(reads):6.2f} ms"
    )
    a = statistics.median(runs["without stats"][3])
    b = statistics.median(runs["with stats"][3]) + statistics.median(reads)
    print(f"  statistics add {b - a:+.2f} ms per one-message batch (p50, sync + read)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--work", default="/tmp/stats-bench")
    ap.add_argument("--routes-only", action="store_true", help="reuse <work>/out-stats")
    ap.add_argument("--live", type=int, default=0, help="also time N live one-message batches")
    args = ap.parse_args()
    work = Path(args.work)
    lib = work / "lib"
    if not (lib / "chat.db").is_file():
        from chatstats.sample.generate import make_library

        print(f"making a {args.messages}-message library in {lib} …", flush=True)
        make_library(lib, messages=args.messages, seed=1, truth=False)
    got: dict[str, list[float]] = {"stats": [], "nostats": []}
    for i in range(0 if args.routes_only else args.runs):
        # Each pair in alternating order, so neither side always runs second.
        for mode in ("nostats", "stats") if i % 2 == 0 else ("stats", "nostats"):
            got[mode].append(import_once(mode, lib, work))
    if got["stats"]:
        a, b = statistics.median(got["nostats"]), statistics.median(got["stats"])
        print(f"import without stats: {a:.2f} s  {[round(x, 2) for x in got['nostats']]}")
        print(
            f"import with stats:    {b:.2f} s  {[round(x, 2) for x in got['stats']]}"
            f"  ({b / a - 1:+.1%})"
        )
        pairs = [s / n - 1 for n, s in zip(got["nostats"], got["stats"], strict=True)]
        print(
            f"  within each side-by-side pair: {', '.join(f'{p:+.1%}' for p in pairs)};"
            f" median {statistics.median(pairs):+.1%}  (target <= +10%)"
        )
    print("routes:")
    import anyio

    anyio.run(routes, work / "out-stats", args.requests)
    if args.live:
        print("live:")
        anyio.run(live, work, args.live)


if __name__ == "__main__":
    main()
