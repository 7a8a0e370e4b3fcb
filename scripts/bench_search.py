#!/usr/bin/env python3
"""Search benchmark: index build, RSS, latency and recall of each mode on planted facts.

    .venv/bin/python scripts/bench_search.py --messages 300000

Makes a sample library (cached under --work), imports it, builds the vector index with the
default (bundled, offline) model, then asks every planted question in each mode: p50/p95
latency (query embedding included) and recall@5/@10 on the planted questions, any-answer (a
question counts as found when any of its answer messages is in the top k). Modes: `text` as
the route serves it (every word), `words` (the hybrid's FTS leg alone: any non-stopword,
bm25), `semantic`, `hybrid`.

`same-q@10` counts a question as found when the top 10 holds the answer of any fact planted
with the very same question: the generator reuses its 15 templates, so at 300k a question
like "how big is the flat we are moving into?" has a hundred answers that differ by one
number, and which of them ranks first is a coin toss no retriever can win. A benchmark with
one answer per question (what retrieval is judged on) rewards what this column measures.

Then the daemon itself: `chatstats serve` on the same data directory (it loads the index
built above; `--serve-rebuild` deletes it first, so the daemon builds it), VmRSS and VmHWM
of that process once the index is ready and after every planted question was asked over HTTP
in hybrid mode. `--no-serve` skips it.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import shutil
import socket
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
    ap.add_argument("--no-serve", action="store_true", help="skip the daemon's RSS")
    ap.add_argument(
        "--serve-rebuild", action="store_true", help="the daemon builds the index itself"
    )
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
    if not args.no_serve:
        serve_rss(args, lib, data)


def _proc_mb(pid: int) -> dict[str, float]:
    with open(f"/proc/{pid}/status") as f:
        return {
            k: int(v.split()[0]) / 1024
            for k, v in (line.split(":", 1) for line in f)
            if k in ("VmRSS", "VmHWM")
        }


def serve_rss(args: argparse.Namespace, lib: Path, data: Path) -> None:
    """RSS of a real `chatstats serve` holding the index: after load and after searches."""
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.serve_rebuild:
        for pattern in ("index.json", "singles-*.bin", "windows-*.bin", "units-*.npz"):
            for old in data.glob(pattern):
                old.unlink()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "bench-search-token"
    env = {**os.environ, "CHATSTATS_TOKEN": token, "CHATSTATS_LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "chatstats", "serve", "--source", str(lib / "chat.db")]
    cmd += ["--addressbook", str(lib / "AddressBook"), "--data-dir", str(data)]
    cmd += ["--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        t = time.perf_counter()
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while True:
                time.sleep(0.5)
                if proc.poll() is not None:
                    raise SystemExit(f"serve exited with {proc.returncode}")
                try:
                    st = client.get("/api/index/status").json()
                except httpx.HTTPError:
                    continue
                if st["items"] > 0 and not st["building"]:
                    break
            ready = time.perf_counter() - t
            time.sleep(1.0)
            loaded = _proc_mb(proc.pid)
            facts = load_truth(lib / "truth.json").facts[: args.queries]
            for f in facts:
                r = client.get("/api/search", params={"q": f.question, "mode": "hybrid"})
                r.raise_for_status()
            after = _proc_mb(proc.pid)
        how = "built by it" if args.serve_rebuild else "loaded"
        print(
            f"serve RSS ({how}, ready in {ready:.1f} s): {loaded['VmRSS']:.0f} MB ready,"
            f" {after['VmRSS']:.0f} MB after {len(facts)} hybrid searches,"
            f" peak (VmHWM) {after['VmHWM']:.0f} MB"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
    print(
        f"bench process RSS (holds the truth file too): {rss0:.0f} MB before the model and"
        f" index, {rss_mb():.0f} MB with them"
    )
    facts = truth.facts[: args.queries]
    ids = dict(sqlite3.connect(db).execute("SELECT guid, id FROM messages").fetchall())
    same: dict[str, set[int | None]] = collections.defaultdict(set)
    for f in facts:
        same[f.question] |= {ids.get(g) for g in (f.guids or [f.guid])}
    print(f"planted questions: {len(facts)} ({len(same)} distinct)")
    for mode in ("text", "words", "semantic", "hybrid"):
        lat: list[float] = []
        at5 = at10 = same10 = 0
        for f in facts:
            t = time.perf_counter()
            if mode == "text":
                hits = [h[0].id for h in _text(search, db, f.question)]
            elif mode == "words":
                hits = _words(db, f.question)
            else:
                hits = [h[0].id for h in search.search(f.question, mode, limit=10)]
            lat.append((time.perf_counter() - t) * 1000)
            want = {ids.get(g) for g in (f.guids or [f.guid])}
            at5 += bool(want & set(hits[:5]))
            at10 += bool(want & set(hits[:10]))
            same10 += bool(same[f.question] & set(hits[:10]))
        n = max(1, len(facts))
        print(
            f"{mode:9s} p50 {statistics.median(lat):6.1f} ms  p95 {pct(lat, 95):6.1f} ms"
            f"  recall@5 {at5 / n:.3f}  recall@10 {at10 / n:.3f}  same-q@10 {same10 / n:.3f}"
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


def _words(db: Path, q: str) -> list[int]:
    """The hybrid's word leg alone (any non-stopword, best bm25 first)."""
    from chatstats.context.search import _fts_ranked

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return _fts_ranked(conn, q, 10)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
