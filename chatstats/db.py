"""The app database: numbered migrations, one writer connection, a small pool of readers.

Every write goes through one connection, one `BEGIN IMMEDIATE` transaction at a time, so
there is no lock contention to work around. Reads use their own connections (WAL), and a
whole unit of read work runs in one thread hop: aiosqlite would cost ~60 µs per statement
(see reference/perf.md), which adds up on pages that need three queries.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import anyio.to_thread

from chatstats import log
from chatstats.errors import MigrationError
from chatstats.imessage.chatdb import LENIENT_TEXT

T = TypeVar("T")
logger = log.get(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def schema_dir() -> Path:
    """Migrations ship inside the wheel as chatstats/_schema, or sit at the repo root."""
    here = Path(__file__).resolve().parent
    packaged = here / "_schema"
    return packaged if packaged.is_dir() else here.parent / "schema"


def migrations(directory: Path | None = None) -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted((directory or schema_dir()).glob("*.sql")):
        m = _MIGRATION_NAME.match(path.name)
        if not m:
            raise MigrationError(f"migration file name not of the form NNNN_name.sql: {path.name}")
        found.append((int(m.group(1)), m.group(2), path))
    versions = [v for v, _, _ in found]
    # Strictly increasing from 1; a gap is allowed, so parallel branches can reserve ranges
    # (the chatbot's tables start at 0010) and merge in any order.
    if versions[:1] not in ([], [1]) or len(set(versions)) != len(versions):
        raise MigrationError(f"migration versions must start at 1 and be unique, found {versions}")
    return found


def _ensure_private_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (its -wal/-shm copy the mode)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def connect(path: Path, *, write: bool) -> sqlite3.Connection:
    """A connection with the app's pragmas; autocommit mode so transactions are explicit."""
    if write:
        _ensure_private_file(path)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    else:
        uri = f"file:{quote(str(path))}?mode=ro"  # `?`, `#`, `%` in a folder name
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only=1")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-32000")
    conn.row_factory = sqlite3.Row
    conn.text_factory = LENIENT_TEXT  # rows copied verbatim from a damaged chat.db
    conn.create_function(
        "cs_words", 1, word_count, deterministic=True
    )  # 0007 migration, stats rebuilds
    return conn


def word_count(text: object) -> int:
    """Whitespace-separated tokens, as the statistics define words; stats triggers call it."""
    return len(text.split()) if isinstance(text, str) else 0


def inserted_id(cur: sqlite3.Cursor) -> int:
    """The rowid an INSERT just made. sqlite3 types `lastrowid` as optional (it is None only
    before any INSERT on the cursor), so callers get an int or a clear error, not a None row."""
    rowid = cur.lastrowid
    if rowid is None:
        raise RuntimeError("no row was inserted")
    return rowid


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, *, write: bool = True) -> Iterator[sqlite3.Connection]:
    """One explicit transaction: committed when the block ends, rolled back when it raises.

    Why one helper: the connections run in autocommit mode so that transactions are
    explicit, and every unit of work (the writer's, a migration's, a CLI command's against
    the daemon's file) must end in exactly one COMMIT or ROLLBACK. `write=True` takes the
    write lock at BEGIN (IMMEDIATE), so a unit never fails half-way on a lock upgrade;
    `write=False` is a read snapshot that never waits for, or delays, a writer.
    """
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, directory: Path | None = None) -> list[int]:
    """Apply pending migrations, each in its own transaction. Refuse a newer schema."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ns INTEGER NOT NULL)"
    )
    known = migrations(directory)
    applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    newest_known = known[-1][0] if known else 0
    if applied and max(applied) > newest_known:
        raise MigrationError(
            f"the database is at schema version {max(applied)}, newer than this chatstats "
            f"understands ({newest_known}); upgrade chatstats"
        )
    done = []
    for version, name, path in known:
        if version in applied:
            continue
        script = path.read_text(encoding="utf-8")
        try:
            with transaction(conn):
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_ns) VALUES (:v, :n, :t)",
                    {"v": version, "n": name, "t": time.time_ns()},
                )
        except sqlite3.Error as exc:
            raise MigrationError(f"migration {version:04d}_{name} failed: {exc}") from exc
        done.append(version)
    return done


def _statements(script: str) -> list[str]:
    """Split a migration into statements (complete_statement knows about strings, triggers)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()
    ):
        raise MigrationError("migration ends with an incomplete statement")
    return out


class Database:
    """The one writer and the reader pool. `close()` is safe to call twice."""

    def __init__(self, path: Path, *, readers: int = 3) -> None:
        self.path = path
        self._n_readers = readers
        self._writer: sqlite3.Connection | None = None
        self._write_limiter = anyio.CapacityLimiter(1)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._read_limiter = anyio.CapacityLimiter(readers)

    def open_sync(self) -> list[int]:
        """Migrate and open connections; fatal (MigrationError) if the schema can't be applied."""
        self._writer = connect(self.path, write=True)
        applied = migrate(self._writer)
        for _ in range(self._n_readers):
            conn = connect(self.path, write=False)
            self._all_readers.append(conn)
            self._readers.put(conn)
        return applied

    async def open(self) -> list[int]:
        return await anyio.to_thread.run_sync(self.open_sync)

    def _write_sync(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._writer
        if conn is None:
            raise RuntimeError("database is closed")
        with transaction(conn):
            return fn(conn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` in one write transaction on the writer connection."""
        return await anyio.to_thread.run_sync(
            self._write_sync, fn, args, limiter=self._write_limiter
        )

    def _read_sync(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._readers.get()
        try:
            return fn(conn, *args)
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._readers.put(conn)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` on a reader connection, off the event loop."""
        return await anyio.to_thread.run_sync(self._read_sync, fn, args, limiter=self._read_limiter)

    async def fetch_all(self, sql: str, params: dict[str, Any] | None = None) -> list[sqlite3.Row]:
        return await self.read(lambda c: c.execute(sql, params or {}).fetchall())

    async def fetch_one(self, sql: str, params: dict[str, Any] | None = None) -> sqlite3.Row | None:
        return await self.read(lambda c: c.execute(sql, params or {}).fetchone())

    def close(self) -> None:
        for conn in self._all_readers:
            conn.close()
        self._all_readers.clear()
        self._readers = queue.SimpleQueue()
        if self._writer is not None:
            with contextlib.suppress(sqlite3.Error):
                # Never wait on a lock at shutdown (an abandoned import may hold it).
                self._writer.execute("PRAGMA busy_timeout=0")
                self._writer.execute("PRAGMA optimize")
            self._writer.close()
            self._writer = None
