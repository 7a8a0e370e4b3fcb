#!/usr/bin/env python3
"""Search benchmark: index build, RSS, latency and recall of each mode on planted facts.

    .venv/bin/python scripts/bench_search.py --messages 300000

Makes a sample library (cached under --work), imports it, builds the vector index with the
default (bundled, offline) model, then asks every planted question in each mode: p50/p95
latency (query embedding included) and recall@5/@10 of the answering message.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from chatstats.context.embed import bundled
from chatstats.context.search import SearchIndex
from chatstats.ingest.importer import run_import
from chatstats.sample.generate import make_library
from chatstats.sample.truth import load_truth


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", default="/tmp/chatstats-bench-search")
    ap.add_argument("--queries", type=int, default=500, help="planted questions asked at most")
    ap.add_argument("--query-only", action="store_true", help="(internal) load and ask only")
    args = ap.parse_args()
    if args.query_only:
        ask(args)
        return
    work = Path(args.work) / f"{args.messages}-{args.seed}"
    lib, data = work / "lib", work / "data"
    if not (lib / "truth.json").exists():
        t = time.perf_counter()
        make_library(lib, messages=args.messages, seed=args.seed)
        print(f"library: {args.messages} rows in {time.perf_counter() - t:.1f} s")
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    db = data / "chatstats.db"
    t = time.perf_counter()
    run_import(db, lib / "chat.db", lib / "AddressBook")
    print(f"import: {time.perf_counter() - t:.1f} s")
    emb = bundled()
    state = SimpleNamespace(
        settings=SimpleNamespace(data_dir=str(data)), db=SimpleNamespace(path=db)
    )
    search = SearchIndex(state, emb)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    n_msgs = conn.execute("SELECT count(*) FROM messages WHERE kind = 'message'").fetchone()[0]
    t = time.perf_counter()
    search.index.rebuild(conn)
    build = time.perf_counter() - t
    items = search.index.describe()["items"]
    print(
        f"index build: {build:.1f} s for {n_msgs} messages -> {items} units"
        f" ({n_msgs / build:,.0f} messages/s, {items / build:,.0f} units/s)"
    )
    del conn, search
    # Load and query in a fresh process, so RSS is what a daemon holds, not the build's peak.
    subprocess.run([sys.executable, __file__, *sys.argv[1:], "--query-only"], check=True)


def ask(args: argparse.Namespace) -> None:
    work = Path(args.work) / f"{args.messages}-{args.seed}"
    lib, data = work / "lib", work / "data"
    db = data / "chatstats.db"
    truth = load_truth(lib / "truth.json")
    rss0 = rss_mb()
    emb = bundled()
    state = SimpleNamespace(
        settings=SimpleNamespace(data_dir=str(data)), db=SimpleNamespace(path=db)
    )
    t = time.perf_counter()
    search = SearchIndex(state, emb)
    assert search.index.load()
    print(f"index load: {time.perf_counter() - t:.2f} s")
    print(f"RSS: {rss0:.0f} MB before the model and index, {rss_mb():.0f} MB with them")
    facts = truth.facts[: args.queries]
    ids = dict(sqlite3.connect(db).execute("SELECT guid, id FROM messages").fetchall())
    print(f"planted questions: {len(facts)}")
    for mode in ("text", "semantic", "hybrid"):
        lat: list[float] = []
        at5 = at10 = 0
        for f in facts:
            t = time.perf_counter()
            if mode == "text":
                hits = [h[0].id for h in _text(search, db, f.question)]
            else:
                hits = [h[0].id for h in search.search(f.question, mode, limit=10)]
            lat.append((time.perf_counter() - t) * 1000)
            want = ids.get(f.guid)
            at5 += want in hits[:5]
            at10 += want in hits[:10]
        n = max(1, len(facts))
        print(
            f"{mode:9s} p50 {statistics.median(lat):6.1f} ms  p95 {pct(lat, 95):6.1f} ms"
            f"  recall@5 {at5 / n:.3f}  recall@10 {at10 / n:.3f}"
        )
    print(f"threads alive: {threading.active_count()}")


def _text(search: SearchIndex, db: Path, q: str) -> list[tuple[object, float, list[str]]]:
    """mode=text as the route serves it: every word, newest first (Library.search)."""
    from chatstats.library import store
    from chatstats.library.service import _build_messages, search_terms

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = store.search_messages(conn, store.match_expression(search_terms(q)), None, 10, None)
        return [(m, 0.0, ["text"]) for m in _build_messages(conn, rows)]
    finally:
        conn.close()


if __name__ == "__main__":
    main()
