"""Stats maintenance for the historical import: set-based, never one trigger call per row.

Why: per-row triggers (an upsert, a Python word count and a conversation's rows for each of
300k rows) made the import far slower than the load itself. Race mode drops every statistics
trigger for the load and `resume` rebuilds all summaries in one pass (`REBUILD`); a bulk
load outside race mode builds its rows' buckets in one GROUP BY (`bulk_insert`). Live
batches, edits and unsends keep using the triggers (appends in O(1), schema 0011).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from chatstats import scratch
from chatstats.db import word_count
from chatstats.stats import precompute

_TRIGGER = "stats_message_insert"

_BUILD = (
    "INSERT INTO stats_buckets (chat_id, bucket, handle_id, is_from_me, messages, words)"
    " SELECT chat_id, date_ns / 900000000000, COALESCE(handle_id, 0), is_from_me, COUNT(*),"
    " SUM(cs_words(text)) FROM messages"
    " WHERE id >= :first AND kind = 'message' AND chat_id IS NOT NULL GROUP BY 1, 2, 3, 4"
    " ON CONFLICT (chat_id, bucket, handle_id, is_from_me) DO UPDATE"
    " SET messages = messages + excluded.messages, words = words + excluded.words"
)

_BUILD_MONTHS = (
    "INSERT INTO stats_months (month, chat_id, handle_id, is_from_me, messages)"
    " SELECT CAST(strftime('%Y%m', date_ns / 1000000000, 'unixepoch') AS INTEGER), chat_id,"
    " COALESCE(handle_id, 0), is_from_me, COUNT(*) FROM messages"
    " WHERE id >= :first AND kind = 'message' AND chat_id IS NOT NULL GROUP BY 1, 2, 3, 4"
    " ON CONFLICT (month, chat_id, handle_id, is_from_me) DO UPDATE"
    " SET messages = messages + excluded.messages"
)


@contextmanager
def bulk_insert(conn: sqlite3.Connection, first_id: int) -> Iterator[None]:
    """Inside the caller's transaction: rows with id >= first_id inserted in the block are
    summarised once at its end instead of one trigger call each."""
    conn.create_function("cs_words", 1, word_count, deterministic=True)
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :n", {"n": _TRIGGER}
    ).fetchone()
    if row is None:  # a database migrated without the statistics
        yield
        return
    conn.execute(f"DROP TRIGGER {_TRIGGER}")  # a constant name
    try:
        yield
        conn.execute(_BUILD, {"first": first_id})
        conn.execute(_BUILD_MONTHS, {"first": first_id})
    finally:
        conn.execute(row[0])


# Schema 0007's and 0011's summaries. Their triggers update a bucket, a conversation or a
# 30-day block per changed row: right for live batches, ruinous for a 300k-row load into an
# empty database (and their lookups by GUID would run while race mode has the indexes
# dropped). So race mode drops every statistics trigger for the whole load and rebuilds
# every summary once, set-based, after the indexes are back and before the one COMMIT: what
# a reader sees is always in step. One pass over the messages (stats_walk, words counted
# there once) feeds the buckets and the conversations; months, years and blocks come from
# the buckets, not the messages. The first import's SQL load skips that window pass: its
# conversation walk already visits every message in conversation order and hands over the
# conversations, senders and replies (`prefill`); the rest comes from one scan in id order
# (300k messages: the summaries' statements 2.9 -> 1.2 s CPU).
SUMMARY_TABLES = (
    "stats_years",
    "stats_blocks",
    "stats_conversations",
    "stats_conv_senders",
    "stats_replies",
    "stats_reactions",
    "stats_reacted",
)
# Schema 0015's packs and histograms, built from the summaries above (never the messages).
PACK_TABLES = (
    "stats_month_packs",
    "stats_bucket_days",
    "stats_reply_days",
    "stats_gap_bins",
    "stats_conv_sizes",
    "stats_reaction_totals",
)
ALL_TABLES = ("stats_buckets", "stats_months", *SUMMARY_TABLES, *PACK_TABLES)

_WALK = (
    "CREATE TEMP TABLE stats_walk AS"
    " SELECT id, chat_id, conversation_id, COALESCE(handle_id, 0) AS h, is_from_me, date_ns,"
    " cs_words(text) AS w, LAG(is_from_me) OVER w AS prev_me, LAG(date_ns) OVER w AS prev_ns,"
    " LEAD(id) OVER w IS NULL AS is_last"
    " FROM messages WHERE kind = 'message' AND chat_id IS NOT NULL"
    " WINDOW w AS (PARTITION BY conversation_id ORDER BY date_ns, id)",
    "INSERT INTO stats_buckets (bucket, chat_id, handle_id, is_from_me, messages, words)"
    " SELECT date_ns / 900000000000, chat_id, h, is_from_me, COUNT(*), SUM(w)"
    " FROM temp.stats_walk GROUP BY 1, 2, 3, 4",
)
# What the first import's conversation walk (ingest/plan.py) cannot see: words (the texts
# are decoded later, by the load), so the buckets come from one scan of the rows in id order.
_BUCKETS = (
    "INSERT INTO stats_buckets (bucket, chat_id, handle_id, is_from_me, messages, words)"
    " SELECT date_ns / 900000000000, chat_id, COALESCE(handle_id, 0), is_from_me, COUNT(*),"
    " SUM(cs_words(text)) FROM messages WHERE kind = 'message' AND chat_id IS NOT NULL"
    " GROUP BY 1, 2, 3, 4",
)
_FROM_BUCKETS = (
    # A bucket never straddles a UTC month (months start on a multiple of 15 minutes).
    "INSERT INTO stats_months (month, chat_id, handle_id, is_from_me, messages)"
    " SELECT CAST(strftime('%Y%m', bucket * 900, 'unixepoch') AS INTEGER), chat_id, handle_id,"
    " is_from_me, SUM(messages) FROM stats_buckets GROUP BY 1, 2, 3, 4",
    "INSERT INTO stats_years (year, chat_id, handle_id, is_from_me, messages)"
    " SELECT month / 100, chat_id, handle_id, is_from_me, SUM(messages) FROM stats_months"
    " GROUP BY 1, 2, 3, 4",
    "INSERT INTO stats_blocks (chat_id, block, handle_id, is_from_me, packed)"
    " SELECT chat_id, bucket / 2880, handle_id, is_from_me,"
    " group_concat(printf('%08x%08x%016x', bucket, messages, words), '')"  # 0015's hex
    " FROM stats_buckets GROUP BY chat_id, handle_id, is_from_me, bucket / 2880",
)
_FROM_WALK = (
    "INSERT INTO stats_conversations (conversation_id, chat_id, start_ns, end_ns, messages,"
    " first_from_me, last_id, last_from_me)"
    " SELECT conversation_id, chat_id, MIN(date_ns), MAX(date_ns), COUNT(*),"
    " MAX(CASE WHEN prev_me IS NULL THEN is_from_me END),"
    " MAX(CASE WHEN is_last THEN id END), MAX(CASE WHEN is_last THEN is_from_me END)"
    " FROM temp.stats_walk WHERE conversation_id IS NOT NULL GROUP BY conversation_id",
    "INSERT INTO stats_conv_senders (conversation_id, handle_id, is_from_me, chat_id, messages)"
    " SELECT conversation_id, h, is_from_me, chat_id, COUNT(*) FROM temp.stats_walk"
    " WHERE conversation_id IS NOT NULL GROUP BY 1, 2, 3",
    "INSERT INTO stats_replies (message_id, chat_id, conversation_id, handle_id, is_from_me,"
    " date_ns, gap_ns)"
    " SELECT id, chat_id, conversation_id, h, is_from_me, date_ns, date_ns - prev_ns"
    " FROM temp.stats_walk WHERE conversation_id IS NOT NULL AND prev_me <> is_from_me",
    "DROP TABLE temp.stats_walk",
)
# Each counted tapback with its target, joined once for both tables (the GUID lookups were
# most of their cost: 0.14 s at 300k for two joins, 0.08 s for one).
_REACTIONS = (
    "DROP TABLE IF EXISTS temp.stats_reaction_rows",  # left by a failed statement's caller
    "CREATE TEMP TABLE stats_reaction_rows AS"
    " SELECT m.id AS id, m.chat_id AS chat_id, m.is_from_me AS target_from_me,"
    " r.is_from_me AS by_me, r.type AS type, m.date_ns AS date_ns,"
    " COALESCE(m.handle_id, 0) AS target_handle"
    " FROM reactions r CROSS JOIN messages m ON m.guid = r.target_guid"  # tapbacks are few
    " WHERE r.active = 1 AND r.is_removal = 0 AND m.kind = 'message' AND m.chat_id IS NOT NULL",
    "INSERT INTO stats_reactions (chat_id, target_from_me, by_me, type, bucket, target_handle, n)"
    " SELECT chat_id, target_from_me, by_me, type, date_ns / 900000000000, target_handle,"
    " COUNT(*) FROM temp.stats_reaction_rows GROUP BY 1, 2, 3, 4, 5, 6",
    "INSERT INTO stats_reacted (message_id, chat_id, date_ns, n)"
    " SELECT id, chat_id, date_ns, COUNT(*) FROM temp.stats_reaction_rows GROUP BY id",
    "DROP TABLE temp.stats_reaction_rows",
)
_REACTION_TOTALS = (
    "INSERT INTO stats_reaction_totals (chat_id, target_from_me, by_me, type, n)"
    " SELECT chat_id, target_from_me, by_me, type, SUM(n) FROM stats_reactions"
    " GROUP BY 1, 2, 3, 4 HAVING SUM(n) > 0"
)
# Schema 0015 (the same statements as its rows-already-there part): from the filled months,
# buckets, replies and conversations, so they come last.
_PACKS = (
    "INSERT INTO stats_month_packs (chat_id, handle_id, is_from_me, packed)"
    " SELECT chat_id, handle_id, is_from_me, group_concat(printf('%08x%08x', month, messages), '')"
    " FROM stats_months WHERE messages > 0 GROUP BY chat_id, handle_id, is_from_me",
    "INSERT INTO stats_bucket_days (day, packed)"
    " SELECT bucket / 96, group_concat(p, '') FROM ("
    " SELECT bucket, CASE WHEN r > 0 THEN printf('%08x%08x', bucket * 2, r) ELSE '' END"
    " || CASE WHEN s > 0 THEN printf('%08x%08x', bucket * 2 + 1, s) ELSE '' END AS p"
    " FROM (SELECT bucket, SUM(CASE WHEN is_from_me = 0 THEN messages ELSE 0 END) AS r,"
    " SUM(CASE WHEN is_from_me = 0 THEN 0 ELSE messages END) AS s"
    " FROM stats_buckets GROUP BY bucket)) WHERE p <> '' GROUP BY bucket / 96",
    "INSERT INTO stats_reply_days (day, is_from_me, min_prev_ns, packed)"
    " SELECT date_ns / 86400000000000, is_from_me, MIN(date_ns - gap_ns),"
    " group_concat(printf('%016x%016x', handle_id, gap_ns), '') FROM stats_replies GROUP BY 1, 2",
    "INSERT INTO stats_gap_bins (chat_id, is_from_me, bin, n)"
    " SELECT chat_id, is_from_me, length(gap_ns / 1000000000) * 100"
    " + CAST(substr(gap_ns / 1000000000, 1, 2) AS INTEGER), COUNT(*)"
    " FROM stats_replies GROUP BY 1, 2, 3",
    "INSERT INTO stats_conv_sizes (chat_id, messages, first_from_me, n)"
    " SELECT chat_id, messages, first_from_me, COUNT(*) FROM stats_conversations"
    " GROUP BY 1, 2, 3",
    _REACTION_TOTALS,
)
REBUILD = (*_WALK, *_FROM_BUCKETS, *_FROM_WALK, *_REACTIONS, *_PACKS)
# After `prefill`: the walked tables are already filled.
_REBUILD_REST = (*_BUCKETS, *_FROM_BUCKETS, *_REACTIONS, *_PACKS)
# ...and when `prefill` was also given the texts' word counts (the decode helper counted them
# where it decoded: 0.5 s of Python at 300k off the writer's core): a text of the load is its
# helper's text unless the row is unsent (''), or the helper had none (None: counted here).
_KNOWN_WORDS = "cs_known_words"
_BUCKETS_KNOWN = (
    "INSERT INTO stats_buckets (bucket, chat_id, handle_id, is_from_me, messages, words)"
    " SELECT date_ns / 900000000000, chat_id, COALESCE(handle_id, 0), is_from_me, COUNT(*),"
    f" SUM(CASE WHEN text = '' THEN 0 ELSE COALESCE({_KNOWN_WORDS}(source_rowid),"
    " cs_words(text)) END) FROM messages WHERE kind = 'message' AND chat_id IS NOT NULL"
    " GROUP BY 1, 2, 3, 4",
)
_REBUILD_KNOWN = (*_BUCKETS_KNOWN, *_FROM_BUCKETS, *_REACTIONS, *_PACKS)
WALKED = ("stats_conversations", "stats_conv_senders", "stats_replies")
# The walk's rows (`plan._stats`), in these columns' order.
WALKED_COLUMNS = (
    (
        "conversation_id",
        "chat_id",
        "start_ns",
        "end_ns",
        "messages",
        "first_from_me",
        "last_id",
        "last_from_me",
    ),
    ("conversation_id", "handle_id", "is_from_me", "chat_id", "messages"),
    ("message_id", "chat_id", "conversation_id", "handle_id", "is_from_me", "date_ns", "gap_ns"),
)
_PREFILL = tuple(
    f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    for table, cols in zip(WALKED, WALKED_COLUMNS, strict=True)
)
_MARK = "temp.stats_prefilled"


def enabled(conn: sqlite3.Connection) -> bool:
    """Whether the database has the statistics' tables (a database migrated without them,
    as scripts/bench_stats.py's baseline is, gets none of their work: no walk rows, no
    scratch files, no summaries computed by the helpers)."""
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stats_conversations'"
        ).fetchone()
        is not None
    )


def _secondary_indexes(conn: sqlite3.Connection, tables: tuple[str, ...]) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        " AND tbl_name IN (SELECT value FROM json_each(:t))",
        {"t": json.dumps(tables)},
    ).fetchall()


def prefill(
    conn: sqlite3.Connection,
    rows: tuple[list[tuple[int, ...]], ...],
    words: dict[int, int | None] | None = None,
    job: precompute.Job | None = None,
) -> None:
    """Inside a race-mode load, triggers suspended: write the rows of `WALKED` (in
    `_PREFILL`'s column order) that the first import's conversation walk computed, so the
    `resume` after the load rebuilds only the other summaries. `words` (source ROWID → word
    count of the text the load wrote for it, None: not known) spares the buckets' counting;
    `job` (with `words`) is computing the rest of them meanwhile (stats/precompute.py), and
    `resume` inserts its rows instead of running the statements.

    Why it stays exact: the next `resume` uses these rows only if the messages are still
    the ones they were computed from (same count and highest id; nothing else writes
    messages in a race-mode load), and otherwise rebuilds everything as `rebuild` does. A
    test compares a race import's tables with `rebuild` on every schema profile."""
    if not enabled(conn):
        return  # a database migrated without the statistics
    for table in WALKED:
        conn.execute(f"DELETE FROM {table}")  # names are constants
    handed = job is not None and words is not None and job.scratch is not None
    indexes: list[tuple[str, str]] = []
    if handed:  # the job writes them beside the others (chatstats/scratch.py); `_fill` copies
        assert job is not None
        job.walked = dict(zip(WALKED, zip(WALKED_COLUMNS, rows, strict=True), strict=True))
    else:
        indexes = _secondary_indexes(conn, WALKED)
        for name, _sql in indexes:  # built once from the filled tables by `resume`
            conn.execute(f'DROP INDEX "{name}"')  # names come from sqlite_master
        for sql, batch in zip(_PREFILL, rows, strict=True):
            conn.executemany(sql, batch)
    n, top = conn.execute("SELECT count(*), COALESCE(MAX(id), 0) FROM messages").fetchone()
    conn.execute(f"DROP TABLE IF EXISTS {_MARK}")
    conn.execute(
        f"CREATE TABLE {_MARK} (messages INTEGER, max_id INTEGER, index_sql TEXT, words INTEGER,"
        " handed INTEGER)"
    )
    conn.execute(
        f"INSERT INTO {_MARK} SELECT :n, :m, value, :w, :h FROM json_each(:s)",
        {
            "n": n,
            "m": top,
            "s": json.dumps([sql for _name, sql in indexes] or [None]),
            "w": words is not None,
            "h": handed,
        },
    )
    # The connection holds the counts until `_fill` has used them (or found them stale).
    conn.create_function(_KNOWN_WORDS, 1, None if words is None else words.get, deterministic=True)
    if job is not None and words is not None:
        _JOBS[id(conn)] = (conn, job)  # the connection itself held: its id is not reused
    else:
        _JOBS.pop(id(conn), None)


# The precomputing thread `prefill` was given, by id of its connection (sqlite3 connections
# take no weak references); `_prefilled` takes it back.
_JOBS: dict[int, tuple[sqlite3.Connection, precompute.Job]] = {}


def start_precompute(conn: sqlite3.Connection) -> None:
    """Let `prefill`'s job begin: the caller is about to run long statements (the FTS
    rebuild, the index builds), which leave the GIL to it."""
    held = _JOBS.get(id(conn))
    if held is not None and held[0] is conn:
        held[1].start()


def discard_precompute(conn: sqlite3.Connection) -> None:
    """Forget `prefill`'s job after a failed load: the registry would otherwise keep the
    connection and the job's arrays (tens of MB at 300k) alive in a long-running daemon."""
    _JOBS.pop(id(conn), None)


def _prefilled(
    conn: sqlite3.Connection,
) -> tuple[list[str], bool, precompute.Job | None, bool] | None:
    """The index SQL `prefill` dropped, whether it left word counts, its precomputing job
    and whether it handed the walked rows to that job (else the walked tables are complete),
    if its rows still hold, else None (after putting those indexes back); forgets the
    mark."""
    held = _JOBS.pop(id(conn), None)
    job = held[1] if held is not None and held[0] is conn else None
    if not conn.execute(
        "SELECT 1 FROM temp.sqlite_master WHERE type = 'table' AND name = 'stats_prefilled'"
    ).fetchone():
        return None
    marks = conn.execute(
        f"SELECT messages, max_id, index_sql, words, handed FROM {_MARK}"
    ).fetchall()
    conn.execute(f"DROP TABLE {_MARK}")
    dropped = [sql for _n, _m, sql, _w, _h in marks if sql is not None]
    now = conn.execute("SELECT count(*), COALESCE(MAX(id), 0) FROM messages").fetchone()
    if marks and tuple(now) == tuple(marks[0][:2]) and (job is not None or not marks[0][4]):
        return dropped, bool(marks[0][3]), job, bool(marks[0][4])
    for sql in dropped:
        conn.execute(sql)
    conn.create_function(_KNOWN_WORDS, 1, None)
    return None


def _fill(conn: sqlite3.Connection) -> None:
    conn.create_function("cs_words", 1, word_count, deterministic=True)  # any connection
    prefilled = _prefilled(conn)
    walked, known_words, job, handed = (
        prefilled if prefilled is not None else (None, False, None, False)
    )
    ready = job.result() if job is not None and known_words else None
    # Tables the job built in the scratch file (chatstats/scratch.py): copied whole, into the
    # empty tables with their indexes in place, as SQLite's transfer needs them.
    built = job.built if job is not None and scratch.attached(conn) is not None else frozenset()
    # The walk's tables, when the planning helper wrote them (`precompute.Job.walked_remote`).
    remote: frozenset[str] = frozenset()
    if (
        handed
        and job is not None
        and job.walked_remote is not None
        and scratch.attached(conn, scratch.WALK_ALIAS) is not None
        and job.walked_remote(120)
    ):
        remote = frozenset(WALKED)
    tables = ALL_TABLES if walked is None else tuple(t for t in ALL_TABLES if t not in WALKED)
    for table in (*tables, "stats_words_pending"):
        conn.execute(f"DELETE FROM {table}")  # names are constants
    # Secondary indexes built once from the filled tables (a sort), not row by row.
    indexes = _secondary_indexes(conn, tuple(t for t in tables if t not in built))
    for name, _sql in indexes:
        conn.execute(f'DROP INDEX "{name}"')  # names come from sqlite_master
    for table in ALL_TABLES:
        if table in built:
            scratch.copy(conn, table)
        elif table in remote:
            scratch.copy(conn, table, scratch.WALK_ALIAS)
    if handed and job is not None:  # the walked rows nobody could build (with indexes)
        for sql, table in zip(_PREFILL, WALKED, strict=True):
            if table not in built and table not in remote:
                conn.executemany(sql, job.walked[table][1])
    rest: tuple[str, ...] = _REBUILD_KNOWN if known_words else _REBUILD_REST
    if ready is not None:
        for table, (columns, rows) in ready.items():
            if table in built:
                continue
            names = ", ".join(columns)  # constants of stats/precompute.py
            marks = ", ".join("?" * len(columns))
            conn.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({marks})", precompute.rows(rows)
            )
        rest = (*_REACTIONS, _REACTION_TOTALS)
    for sql in REBUILD if walked is None else rest:
        conn.execute(sql)
    if known_words:
        conn.create_function(_KNOWN_WORDS, 1, None)  # let the counts go
    for sql in [*(walked or []), *(sql for _name, sql in indexes)]:
        conn.execute(sql)


_PENDING = "SELECT chat_id, bucket, handle_id, is_from_me, text, sign FROM stats_words_pending"
_ADD_WORDS = (
    "UPDATE stats_buckets SET words = words + :d WHERE chat_id = :c AND bucket = :b"
    " AND handle_id = :h AND is_from_me = :s"
)


def drain(conn: sqlite3.Connection) -> int:
    """Count the queued texts' words into their buckets (inside the caller's transaction).

    Why a queue: the triggers stay plain SQL (any SQLite client can write the messages), and
    words are counted here, in Python, once per batch. Readers add what is still queued, so
    figures are exact before a drain too. Returns the number of queued texts."""
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stats_words_pending'"
    ).fetchone():
        return 0
    rows = conn.execute(_PENDING).fetchall()
    if not rows:
        return 0
    delta: dict[tuple[int, int, int, int], int] = {}
    for c, b, h, s, text, sign in rows:
        key = (c, b, h, s)
        delta[key] = delta.get(key, 0) + sign * word_count(text)
    conn.executemany(
        _ADD_WORDS,
        [{"d": d, "c": k[0], "b": k[1], "h": k[2], "s": k[3]} for k, d in delta.items() if d],
    )
    conn.execute("DELETE FROM stats_words_pending")
    return len(rows)


def rebuild(conn: sqlite3.Connection) -> None:
    """Empty and refill every statistics table from the rows (inside the caller's
    transaction), with the triggers off meanwhile."""
    suspend(conn).resume()


class Suspended:
    """Statistics triggers dropped by `suspend`; `resume` rebuilds the tables and puts them
    back."""

    def __init__(self, conn: sqlite3.Connection, triggers: list[str]) -> None:
        self._conn = conn
        self._triggers = triggers

    def resume(self) -> None:
        if not self._triggers:
            return
        _fill(self._conn)
        for sql in self._triggers:
            self._conn.execute(sql)
        self._triggers = []


def suspend(conn: sqlite3.Connection) -> Suspended:
    """Inside the caller's transaction: drop 0007's and 0011's triggers until `resume()`."""
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND ("
        " name LIKE 'stats\\_message\\_%' ESCAPE '\\'"
        " OR name LIKE 'stats\\_block\\_%' ESCAPE '\\' OR name LIKE 'stats\\_conv\\_%' ESCAPE '\\'"
        " OR name LIKE 'stats\\_react\\_%' ESCAPE '\\' OR name LIKE 'stats\\_year\\_%' ESCAPE '\\')"
    ).fetchall()
    for name, _sql in rows:
        conn.execute(f'DROP TRIGGER "{name}"')  # names come from sqlite_master
    return Suspended(conn, [sql for _name, sql in rows])
