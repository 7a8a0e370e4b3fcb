"""Import speed and memory against a bare copy of the same rows, measured side by side.

    .venv/bin/python scripts/bench_import.py [--messages 300000] [--runs|--pairs 3] [--work DIR]
                                             [--breakdown]

The bare copy reads every message row (blobs included) from chat.db and writes the rows,
less blobs, into one table with unsafe pragmas: no decoding, no contacts, no conversations,
no indexes, no full-text. Target: import ≤ 2.5× that, peak RSS < 400 MB. Each measurement
runs in a fresh child process (so peak RSS is its own); runs alternate and medians are shown.

`--breakdown` adds one more import, in this process, that times every statement on the
import's write connection (CPU time of this thread): where the SQLite work goes, and how
much is Python between statements, per phase, how much the statistics summaries and the
module imports cost. User-defined SQL functions (the body decode) run inside
the statements that call them; rows read by iterating a cursor count as "between"
(stepping SQLite included).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sqlite3, sys, time
from pathlib import Path
mode, lib, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
t0 = time.perf_counter()
if mode == "bare":
    src = sqlite3.connect(f"file:{lib / 'chat.db'}?mode=ro", uri=True)
    dst = sqlite3.connect(out / "bare.db", isolation_level=None)
    dst.execute("PRAGMA journal_mode=OFF"); dst.execute("PRAGMA synchronous=OFF")
    dst.execute("CREATE TABLE m (rowid_ INTEGER, guid TEXT, text TEXT, handle_id INTEGER,"
                " is_from_me INTEGER, date INTEGER, service TEXT, assoc_guid TEXT,"
                " assoc_type INTEGER, chat_id INTEGER)")
    dst.execute("BEGIN")
    cur = src.execute("SELECT m.ROWID, m.guid, m.text, m.attributedBody, m.handle_id,"
                      " m.is_from_me, m.date, m.service, m.associated_message_guid,"
                      " m.associated_message_type, j.chat_id FROM message m"
                      " LEFT JOIN chat_message_join j ON j.message_id = m.ROWID")
    while True:
        rows = cur.fetchmany(5000)
        if not rows:
            break
        dst.executemany("INSERT INTO m VALUES (?,?,?,?,?,?,?,?,?,?)",
                        [r[:3] + r[4:] for r in rows])
    dst.execute("COMMIT")
else:
    from chatstats.ingest.importer import run_import
    run_import(out / "chatstats.db", lib / "chat.db", lib / "AddressBook")
dt = time.perf_counter() - t0
me = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the import's helpers (decode, plan)
print(json.dumps({
    "seconds": dt,
    "rss_mb": me.ru_maxrss / 1024,
    "helper_rss_mb": kids.ru_maxrss / 1024,
    "cpu": me.ru_utime + me.ru_stime,
    "helper_cpu": kids.ru_utime + kids.ru_stime,
}))
"""


def measure(mode: str, lib: Path, work: Path) -> dict[str, float]:
    out = work / f"out-{mode}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(lib), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


BREAKDOWN = r"""
import json, sqlite3, sys, time
from pathlib import Path
lib, out = Path(sys.argv[1]), Path(sys.argv[2])
stats: dict[str, list[float]] = {}
def note(sql, dt):
    words = sql.split()
    key = " ".join(words[:4]) if words[0] != "CREATE" else " ".join(words[:5])
    s = stats.setdefault(key, [0, 0.0]); s[0] += 1; s[1] += dt
class Timed(sqlite3.Connection):
    def execute(self, sql, *a):
        t = time.thread_time()
        try:
            return super().execute(sql, *a)
        finally:
            note(sql, time.thread_time() - t)
    def executemany(self, sql, *a):
        t = time.thread_time()
        try:
            return super().executemany(sql, *a)
        finally:
            note("MANY " + sql, time.thread_time() - t)
real = sqlite3.connect
def connect(*a, **k):
    k.setdefault("factory", Timed)
    return real(*a, **k)
sqlite3.connect = connect
t_mod = time.thread_time()
from chatstats.ingest.importer import run_import
t0 = time.thread_time()
phases: list[tuple[str, float]] = []
def progress(phase, done, total):
    if done == 0 or phase == "done":
        phases.append((phase, time.thread_time() - t0))
run_import(out / "chatstats.db", lib / "chat.db", lib / "AddressBook", progress=progress)
total = time.thread_time() - t0
print(json.dumps({"total": total, "stats": stats, "phases": phases, "modules": t0 - t_mod}))
"""


def breakdown(lib: Path, work: Path) -> None:
    out = work / "out-breakdown"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-c", BREAKDOWN, str(lib), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    total = found["total"]
    in_sql = sum(t for _n, t in found["stats"].values())
    print(f"breakdown of one import, CPU s of the importing thread: {total:.2f}")
    for key, (n, t) in sorted(found["stats"].items(), key=lambda kv: -kv[1][1])[:14]:
        print(f"  {t:6.2f}  x{n:<5} {key[:70]}")
    print(f"  {in_sql:6.2f}  in statements (with the SQL functions they call)")
    print(f"  {total - in_sql:6.2f}  Python between statements")
    stats_sql = sum(
        t for k, (_n, t) in found["stats"].items() if k.startswith("INSERT INTO stats_")
    )
    print(f"  {stats_sql:6.2f}  of those, the statistics summaries (stats/maintain.py)")
    print(f"  {found['modules']:6.2f}  importing the chatstats modules, before run_import")
    print("  per phase (from the progress reports):")
    marks = found["phases"] + [["end", total]]
    for (name, start), (_next, end) in itertools.pairwise(marks):
        print(f"  {end - start:6.2f}  {name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--runs", "--pairs", type=int, default=3, help="side-by-side pairs")
    ap.add_argument("--work", default="/tmp/chatstats-bench")
    ap.add_argument("--breakdown", action="store_true", help="time each statement once more")
    args = ap.parse_args()
    work = Path(args.work)
    lib = work / f"lib-{args.messages}"
    if not (lib / "chat.db").exists():
        from chatstats.sample.generate import make_library

        t0 = time.perf_counter()
        make_library(lib, messages=args.messages, seed=1, truth=False)
        print(f"generated {args.messages:,}-message library in {time.perf_counter() - t0:.1f} s")
    results: dict[str, list[dict[str, float]]] = {"bare": [], "import": []}
    for _ in range(args.runs):
        for mode in ("bare", "import"):
            results[mode].append(measure(mode, lib, work))
    bare = statistics.median(r["seconds"] for r in results["bare"])
    imp = statistics.median(r["seconds"] for r in results["import"])
    print(f"library: {lib} ({args.messages:,} messages), runs: {args.runs}")
    for mode in ("bare", "import"):
        rs = results[mode]
        secs = ", ".join(f"{r['seconds']:.2f}" for r in rs)
        rss = max(r["rss_mb"] for r in rs)
        cpu = statistics.median(r["cpu"] for r in rs)
        line = (
            f"{mode:>7}: median {statistics.median(r['seconds'] for r in rs):.2f} s"
            f"  (runs: {secs})  CPU {cpu:.2f} s  peak RSS {rss:.0f} MB"
        )
        if mode == "import":
            line += (
                f"; helpers (decode, plan): CPU"
                f" {statistics.median(r['helper_cpu'] for r in rs):.2f} s,"
                f" peak RSS {max(r['helper_rss_mb'] for r in rs):.0f} MB"
            )
        print(line)
    pairs = [
        i["seconds"] / b["seconds"] for b, i in zip(results["bare"], results["import"], strict=True)
    ]
    print(f"  ratio: import / bare copy = {imp / bare:.2f}x  (target <= 2.5x)")
    print(f"  ratio within each side-by-side pair: {', '.join(f'{p:.2f}x' for p in pairs)}")
    print(f"  median of the per-pair ratios: {statistics.median(pairs):.2f}x")
    if args.breakdown:
        breakdown(lib, work)


if __name__ == "__main__":
    main()
