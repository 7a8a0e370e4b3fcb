"""Checksums of every table an import writes, to prove a change to the import left its
output byte-identical.

    .venv/bin/python scripts/import_checksum.py DATA_DIR/chatstats.db

Why: the tests compare databases on generated libraries of a few hundred rows; a change to
the 300k bulk path (chunking, ordering, PRAGMAs) is checked here on the full library by
importing before and after and comparing the printed lines. Each table's rows are hashed
in primary-key order with their SQLite types; columns holding wall-clock times of the run
itself (sealed_at_ns, imported_at_ns, import_runs) are left out. The full-text index
is hashed through fts5vocab (term, row, offset). Prints only row counts and digests, never
message content.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
from pathlib import Path

# (table, columns left out because they hold the wall-clock time of the import run)
_WALL_CLOCK = {"conversations": {"sealed_at_ns"}, "sources": {"imported_at_ns"}}
_SKIP = {"import_runs", "events", "sqlite_sequence", "schema_migrations"}  # run bookkeeping


def checksums(path: Path) -> dict[str, tuple[int, str]]:
    """Table → (rows, sha256 of its rows in key order)."""
    conn = sqlite3.connect(path)  # writable only for the temp fts5vocab table below
    out: dict[str, tuple[int, str]] = {}
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'messages_fts_%' ORDER BY name"
        )
    ]
    for name in names:
        if name in _SKIP:
            continue
        if name == "messages_fts":  # external content: hash what the index holds
            cols = ["rowid", "text"]
            order = "rowid"
        else:
            info = conn.execute(f'PRAGMA table_info("{name}")').fetchall()  # names from sqlite
            cols = [f'"{c[1]}"' for c in info if c[1] not in _WALL_CLOCK.get(name, ())]
            pk = [f'"{c[1]}"' for c in sorted(info, key=lambda c: c[5]) if c[5]]
            order = ", ".join(pk or cols)
        h = hashlib.sha256()
        n = 0
        sql = f'SELECT {", ".join(cols)} FROM "{name}" ORDER BY {order}'
        for row in conn.execute(sql):
            h.update(repr(row).encode())
            n += 1
        out[name] = (n, h.hexdigest()[:16])
    if "messages_fts" in names:  # the index itself, not only the content it points to
        conn.execute("CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, messages_fts, instance)")
        h = hashlib.sha256()
        n = 0
        for row in conn.execute("SELECT term, doc, col, offset FROM temp.v"):
            h.update(repr(row).encode())
            n += 1
        out["messages_fts (index)"] = (n, h.hexdigest()[:16])
    conn.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("db", type=Path)
    args = ap.parse_args()
    if not args.db.is_file():
        sys.exit(f"no such database: {args.db}")
    for name, (n, digest) in checksums(args.db).items():
        print(f"{name:28} {n:>8} {digest}")


if __name__ == "__main__":
    main()
