"""Why the database layer runs whole units of work on a thread per call, not per statement.

aiosqlite hops to its thread and back for every statement; `Database.read`/`write` hop once
per unit of work (a page that needs three queries, a batch of inserts). This prints the cost
per unit both ways on a real SQLite file, side by side in one run, plus the bare sqlite3 cost
on the calling thread, so docs/design.md can quote figures measured here.

    .venv/bin/python scripts/bench_db.py [--units 2000]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import anyio.to_thread

from chatstats.db import Database

PAGE_SQL = (
    "SELECT id, guid, text FROM bench_messages WHERE chat_id = :chat ORDER BY id DESC LIMIT 50",
    "SELECT id, title FROM bench_chats WHERE id = :chat",
    "SELECT count(*) FROM bench_messages WHERE chat_id = :chat",
)


def _seed(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE bench_chats (id INTEGER PRIMARY KEY, title TEXT);"
        "CREATE TABLE bench_messages (id INTEGER PRIMARY KEY, guid TEXT, chat_id INT, text TEXT);"
        "CREATE INDEX m_chat ON bench_messages(chat_id, id);"
        "CREATE TABLE bench_sink (id INTEGER PRIMARY KEY, v INT);"
    )
    conn.executemany(
        "INSERT INTO bench_chats VALUES (?, ?)", [(i, f"chat {i}") for i in range(100)]
    )
    conn.executemany(
        "INSERT INTO bench_messages (guid, chat_id, text) VALUES (?, ?, ?)",
        [(f"g{i}", i % 100, "x" * 40) for i in range(50_000)],
    )
    conn.commit()
    conn.close()


def _page(conn: sqlite3.Connection, chat: int) -> int:
    n = 0
    for sql in PAGE_SQL:
        n += len(conn.execute(sql, {"chat": chat}).fetchall())
    return n


async def _run(units: int, db: Database) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"unit_per_hop": [], "statement_per_hop": [], "writes_unit": []}
    out["writes_statement"] = []
    reader = sqlite3.connect(db.path, check_same_thread=False)

    def one(sql: str, chat: int) -> int:
        return len(reader.execute(sql, {"chat": chat}).fetchall())

    for i in range(units):
        chat = i % 100
        t = time.perf_counter()
        await db.read(_page, chat)
        out["unit_per_hop"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for sql in PAGE_SQL:  # what an aiosqlite-style driver costs: a hop per statement
            await anyio.to_thread.run_sync(one, sql, chat)
        out["statement_per_hop"].append(time.perf_counter() - t)
        if i % 10 == 0:
            rows = [(i * 100 + k,) for k in range(20)]
            t = time.perf_counter()
            await db.write(
                lambda c, r=rows: c.executemany("INSERT INTO bench_sink (v) VALUES (?)", r)
            )
            out["writes_unit"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await anyio.to_thread.run_sync(lambda: reader.execute("SELECT 1"))  # BEGIN
            for row in rows:
                await anyio.to_thread.run_sync(lambda r=row: reader.execute("SELECT ?", r))
            await anyio.to_thread.run_sync(lambda: reader.execute("SELECT 1"))  # COMMIT
            out["writes_statement"].append(time.perf_counter() - t)
    reader.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        db = Database(path)
        db.open_sync()  # the app's own pragmas and migrations, then the bench's tables
        _seed(path)
        try:
            results = anyio.run(_run, args.units, db)
        finally:
            db.close()
        conn = sqlite3.connect(path)
        t = time.perf_counter()
        for i in range(args.units):
            _page(conn, i % 100)
        bare = (time.perf_counter() - t) / args.units
        conn.close()
    print(f"units: {args.units} (a page = {len(PAGE_SQL)} queries; a write = 20 rows)")
    print(f"  bare sqlite3 on the calling thread        {bare * 1e6:8.1f} µs per page")
    for name, label in (
        ("unit_per_hop", "whole page in one thread hop (Database)"),
        ("statement_per_hop", "one thread hop per statement (aiosqlite)"),
        ("writes_unit", "20-row write, one hop (Database.write)"),
        ("writes_statement", "20-row write, a hop per statement"),
    ):
        xs = results[name]
        p95 = sorted(xs)[int(len(xs) * 0.95)]
        print(
            f"  {label:42s} {statistics.median(xs) * 1e6:8.1f} µs median, {p95 * 1e6:8.1f} µs p95"
        )
    ratio = statistics.median(results["statement_per_hop"]) / statistics.median(
        results["unit_per_hop"]
    )
    print(f"  per-statement / per-unit (pages): {ratio:.2f}x")


if __name__ == "__main__":
    main()
