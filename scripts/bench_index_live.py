#!/usr/bin/env python3
"""Live commit→SSE latency while the vector index builds, and at rest afterwards.

    .venv/bin/python scripts/bench_index_live.py --library-size 100000 [--interval 0.1]
        [--rest 150] [--repo PATH]

Why: the index build (embedding every message, filling hnswlib) runs in a worker thread of
the same process that tails chat.db and serves SSE, so it competes with live sync for the
GIL, both cores and the database. This measures what a person sees meanwhile.

A sample library is generated and imported once (cached under --work); each run copies
both, so the daemon starts with the history imported and no index: it builds one at once.
`chatstats serve` runs as its own process, a reader follows the busiest 1:1 chat's SSE
stream, and the simulated correspondent (another process, Messages.app-like transactions)
writes a message every --interval seconds until --rest messages have been committed after
the build ended. A message counts as "during the build" when it was committed while
/api/index/status said `building` (polled every 50 ms). Target: p95 ≤ 50 ms in both.
`--prebuilt` is the control: the same, with the index built beforehand (the live-sync
floor on this library, all samples at rest). `--repo` runs the daemon from another checkout (PYTHONPATH), to compare two versions side
by side on the same library.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

TOKEN = "bench-index-live"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] if xs else float("nan")


def prepared(
    work: Path, size: int, seed: int, env: dict[str, str], repo: str | None = None
) -> tuple[Path, Path]:
    """The cached library and its imported data directory (no index in it), imported by
    the checkout that will serve it (its schema may differ)."""
    tag = Path(repo).resolve().name if repo else "self"
    lib, data = work / f"lib-{size}-{seed}", work / f"data-{size}-{seed}-{tag}"
    if not (lib / ".done").exists():
        from chatstats.sample.generate import make_library

        shutil.rmtree(lib, ignore_errors=True)
        began = time.monotonic()
        make_library(lib, messages=size, seed=seed, truth=False)
        (lib / ".done").write_text("")
        print(f"library: {size} messages generated in {time.monotonic() - began:.0f} s")
    if not (data / ".done").exists():
        shutil.rmtree(data, ignore_errors=True)
        began = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "chatstats", "import", "--data-dir", str(data),
             "--source", str(lib / "chat.db"), "--addressbook", str(lib / "AddressBook")],
            env=env, check=True, stdout=subprocess.DEVNULL, cwd=repo,
        )  # fmt: skip
        (data / ".done").write_text("")
        print(f"import: {time.monotonic() - began:.0f} s")
    return lib, data


def indexed(work: Path, data: Path, lib: Path, env: dict[str, str]) -> Path:
    """A copy of `data` with the index built (a daemon run until it is, then stopped)."""
    out = work / (data.name + "-indexed")
    if (out / ".done").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(data, out)
    lib_copy = work / "lib-for-index"
    shutil.rmtree(lib_copy, ignore_errors=True)
    shutil.copytree(lib, lib_copy)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "chatstats", "serve", "--source", str(lib_copy / "chat.db"),
         "--addressbook", str(lib_copy / "AddressBook"), "--data-dir", str(out), "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert daemon.stdout is not None
        base = json.loads(daemon.stdout.readline())["url"]
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"})
        while True:
            st = client.get("/api/index/status").json()
            if st["items"] and not st["building"]:
                break
            time.sleep(0.2)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    shutil.rmtree(lib_copy, ignore_errors=True)
    (out / ".done").write_text("")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library-size", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--rest", type=int, default=150, help="messages committed after the build")
    ap.add_argument("--work", default="/tmp/chatstats-bench-index-live")
    ap.add_argument("--repo", default=None, help="run the daemon from this checkout")
    ap.add_argument("--timeline", action="store_true", help="also print p50 per 5 s")
    ap.add_argument(
        "--prebuilt", action="store_true",
        help="control: start with the index already built (all samples at rest)",
    )  # fmt: skip
    args = ap.parse_args()

    env = {**os.environ, "CHATSTATS_TOKEN": TOKEN, "CHATSTATS_LOG_LEVEL": "WARNING"}
    env.pop("CHATSTATS_EMBED_MODEL", None)  # the bundled default model
    if args.repo:
        env["PYTHONPATH"] = str(Path(args.repo).resolve())
    work = Path(args.work)
    cached_lib, cached_data = prepared(work, args.library_size, args.seed, env, args.repo)
    if args.prebuilt:
        cached_data = indexed(work, cached_data, cached_lib, env)
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    lib, data = run / "lib", run / "data"
    shutil.copytree(cached_lib, lib)
    shutil.copytree(cached_data, data)

    daemon = subprocess.Popen(
        [sys.executable, "-m", "chatstats", "serve", "--source", str(lib / "chat.db"),
         "--addressbook", str(lib / "AddressBook"), "--data-dir", str(data), "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=args.repo,  # `-m` puts the working directory first on sys.path, before PYTHONPATH
    )  # fmt: skip
    writer: subprocess.Popen[str] | None = None
    try:
        assert daemon.stdout is not None
        base = json.loads(daemon.stdout.readline())["url"]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        client = httpx.Client(base_url=base, headers=headers, timeout=30)
        while (client.get("/api/health").json()["live"] or {}).get("state") != "ok":
            time.sleep(0.05)
        import sqlite3

        conn = sqlite3.connect(lib / "chat.db")
        guid = conn.execute(
            "SELECT c.guid FROM chat_message_join j JOIN chat c ON c.ROWID = j.chat_id"
            " WHERE c.style = 45 GROUP BY j.chat_id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()[0]
        conn.close()
        chat_id = next(
            c["id"] for c in client.get("/api/chats?limit=500").json() if c["guid"] == guid
        )

        arrivals: dict[str, int] = {}
        ready = threading.Event()

        def follow() -> None:
            with (
                httpx.Client(base_url=base, headers=headers, timeout=None) as c,
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
        ready.wait(30)

        commits: dict[str, int] = {}

        def read_writer(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                note = json.loads(line)
                if note.get("kind") == "message":
                    commits[note["guid"]] = note["committed_ns"]

        writer = subprocess.Popen(
            [sys.executable, "-m", "chatstats.sample.correspondent", "--db", str(lib / "chat.db"),
             "--count", "0", "--interval", str(args.interval), "--plain"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        threading.Thread(target=read_writer, args=(writer,), daemon=True).start()

        # The build window, as the status route reports it.
        build_start: int | None = None
        build_end: int | None = None
        items = 0
        if args.prebuilt:  # no build: the window is empty, every sample is at rest
            build_start = build_end = time.time_ns()
        while True:
            now = time.time_ns()
            st = client.get("/api/index/status").json()
            if st["building"] and build_start is None:
                build_start = now
            if not st["building"] and build_start is not None and build_end is None:
                build_end, items = now, st["items"]
            if build_end is not None:
                after = sum(1 for c in list(commits.values()) if c > build_end)
                if after >= args.rest:
                    break
            time.sleep(0.05)
        writer.terminate()
        writer.wait(10)
        deadline = time.monotonic() + 10
        while set(commits) - set(arrivals) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert build_start is not None and build_end is not None
        during = [(arrivals[g] - c) / 1e6 for g, c in commits.items()
                  if g in arrivals and build_start <= c <= build_end]  # fmt: skip
        rest = [(arrivals[g] - c) / 1e6 for g, c in commits.items()
                if g in arrivals and c > build_end]  # fmt: skip
        missing = len(set(commits) - set(arrivals))
        print(
            f"index build: {(build_end - build_start) / 1e9:.1f} s, {items} units"
            f" ({args.library_size} messages); {len(commits)} written, {missing} missing on SSE"
        )
        if args.timeline:  # p50 per 5 s of commits, from the build's start
            buckets: dict[int, list[float]] = {}
            for g, c in commits.items():
                if g in arrivals:
                    buckets.setdefault((c - build_start) // 5_000_000_000, []).append(
                        (arrivals[g] - c) / 1e6
                    )
            print("timeline (s from build start: p50 ms):", "  ".join(
                f"{5 * k}: {statistics.median(v):.0f}" for k, v in sorted(buckets.items())
            ))  # fmt: skip
        for name, lat in (("during build", during), ("at rest", rest)):
            if not lat:
                print(f"commit->SSE {name}: no samples")
                continue
            print(
                f"commit->SSE {name:12s} n={len(lat):4d}  p50 {statistics.median(lat):6.1f}"
                f"  p95 {pct(lat, 95):6.1f}  max {max(lat):6.1f} ms   (target p95 <= 50)"
            )
    finally:
        if writer is not None and writer.poll() is None:
            writer.terminate()
        daemon.terminate()
        daemon.wait(timeout=30)


if __name__ == "__main__":
    main()
