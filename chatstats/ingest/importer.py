"""Historical import: the whole of a chat.db (or an iPhone backup's sms.db) into the app DB.

It runs as plain sqlite3 in one worker thread with its own connection (DESIGN.md: bulk work
leaves the loop) and writes everything in ONE transaction, together with the source's new
watermarks. Killing it at any point therefore leaves the database exactly as it was, and
the next run, seeing its `import_runs` row still 'running', says so and redoes the work.

"Race mode" (the seeds' fast first import) is the same transaction with the expensive
safety turned off where it buys nothing: secondary indexes are dropped before the load and
rebuilt after (in the same transaction), `synchronous=OFF`, and, when no other connection
has the database open, a rollback journal instead of the WAL. On a database that holds no
messages yet a rollback journal records almost nothing (pages appended past the old end of
the file need no journal), so it costs what `journal_mode=OFF` costs, yet a kill still rolls
back cleanly, where `journal_mode=OFF` could leave a half-written, corrupt file.

A re-run adds only what is new: ROWID watermarks per source, and Apple's GUIDs as unique
keys, so overlapping sources (a Mac and an iPhone backup of the same account) never duplicate.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from chatstats import db as appdb
from chatstats import log, scratch
from chatstats.imessage import chatdb
from chatstats.ingest import bulk, watermark
from chatstats.ingest.batch import Counters, Ingest
from chatstats.ingest.decode import Decoder
from chatstats.stats import maintain as stats_maintain

logger = log.get(__name__)

Progress = Callable[[str, int, int], None]

# Tables whose secondary indexes a race-mode load drops (UNIQUE constraints stay: they are
# what makes GUIDs unique).
# The first import builds message rows in SQL (chatstats/ingest/bulk.py); tests turn this off
# to check that the Python path, which live sync uses, produces the very same rows.
SQL_LOAD = True
# ...with message bodies decoded, and conversations planned, ahead by two helper processes
# on the other core (decode.py);
# tests turn it off to check that the result does not depend on it.
DECODE_AHEAD = True

_RACE_TABLES = ("messages", "reactions", "attachments", "conversations", "handles", "chats")


class ImportSummary(Counters, kw_only=True):
    source: str
    mode: str = "incremental"
    chats: int = 0
    handles: int = 0
    addressbook_people: int = 0
    addressbook_errors: list[str] = msgspec.field(default_factory=list)
    previous_run_interrupted: bool = False
    seconds: float = 0.0


def _noop(_phase: str, _done: int, _total: int) -> None:
    return None


def run_import(
    db_path: Path,
    source: Path,
    addressbook: Path | None = None,
    progress: Progress | None = None,
    *,
    kind: str = "chatdb",
    people: list[Any] | None = None,
) -> ImportSummary:
    """Import everything new in `source`; see the module docstring for the guarantees.

    `people` (AddressBook persons) may be passed by callers that found them elsewhere (an
    iPhone backup's AddressBook.sqlitedb); otherwise the `addressbook` folder is read.
    """
    started = time.perf_counter()
    report = progress or _noop
    summary = ImportSummary(source=str(source))
    src_conn = chatdb.open_source(source)
    try:
        reader = chatdb.Reader(src_conn)
        if people is None:
            people = read_addressbook(addressbook, summary.addressbook_errors)
        summary.addressbook_people = len(people)
        conn = appdb.connect(db_path, write=True)
        try:
            appdb.migrate(conn)
            _import(conn, reader, source, kind, people, summary, report)
        finally:
            conn.close()
    finally:
        src_conn.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    fields = msgspec.to_builtins(summary)
    fields.pop("source")
    fields.pop("addressbook_errors")
    logger.info("import_complete", **fields)
    return summary


def read_addressbook(addressbook: Path | None, errors: list[str]) -> list[Any]:
    """People from every AddressBook store found; unreadable stores are reported, not fatal."""
    if addressbook is None or not addressbook.exists():
        return []
    from chatstats.imessage.addressbook import AddressBookError, find_macos_stores, read_people

    try:
        stores = [addressbook] if addressbook.is_file() else find_macos_stores(addressbook)
    except AddressBookError as exc:
        errors.append(str(exc))
        return []
    people, failures = read_people(stores)
    for err in failures:
        errors.append(str(err))
        logger.warning("addressbook_store_unreadable", reason=err.reason)
    return people


def _import(
    conn: sqlite3.Connection,
    reader: chatdb.Reader,
    source: Path,
    kind: str,
    people: list[Any],
    summary: ImportSummary,
    report: Progress,
) -> None:
    now_ns = time.time_ns()
    path = str(source.resolve())
    source_id, msg_wm, att_wm, _marks = watermark.load(conn, path, kind)
    stale = conn.execute(
        "UPDATE import_runs SET state = 'interrupted', finished_ns = :t WHERE state = 'running'",
        {"t": now_ns},
    ).rowcount
    if stale:
        summary.previous_run_interrupted = True
        logger.warning("import_previous_run_interrupted", runs=stale, action="redoing")
    run_id = appdb.inserted_id(
        conn.execute(
            "INSERT INTO import_runs (source_id, state, started_ns) VALUES (:s, 'running', :t)",
            {"s": source_id, "t": now_ns},
        )
    )
    if reader.max_message_rowid() < msg_wm:
        # chat.db was rebuilt (restore, iCloud re-sync): ROWIDs restarted. GUIDs still dedupe.
        logger.warning("source_rowids_restarted", watermark=msg_wm)
        msg_wm = att_wm = 0

    race = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM messages)").fetchone()[0] == 1
    if race:
        summary.mode = "race"
        try:  # only possible when no other connection (a running daemon) has the file open
            journal = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        except sqlite3.OperationalError:
            journal = "wal"
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-200000")
        logger.info("import_race_mode", journal=journal)
    attached = False
    decoder = None
    build_file = fts_file = walk_file = None
    if race and SQL_LOAD:
        if DECODE_AHEAD and "attributedBody" in reader.message_columns and Decoder.available():
            stats_on = stats_maintain.enabled(conn)
            # First: it has the most to do. Words are for the statistics alone.
            decoder = Decoder(source.resolve(), msg_wm, words=stats_on)
            # Where the decoding helper builds the full-text index (bulk.finish_fts).
            fts_file = scratch.attach(conn, ("messages_fts",), scratch.FTS_ALIAS)
            if stats_on:
                # Where the summaries are built (chatstats/scratch.py): by the decoding
                # helper, else by the summaries' thread (stats/precompute.py).
                build_file = scratch.attach(conn, stats_maintain.ALL_TABLES)
                # And the planning helper, the walk's summaries (stats/maintain.WALKED).
                walk_file = scratch.attach(conn, stats_maintain.WALKED, scratch.WALK_ALIAS)
        bulk.attach(conn, source.resolve())
        attached = True
    try:
        # The write lock on the app database at once, as BEGIN IMMEDIATE takes it, but on it
        # alone: IMMEDIATE would also lock the scratch file, which the summaries' thread
        # writes on a connection of its own. chat.db's snapshot begins at its first read.
        conn.execute("BEGIN")
        conn.execute("UPDATE import_runs SET state = 'running' WHERE id = :id", {"id": run_id})
        try:
            dropped = _drop_indexes(conn) if race else []
            summaries = stats_maintain.suspend(conn) if race else None
            _load(
                conn,
                reader,
                people,
                summary,
                report,
                msg_wm,
                att_wm,
                source_id,
                race,
                now_ns,
                decoder,
            )
            report("indexes", 0, len(dropped))
            for i, sql in enumerate(dropped):
                conn.execute(sql)
                report("indexes", i + 1, len(dropped))
            if summaries is not None:  # one rebuild, not one trigger call per row
                summaries.resume()
            stats_maintain.drain(conn)  # words of rows the triggers queued
            if decoder is not None and decoder.fts_asked:
                bulk.finish_fts(conn, decoder)
            conn.execute(
                "UPDATE import_runs SET state = 'complete', finished_ns = :t, summary = :s"
                " WHERE id = :id",
                {"t": time.time_ns(), "s": msgspec.json.encode(summary).decode(), "id": run_id},
            )
            conn.execute("COMMIT")
        except BaseException:
            stats_maintain.discard_precompute(conn)
            conn.execute("ROLLBACK")
            conn.execute(
                "UPDATE import_runs SET state = 'failed', finished_ns = :t WHERE id = :id",
                {"t": time.time_ns(), "id": run_id},
            )
            raise
    finally:
        if decoder is not None:
            decoder.close()
        if attached:
            bulk.detach(conn)
        if build_file is not None:
            scratch.detach(conn, build_file)
        if fts_file is not None:
            scratch.detach(conn, fts_file, scratch.FTS_ALIAS)
        if walk_file is not None:
            scratch.detach(conn, walk_file, scratch.WALK_ALIAS)
        if race:
            # Back to the WAL with synchronous left OFF on this connection, which
            # `run_import` closes right after: with it on, the switch (or else the close's
            # checkpoint) fsyncs the whole new file, 0.5 s of a 300k import's 12. That flush
            # would only guard against a power cut in the seconds before the kernel writes
            # the pages, an exposure the whole load already had, and on a database that held
            # no messages before: one the import can always redo.
            conn.execute("PRAGMA journal_mode=WAL")
    # Statistics from a sample (as SQLite advises for optimize): an exact ANALYZE of the
    # 300k rows just loaded cost 0.1 s; the sampled row counts land within ~30%, which
    # leaves each index's selectivity (what the planner compares) of the same order.
    conn.execute("PRAGMA analysis_limit=1000")
    conn.execute("PRAGMA optimize")
    report("done", 1, 1)


def _drop_indexes(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        " AND tbl_name IN (SELECT value FROM json_each(:t))",
        {"t": msgspec.json.encode(_RACE_TABLES).decode()},
    ).fetchall()
    for name, _sql in rows:
        conn.execute(f'DROP INDEX "{name}"')  # names come from sqlite_master, not from input
    return [sql for _name, sql in rows]


def _load(
    conn: sqlite3.Connection,
    reader: chatdb.Reader,
    people: list[Any],
    summary: ImportSummary,
    report: Progress,
    msg_wm: int,
    att_wm: int,
    source_id: int,
    race: bool,
    now_ns: int,
    decoder: Decoder | None,
) -> None:
    # Marks first: a row changed while we read is then seen again by the next change scan.
    # Then the last ROWID this run imports, then handles and chats: every row up to it
    # refers to handles and chats that already exist when we read them.
    if race and SQL_LOAD:
        # The rows will come from chat.db ATTACHed to this write transaction, whose snapshot
        # of it dates from BEGIN: the marks and the last ROWID must come from it too, or a
        # row committed in between would be covered by the watermark and never imported.
        upto = conn.execute("SELECT COALESCE(MAX(ROWID), 0) FROM src.message").fetchone()[0]
        if decoder is not None:
            decoder.import_snapshot_taken()
        marks = None  # read after the load, from this same snapshot, unless the helper did
    else:
        marks = reader.change_marks()
        upto = reader.max_message_rowid()
    report("contacts", 0, 1)
    ingest = Ingest(conn, reader, summary, now_ns=now_ns, people=people)
    ingest.frozen_maps = True
    ingest.seal_expired = race
    summary.handles = len(ingest.handle_map)
    summary.chats = len(ingest.chat_map)
    report("contacts", 1, 1)

    if race and SQL_LOAD:  # one statement: no progress to report within it
        report("messages", 0, 1)
        marks = bulk.load_messages(ingest, reader, msg_wm, upto, decoder)
        if marks is None:
            marks = reader.change_marks(conn, "src.message")
        report("messages", 1, 1)
    else:
        total = reader.count_messages_after(msg_wm, upto)
        report("messages", 0, total)
        # (Reading and decoding in a second thread was measured: no faster. executemany
        # hands the GIL back and forth on every row, so the two threads mostly take turns.)
        done = 0
        for chunk in reader.message_chunks(msg_wm, upto=upto):
            done += len(chunk)
            ingest.add_messages(chunk if race else ingest.skip_known(chunk))
            report("messages", done, total)
    max_rowid = max(msg_wm, upto)

    max_att = att_wm
    for chunk in reader.attachment_chunks(att_wm, message_upto=max(msg_wm, upto)):
        max_att = chunk[-1][0]
        ingest.add_attachments(chunk)

    report("finishing", 0, 1)
    stats_maintain.start_precompute(conn)  # its Python runs while SQLite builds (indexes, FTS)
    # A first import's index is the decoding helper's when it was asked (bulk.finish_fts).
    if decoder is not None and decoder.fts_asked:
        ingest.finish(fts="later")
    else:
        ingest.finish(fts="rebuild" if race else "insert")
    report("finishing", 1, 1)
    assert marks is not None  # both load paths above read them
    watermark.advance(
        conn,
        source_id,
        message_rowid=max_rowid,
        attachment_rowid=max_att,
        marks=marks,
        imported_at_ns=time.time_ns(),
    )
