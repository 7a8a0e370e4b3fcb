"""Where a first import's wall-clock time goes: a timeline of its statements.

    .venv/bin/python scripts/trace_import.py LIBRARY OUT [--nostats]

LIBRARY holds chat.db and AddressBook (e.g. the 300k library scripts/bench_import.py
builds); OUT is emptied and receives the imported database. Prints each statement on any
of the import's connections that took over 30 ms (start, end, seconds, and the Python time
since the previous one when over 50 ms), the progress phases, and the waits for the decode
and planning helpers (`WAIT wait`, `WAIT planned`; `_collect`/`_collect_plan` span each
helper's life). `scripts/bench_import.py --breakdown` gives CPU per statement instead; this
shows what the wall clock waits on (the helpers, the other core). Message text never
appears: statements are printed cut to 90 characters, before any parameter.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

T0 = time.perf_counter()
SPANS: list[tuple[float, float, str]] = []


def note(sql: str, start: float, end: float) -> None:
    if end - start > 0.03:
        SPANS.append((start - T0, end - T0, " ".join(sql.split())[:90]))


class Timed(sqlite3.Connection):
    def execute(self, sql: str, *a: Any) -> sqlite3.Cursor:  # type: ignore[override]
        t = time.perf_counter()
        try:
            return super().execute(sql, *a)
        finally:
            note(sql, t, time.perf_counter())

    def executemany(self, sql: str, *a: Any) -> sqlite3.Cursor:  # type: ignore[override]
        t = time.perf_counter()
        try:
            return super().executemany(sql, *a)
        finally:
            note("MANY " + sql, t, time.perf_counter())


def main() -> None:
    lib, out = Path(sys.argv[1]), Path(sys.argv[2])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if "--nostats" in sys.argv[3:]:  # as bench_stats's import without statistics
        import chatstats.db as db

        schema = out / "schema"
        schema.mkdir()
        for p in db.schema_dir().glob("*.sql"):
            if "_stats" not in p.name:
                shutil.copy(p, schema / p.name)
        db.schema_dir = lambda: schema
    real = sqlite3.connect

    def connect(*a: Any, **k: Any) -> sqlite3.Connection:
        k.setdefault("factory", Timed)
        return real(*a, **k)

    sqlite3.connect = connect  # type: ignore[assignment]
    import chatstats.ingest.decode as dec
    from chatstats.ingest.importer import run_import

    modules = time.perf_counter() - T0
    for name in ("wait", "planned", "_collect", "_collect_plan"):
        orig = getattr(dec.Decoder, name)

        def wrap(self: Any, *a: Any, _o: Any = orig, _n: str = name, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return _o(self, *a, **k)
            finally:
                SPANS.append((t - T0, time.perf_counter() - T0, "WAIT " + _n))

        setattr(dec.Decoder, name, wrap)

    def progress(phase: str, done: int, _total: int) -> None:
        if done == 0 or phase == "done":
            now = time.perf_counter() - T0
            SPANS.append((now, now, "PHASE " + phase))

    run_import(out / "chatstats.db", lib / "chat.db", lib / "AddressBook", progress=progress)
    total = time.perf_counter() - T0
    print(f"modules {modules:.2f}")
    last = 0.0
    for a, b, what in sorted(SPANS):
        gap = f"(+{a - last:.2f} py) " if a - last > 0.05 else ""
        print(f"{a:6.2f} {b:6.2f} {b - a:5.2f} {gap}{what}")
        last = max(last, b)
    print(f"total {total:.2f}")


if __name__ == "__main__":
    main()
