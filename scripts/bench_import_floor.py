"""How close can an import get to the bare copy? The writer's own work, measured.

    .venv/bin/python scripts/bench_import_floor.py [--messages 300000] [--runs 5]

Runs, side by side and alternating, three things on the library `bench_import.py` uses:
- the bare copy of `bench_import.py`;
- a "floor" import: the real import (migrations, handles, chats, contacts, the message
  INSERT … SELECT, attachments, search index, contact counts, index builds, commit), with
  every Python step made free: no body decoding (the `text` column stands in), no
  conversation split (ROWID / 8 stands in for the conversation id), no tapbacks, no
  helper process. Nothing can import faster while doing the same writes on one connection.
  (The real import no longer does them all on one: its helpers build the full-text index
  and the walk's summary tables in scratch files that it copies in, so it can beat this.)
- the real import.

This is a diagnostic, not a product path: the floor swaps `bulk.load_messages` for a
stand-in whose INSERT is the real one (captured from a real run) with its SQL functions
replaced by plain expressions. It fails loudly if that SQL no longer looks as expected.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_import import CHILD

FLOOR = r"""
import json, re, sys, time
from pathlib import Path
import chatstats.ingest.bulk as bulk
import chatstats.ingest.importer as imp
lib, out, sql_file, mode = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
real_load = bulk.load_messages
captured = {}

def capture(ingest, reader, after, upto, decoder=None):
    def keep(s):
        if s.lstrip().startswith("INSERT INTO messages ("):
            captured.setdefault("sql", s)
    ingest.conn.set_trace_callback(keep)
    try:
        return real_load(ingest, reader, after, upto, decoder)
    finally:
        ingest.conn.set_trace_callback(None)

def plain(sql):
    args = r"\((?:[^()]|\([^()]*\))*\)"  # a call's arguments, one level of nesting
    swaps = [
        (r"(?s)(?<=c\.id, )\(CASE WHEN .{0,80}? THEN cs_conversation\(m\.ROWID\) ELSE"
         r" \(SELECT g\.cid FROM bulk_spans .*?LIMIT 1\) END\)", "m.ROWID / 8"),
        (r"COALESCE\(cs_ready_text\(m\.ROWID\),\s*cs_body_text" + args + r"\)", "COALESCE(m.text, '')"),
        (r"CASE WHEN cs_ready_text\(m\.ROWID\) IS NOT NULL THEN 'ok'\s*ELSE cs_body_status"
         + args + r" END", "'ok'"),
        (r"cs_kind" + args, "'event'"),
        (r"cs_edits" + args, "0"),
        (r"cs_reply_\w+" + args, "NULL"),
    ]
    for pattern, value in swaps:
        sql, n = re.subn(pattern, value, sql)
        if not n:
            raise SystemExit(f"the load's SQL changed: no match for {pattern}")
    if "cs_" in sql:
        raise SystemExit("the load's SQL calls a function this floor does not know")
    return sql

def floor(ingest, reader, after, upto, decoder=None):
    conn = ingest.conn
    bulk.create_lookup_tables(ingest, after, upto)
    conn.execute(plain(sql_file.read_text()), {"a": after, "u": upto})
    last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]
    ingest.next_id = last + 1
    ingest.new_ids.extend(range(1, last + 1))
    ingest.by_rowid.update(conn.execute(
        "SELECT source_rowid, id FROM messages WHERE source_rowid IN"
        " (SELECT message_id FROM src.message_attachment_join)").fetchall())
    return None

if mode == "capture":
    # The INSERT as the importer writes it when it plans the conversations itself (chats
    # and spans joined in SQL): with the planning helper's per-row lookups there would be no
    # join left to stand in for, and the floor must do the same writes without any helper.
    imp.DECODE_AHEAD = False
    bulk.load_messages = capture
    imp.run_import(out / "chatstats.db", lib / "chat.db", lib / "AddressBook")
    sql_file.write_text(captured["sql"])
else:
    imp.DECODE_AHEAD = False
    bulk.load_messages = floor
    t0 = time.perf_counter()
    imp.run_import(out / "chatstats.db", lib / "chat.db", lib / "AddressBook")
    print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def run(cmd: list[str]) -> float:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.strip().splitlines()[-1])
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default="/tmp/chatstats-bench")
    args = ap.parse_args()
    work = Path(args.work)
    lib = work / f"lib-{args.messages}"
    if not (lib / "chat.db").exists():
        raise SystemExit(f"no library at {lib}: run scripts/bench_import.py first")
    sql_file = work / "floor-insert.sql"
    out = work / "out-floor"

    def fresh() -> Path:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        return out

    subprocess.run(
        [sys.executable, "-c", FLOOR, str(lib), str(fresh()), str(sql_file), "capture"],
        capture_output=True,
        check=True,
    )
    times: dict[str, list[float]] = {"bare": [], "floor": [], "import": []}
    for _ in range(args.runs):
        times["bare"].append(run([sys.executable, "-c", CHILD, "bare", str(lib), str(fresh())]))
        times["floor"].append(
            run([sys.executable, "-c", FLOOR, str(lib), str(fresh()), str(sql_file), "floor"])
        )
        times["import"].append(run([sys.executable, "-c", CHILD, "import", str(lib), str(fresh())]))
    print(f"library: {lib} ({args.messages:,} messages), runs: {args.runs}")
    for name, ts in times.items():
        runs = ", ".join(f"{t:.2f}" for t in ts)
        print(f"{name:>7}: median {statistics.median(ts):.2f} s  (runs: {runs})")
    for name in ("floor", "import"):
        pairs = [t / b for t, b in zip(times[name], times["bare"], strict=True)]
        print(
            f"  {name} / bare copy: median {statistics.median(pairs):.2f}x"
            f"  (pairs: {', '.join(f'{p:.2f}x' for p in pairs)})"
        )


if __name__ == "__main__":
    main()
