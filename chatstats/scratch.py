"""Tables of the first import built on the other core, in a scratch file, and moved in whole.

Why: after a 300k-message load the writer spent ~1.9 s inserting the statistics summaries
that stats/precompute.py had already computed and building their secondary indexes, while
the second core sat idle. SQLite can copy a table into an empty one of the same shape,
indexes included, without decoding a record or sorting an index entry (its "transfer
optimisation" of `INSERT INTO t SELECT * FROM other.t`), across attached databases. So
another process (or thread) writes the rows, on a connection of its own, into a scratch
file holding the same tables, builds their indexes there, and the writer only copies each
table (0.5 s at 300k instead of 1.9 s).

The copy stays exact whatever SQLite decides: were the shapes ever to differ, the same
statement inserts row by row. A scratch file holds data of the user's messages: it is
created 0600 beside the database, attached before the import's transaction (SQLite cannot
attach within one, and a transaction that begins IMMEDIATE locks every attached file,
so the import's begins on the main database alone: see `ingest/importer.py`), and removed
when the import ends, whichever way; a file left by a killed import is removed by the next.

Three files, each under its own alias: the summaries' (`ALIAS`, written by the decoding
helper process, or failing that by the thread of stats/precompute.py), the conversation
walk's summaries' (`WALK_ALIAS`, written by the planning helper process, which computed
them) and the full-text index's (`FTS_ALIAS`, written by the decoding helper: see
ingest/decode.py). One file each because SQLite lets one connection at a time write a
file, and they are written at the same moment.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ALIAS = "stats_build"  # the statistics summaries' file (stats/precompute.py)
FTS_ALIAS = "fts_build"  # the full-text index's (ingest/decode.py)
WALK_ALIAS = "walk_build"  # the conversation walk's summaries' (the planning helper's)


def path_for(db_path: Path, alias: str = ALIAS) -> Path:
    return db_path.with_name(f"{db_path.name}.{alias.replace('_', '-')}")


def remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-journal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def attach(conn: sqlite3.Connection, tables: Iterable[str], alias: str = ALIAS) -> Path | None:
    """Create the scratch file beside the connection's database with `tables` as that
    declares them (without their secondary indexes: `write` builds those after the rows)
    and attach it. Outside any transaction. None (nothing attached) if it cannot be made,
    or the database has no file (in memory): the import then inserts the summaries itself."""
    (main,) = conn.execute("SELECT file FROM pragma_database_list WHERE name = 'main'").fetchone()
    if not main:
        return None
    path = path_for(Path(main), alias)
    remove(path)  # a killed import's
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.close(fd)
        build = sqlite3.connect(path, isolation_level=None)
        try:
            build.execute("PRAGMA journal_mode=OFF")
            for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name IN"
                " (SELECT value FROM json_each(:t)) ORDER BY name",
                {"t": json.dumps(list(tables))},
            ):
                build.execute(sql)  # the schema's own statements, copied verbatim
        finally:
            build.close()
        conn.execute(f"ATTACH DATABASE :p AS {alias}", {"p": str(path)})  # a constant
    except (OSError, sqlite3.Error):
        remove(path)
        return None
    return path


def attached(conn: sqlite3.Connection, alias: str = ALIAS) -> Path | None:
    row = conn.execute(
        "SELECT file FROM pragma_database_list WHERE name = :a", {"a": alias}
    ).fetchone()
    return Path(row[0]) if row is not None and row[0] else None


def index_sql(conn: sqlite3.Connection, tables: Iterable[str]) -> dict[str, list[str]]:
    """Per table, the CREATE INDEX statements the main database has for it (for `write`)."""
    out: dict[str, list[str]] = {}
    for table, sql in conn.execute(
        "SELECT tbl_name, sql FROM main.sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        " AND tbl_name IN (SELECT value FROM json_each(:t)) ORDER BY name",
        {"t": json.dumps(list(tables))},
    ):
        out.setdefault(table, []).append(sql)
    return out


def write(
    path: Path,
    tables: dict[str, tuple[tuple[str, ...], Iterable[tuple[Any, ...]]]],
    indexes: list[str],
) -> None:
    """On the calling thread's own connection: each table's rows, then its indexes (a sort
    each, not row by row). No journal and no sync: the file is thrown away if anything
    fails, and only read once this returns."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-64000")
        conn.execute("BEGIN")
        for table, (columns, rows) in tables.items():
            names = ", ".join(columns)  # constants of stats/precompute.py and maintain.py
            marks = ", ".join("?" * len(columns))
            conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
        for sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
    finally:
        conn.close()


def copy(conn: sqlite3.Connection, table: str, alias: str = ALIAS) -> None:
    """Move one built table into the main database's (empty, indexes in place) one."""
    # Read the file's schema first: this connection attached it before the indexes were
    # built there, and a statement planned on that older schema would insert row by row.
    conn.execute(f"SELECT count(*) FROM {alias}.sqlite_master").fetchone()
    conn.execute(f"INSERT INTO main.{table} SELECT * FROM {alias}.{table}")  # constants


def detach(conn: sqlite3.Connection, path: Path | None, alias: str = ALIAS) -> None:
    """Outside any transaction: let the file go and remove it."""
    with contextlib.suppress(sqlite3.Error):
        if attached(conn, alias) is not None:
            conn.execute(f"DETACH DATABASE {alias}")  # a constant
    if path is not None:
        remove(path)
