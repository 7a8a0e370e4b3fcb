"""The first import's message rows, built by SQLite itself: `INSERT … SELECT` from chat.db
ATTACHed read-only, with Python only inside a few SQL functions (the body decode, the edit
state, the reply target). Per-row Python tuples and `executemany` binding were most of a
300k-message import; this does the same rows in about a fifth of the time.

It produces exactly what `Ingest.prepare_rows` does for the same rows (a test compares the
two paths row for row); tapback rows still go through `prepare_rows`, which collects them.
Used only for a race-mode load into an empty messages table, whose ids then follow ROWID
order exactly as the Python path assigns them.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from chatstats import log, scratch
from chatstats.imessage import chatdb
from chatstats.imessage.dates import APPLE_EPOCH_NS, SECONDS_LIMIT
from chatstats.ingest import plan
from chatstats.ingest.batch import Ingest, edit_state
from chatstats.ingest.conversations import Point
from chatstats.ingest.decode import (
    Body,
    Decoded,
    Decoder,
    FtsCheck,
    FtsRequest,
    PlanRequest,
    decode_body,
)
from chatstats.stats import maintain as stats_maintain
from chatstats.stats import precompute

logger = log.get(__name__)

_EPOCH_NS = APPLE_EPOCH_NS
_NO_DATE_NS = APPLE_EPOCH_NS  # a row with no date is placed at Apple's epoch
_SECONDS_LIMIT = SECONDS_LIMIT

# Row shapes the SQL functions hand to the shared Python helpers (indexed by chatdb.M).
_ROW_WIDTH = len(chatdb.MESSAGE_COLUMNS) + 1
_I = chatdb.M

TAPBACK_SQL = (
    "(COALESCE(m.associated_message_guid, '') <> '' AND"
    " (m.associated_message_type = 1000"
    " OR m.associated_message_type BETWEEN 2000 AND 2007"
    " OR m.associated_message_type BETWEEN 3000 AND 3007))"
)


def attach(conn: sqlite3.Connection, source: Path) -> None:
    """ATTACH chat.db read-only (outside any transaction, as SQLite requires)."""
    conn.execute("ATTACH DATABASE :uri AS src", {"uri": chatdb.readonly_uri(source)})
    conn.execute("SELECT count(*) FROM src.sqlite_master").fetchone()


def detach(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.execute("DETACH DATABASE src")


_FUNCTIONS = (
    ("cs_conversation", 1),
    ("cs_chat", 1),
    ("cs_ready_text", 1),
    ("cs_body_text", 3),
    ("cs_body_status", 3),
    ("cs_edits", 4),
    ("cs_reply_guid", 1),
    ("cs_reply_part", 1),
    ("cs_kind", 2),
)


def _functions(
    conn: sqlite3.Connection,
    ingest: Ingest,
    decoded: Decoded,
    unsent: set[int],
    decoded_here: dict[int, str] | None = None,
    statuses: dict[str, int] | None = None,
    stream: Decoder | None = None,
) -> None:
    """`unsent` receives the ROWID of every row the load writes as unsent (empty text);
    `decoded_here` the text of every row whose body is read here, not by the helper (what
    the statistics' word counts still need: few); `statuses` counts those rows' body
    status (every other row's is 'ok'). With `stream`, `decoded.texts` is its `live` dict,
    still filling: a row not in it yet is awaited (`Decoder.until`) before it is read here."""
    counters = ingest.counters

    def row(**values: Any) -> list[Any]:
        r: list[Any] = [None] * _ROW_WIDTH
        for name, value in values.items():
            r[_I[name]] = value
        return r

    # The helper's texts: used as they are when it read the import's own snapshot
    # (cs_ready_text takes only the ROWID: no blob to copy; a dict's own get, called by
    # SQLite per row without a Python frame, where a Python function cost ~1 µs a row),
    # otherwise each one only for the very blob it came from (its CRC-32), in `body`.
    texts, crcs = decoded.texts, decoded.crcs
    ready: dict[int, str | None] = texts if crcs is None else {}

    crc32 = zlib.crc32
    last: list[Any] = [None, Body("", "none")]  # (ROWID, its Body): one statement, one snapshot

    def body(rowid: int, blob: bytes | None, text: str | None) -> Body:
        if rowid == last[0]:
            cached: Body = last[1]
            return cached
        found = None
        if crcs is not None and blob and type(blob) is bytes and crcs.get(rowid) == crc32(blob):
            found = texts.get(rowid)  # the helper decoded this very blob
        elif stream is not None:
            stream.until(rowid)
            found = texts.get(rowid)
            if found is not None:  # it had not come yet: the helper's text after all
                b = last[1] = Body(found, "ok")
                last[0] = rowid
                return b
        b = Body(found, "ok") if found is not None else decode_body(blob, text)
        last[0], last[1] = rowid, b
        if decoded_here is not None:
            decoded_here[rowid] = b.text
        if statuses is not None:
            statuses[b.status] = statuses.get(b.status, 0) + 1
        return b

    def body_text(rowid: int, blob: bytes | None, text: str | None) -> str:
        return body(rowid, blob, text).text

    def body_status(rowid: int, blob: bytes | None, text: str | None) -> str:
        return body(rowid, blob, text).status

    conn.create_function("cs_ready_text", 1, ready.get, deterministic=True)
    seen: dict[tuple[Any, ...], int] = {}

    def edits(rowid: int, edited: int | None, retracted: int | None, info: bytes | None) -> int:
        """edited * 2 + unsent. SQLite may call it more than once per row: cached, so an
        unreadable plist is counted once."""
        key = (edited, retracted, info)
        code = seen.get(key)
        if code is None:
            e, u = edit_state(
                row(date_edited=edited, date_retracted=retracted, message_summary_info=info),
                counters,
            )
            code = seen[key] = e * 2 + u
        if code % 2:
            unsent.add(rowid)
        return code

    conn.create_function("cs_body_text", 3, body_text, deterministic=True)
    conn.create_function("cs_body_status", 3, body_status, deterministic=True)
    conn.create_function("cs_edits", 4, edits, deterministic=True)
    conn.create_function("cs_reply_guid", 1, chatdb.reply_guid, deterministic=True)
    conn.create_function("cs_reply_part", 1, chatdb.reply_part, deterministic=True)
    conn.create_function("cs_kind", 2, chatdb.message_kind, deterministic=True)


def _decoded(decoder: Decoder) -> Decoded:
    decoded = decoder.wait(timeout=120)
    if decoder.error:
        logger.warning("import_decoder_failed", reason=decoder.error, decoded=len(decoded.texts))
    return decoded


def _precompute(
    conn: sqlite3.Connection,
    planned: plan.Planned,
    buckets: tuple[np.ndarray, np.ndarray, np.ndarray],
    words: dict[int, int | None],
    decoded_here: dict[int, str],
    unsent: set[int],
) -> precompute.Job:
    """The summaries' thread (stats/precompute.py), not yet started. Every text whose words
    the helper did not count (it had none, or could not read the blob) was read here by the
    load, which kept it (`decoded_here`): the thread counts those."""
    keys, bucket_of, order = buckets
    texts: dict[int, str | None] = dict(decoded_here)
    conversations, _senders, replies = planned.stats
    built_at = scratch.attached(conn)
    return precompute.Job(
        functools.partial(
            precompute.compute,
            keys,
            bucket_of,
            order,
            words,
            texts,
            unsent,
            conversations,
            replies,
        ),
        scratch=built_at,
        indexes=scratch.index_sql(conn, stats_maintain.ALL_TABLES) if built_at else None,
    )


def _stats_request(
    conn: sqlite3.Connection,
    planned: plan.Planned,
    buckets: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
) -> dict[str, Any]:
    """FtsRequest's fields that have the decoding helper compute the summaries of
    stats/precompute.py and write them into the summaries' scratch file, when there is one
    and the walk gave the buckets (the words are the helper's own)."""
    path = scratch.attached(conn)
    if path is None or buckets is None:
        return {}
    keys, bucket_of, order = buckets
    conversations, _senders, replies = planned.stats
    return {
        "stats_path": str(path),
        "stats_indexes": scratch.index_sql(conn, stats_maintain.ALL_TABLES),
        "bucket_keys": np.ascontiguousarray(keys, dtype=np.int64).tobytes(),
        "bucket_of": np.ascontiguousarray(bucket_of, dtype=np.int64).tobytes(),
        "order": np.ascontiguousarray(order, dtype=np.int64).tobytes(),
        "conversations": conversations,
        "replies": replies,
    }


def _walk_request(conn: sqlite3.Connection, path: Path | None) -> dict[str, Any]:
    """PlanRequest's fields that have the planner write the walk's summary tables into its
    scratch file (the same tables and indexes as the main database's), when there is one."""
    if path is None:
        return {}
    indexes = scratch.index_sql(conn, stats_maintain.WALKED)
    return {
        "walk_path": str(path),
        "walk_tables": [
            (t, list(cols))
            for t, cols in zip(stats_maintain.WALKED, stats_maintain.WALKED_COLUMNS, strict=True)
        ],
        "walk_indexes": [sql for t in stats_maintain.WALKED for sql in indexes.get(t, [])],
    }


def _date(col: str, present: set[str], *, required: bool = False) -> str:
    if col not in present:
        return str(_NO_DATE_NS) if required else "NULL"
    c = f"m.{col}"
    unset = str(_NO_DATE_NS) if required else "NULL"
    return (
        f"(CASE WHEN {c} IS NULL OR {c} = 0 THEN {unset}"
        f" WHEN abs({c}) < {_SECONDS_LIMIT} THEN {c} * 1000000000 + {_EPOCH_NS}"
        f" ELSE {c} + {_EPOCH_NS} END)"
    )


# Rows whose associated_message_guid is set, as two range searches of an index on it: a
# superset of the tapbacks (NULL and '' are never one; numbers sort before text, blobs after).
_TAPBACK_CANDIDATES = (
    "SELECT ROWID FROM {t} WHERE associated_message_guid > ''"
    " UNION ALL SELECT ROWID FROM {t} WHERE associated_message_guid < ''"
)


# FTS5's shadow tables of messages_fts (external content: its text lives in messages).
_FTS_SHADOWS = (
    "messages_fts_data",
    "messages_fts_idx",
    "messages_fts_docsize",
    "messages_fts_config",
)


def finish_fts(conn: sqlite3.Connection, decoder: Decoder | None) -> None:
    """The full-text index of a first import: the decoding helper's, copied in whole, when it
    built it (decode.py: byte for byte what 'rebuild' writes); else rebuilt here. Runs after
    the statistics, last before COMMIT: 'rebuild' leaves a statement open on the connection
    until the transaction ends, and redefining a SQL function then fails."""
    if decoder is not None and decoder.fts_built(timeout=120):
        try:
            for table in _FTS_SHADOWS:
                conn.execute(f"DELETE FROM main.{table}")  # constants
                scratch.copy(conn, table, scratch.FTS_ALIAS)
            return
        except sqlite3.Error as exc:
            decoder.fts_error = type(exc).__name__
    if decoder is not None:
        logger.warning("import_fts_helper_unused", reason=decoder.fts_error)
    conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")


def source_indexes(conn: sqlite3.Connection, schema: str = "src") -> list[list[str]]:
    """The columns of each full (not partial) index on chat.db's message table."""
    out = []
    for _seq, name, _unique, _origin, partial in conn.execute(
        f"PRAGMA {schema}.index_list(message)"  # schema names are constants
    ).fetchall():
        if not partial:
            info = conn.execute(f'PRAGMA {schema}.index_info("{name}")').fetchall()
            out.append([r[2] for r in info])
    return out


def tapback_condition(indexes: list[list[str]], have: set[str]) -> str:
    """The predicate that selects tapback rows of `message m` on the reader's connection.

    Why: a message row is ~1 KB (blobs included), and scanning all of them for the 6% that
    are tapbacks cost 0.29 s CPU of a 300k import; through chat.db's index on
    associated_message_guid (Macs have one) and the candidates' rows, 0.20 s.
    """
    if "associated_message_type" in have and any(
        cols[:1] == ["associated_message_guid"] for cols in indexes
    ):
        return f"m.ROWID IN ({_TAPBACK_CANDIDATES.format(t='message')}) AND {TAPBACK_SQL}"
    return TAPBACK_SQL


def create_lookup_tables(ingest: Ingest, after: int, upto: int) -> None:
    """The temp tables the load joins (`plan.lookup_tables`)."""
    plan.lookup_tables(ingest.conn, ingest.handle_map, ingest.chat_map, after, upto)


def load_messages(
    ingest: Ingest,
    reader: chatdb.Reader,
    after: int,
    upto: int,
    decoder: Decoder | None = None,
) -> dict[str, int] | None:
    """Insert every non-tapback message with after < ROWID ≤ upto; collect the tapbacks.

    `decoder`, a helper process started by the caller as early as it could, has been
    decoding bodies meanwhile; whatever it has not (or not identically) done is done here.
    Returns chat.db's change marks when the helper read them from this very snapshot.
    """
    conn = ingest.conn
    have = reader.message_columns
    first = ingest.next_id
    # The table is empty (race mode): SQLite numbers the rows 1, 2, … in ROWID order, as
    # the Python path does.
    assert first == 1, "the SQL load is only for an empty messages table"

    def col(name: str) -> str:
        return f"m.{name}" if name in have else "NULL"

    def flag(name: str) -> str:
        return f"(COALESCE(m.{name}, 0) <> 0)" if name in have else "0"

    decoded = Decoded({}, {})
    tapback = TAPBACK_SQL if {"associated_message_type", "associated_message_guid"} <= have else "0"
    code = (
        f"(CASE WHEN COALESCE({col('date_edited')}, 0) <> 0"
        f" OR COALESCE({col('date_retracted')}, 0) <> 0"
        f" OR {col('message_summary_info')} IS NOT NULL THEN"
        f" cs_edits(m.ROWID, {col('date_edited')}, {col('date_retracted')},"
        f" {col('message_summary_info')})"
        " ELSE 0 END)"
    )
    from_me = flag("is_from_me")
    # Text that reaches Python goes as bytes, read leniently there: a damaged row's invalid
    # UTF-8 would otherwise make the SQL function call, and with it the whole load, fail.
    text_arg = f"CAST({col('text')} AS BLOB)"
    date_ns = _date("date", have, required=True)
    rows_where = f"m.ROWID > :a AND m.ROWID <= :u AND NOT {tapback}"
    # Conversations first, from the rows' chats and dates alone, so each row is written
    # once with its conversation id (updating 300k rows afterwards cost more than the
    # insert). This read and the insert see the same snapshot of chat.db (this write
    # transaction's), so the k-th row read here is the row that gets id first + k.
    # System events (item_type <> 0, as `kind` is derived) only join a conversation.
    event = f"COALESCE({col('item_type')}, 0) <> 0"
    rowids: list[int] = []
    conversation_of: dict[int, int | None] = {}
    planned = None
    usable = plan.usable(conn)
    stats_on = stats_maintain.enabled(conn)
    select_rows = (
        f"SELECT m.ROWID AS r, c.id AS chat_id, {date_ns} AS date_ns, {event} AS is_event,"
        f" CASE WHEN {from_me} THEN 0 ELSE COALESCE(h.id, 0) END AS h, {from_me} AS s"
        " FROM src.message m LEFT JOIN bulk_joins j ON j.message_id = m.ROWID"
        " LEFT JOIN bulk_chats c ON c.src = j.chat_rowid"
        f" LEFT JOIN bulk_handles h ON h.src = m.handle_id WHERE {rows_where}"
    )
    if usable and decoder is not None:  # the walk on the other core, while we build tables
        walk_at = scratch.attached(conn, scratch.WALK_ALIAS)
        decoder.start_planner(
            PlanRequest(
                handles=ingest.handle_map,
                chats=ingest.chat_map,
                after=after,
                upto=upto,
                select_rows=select_rows,
                first=first,
                next_cid=plan.next_conversation_id(conn),
                now_ns=ingest.now_ns,
                seal_expired=ingest.seal_expired,
                stats=stats_on,
                **_walk_request(conn, walk_at),
            )
        )
    plan.map_tables(conn, ingest.handle_map, ingest.chat_map)
    # Tapbacks: few, and their state logic lives in Python; the same code as the live path.
    # Collected now, while the planning helper walks (they need no message id: applied by
    # `Ingest.finish`, after the load).
    if tapback != "0":
        condition = tapback_condition(source_indexes(conn), have)
        ingest.prepare_rows(reader.tapback_rows(after, upto, condition))
    # The decoding helper's texts: read as they come when its snapshot is the import's (the
    # INSERT then starts as soon as the plan is there, the helper still decoding ahead of
    # it), else all of them first, each checked against its blob.
    stream = decoder if decoder is not None and decoder.streaming(timeout=120) else None
    if stream is not None:
        decoded = Decoded(stream.live, None, None, {})  # words and marks: after the load
    elif decoder is not None:
        decoded = _decoded(decoder)
    unsent: set[int] = set()
    # The texts of rows read here, when the helper counted the words of all the others.
    decoded_here: dict[int, str] | None = {} if decoded.words is not None else None
    statuses: dict[str, int] = {}
    _functions(conn, ingest, decoded, unsent, decoded_here, statuses, stream)
    walked = decoder.planned(timeout=120) if usable and decoder is not None else None
    if walked is None:  # each message's chat, for the INSERT's joins
        plan.join_table(conn, after, upto)
    chat_of: dict[int, int | None] | None = None
    buckets: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # stats/precompute.py
    if usable:  # nothing older to extend: sorted by SQLite, split in one walk
        if walked is not None:
            planned = plan.write(conn, walked, spans=False)
            conversation_of = dict(zip(walked.order, walked.conv_of, strict=True))
            chat_of = dict(zip(walked.order, walked.chat_of, strict=True))
            if stats_on:
                buckets = (
                    np.frombuffer(walked.bucket_keys, dtype=np.int64).reshape(-1, 4),
                    np.frombuffer(walked.bucket_of, dtype=np.int64),
                    np.array(walked.order, dtype=np.int64),
                )
            del walked
        else:
            if decoder is not None:
                logger.warning("import_planner_unused", reason=decoder.plan_error)
            planned = plan.build(
                conn,
                select_rows=select_rows,
                params={"a": after, "u": upto},
                first=first,
                now_ns=ingest.now_ns,
                seal_expired=ingest.seal_expired,
            )
        count = len(planned.rowids)
        ingest.counters.conversations_created += planned.created
        ingest.conversations_planned(planned.timers)
        ingest.chat_bumps.extend(planned.bumps)
        ingest.contact_totals = planned.contacts
        if chat_of is None:
            conversation_of = dict(planned.events)
            conversation = plan.conversation_sql(date_ns, event)
        else:
            conversation = "cs_conversation(m.ROWID)"
    else:
        chat_map, points, events = ingest.chat_map, ingest.new_points, ingest.new_events
        mid = first
        for rowid, chat_rowid, date, is_event in conn.execute(
            f"SELECT m.ROWID, j.chat_rowid, {date_ns}, {event} FROM src.message m"
            f" LEFT JOIN bulk_joins j ON j.message_id = m.ROWID WHERE {rows_where}"
            " ORDER BY m.ROWID",
            {"a": after, "u": upto},
        ):
            rowids.append(rowid)
            chat_id = chat_map.get(chat_rowid)
            if chat_id is not None:
                (events if is_event else points)[chat_id].append(Point(date, mid))
            mid += 1
        count = len(rowids)
        conversation_of = {
            rowids[m - first]: cid for cid, ids in ingest.assign_conversations_early() for m in ids
        }
        conversation = "cs_conversation(m.ROWID)"
    if decoder is not None:
        fts_at = scratch.attached(conn, scratch.FTS_ALIAS)
        if planned is not None and decoded.crcs is None and decoded_here is not None and fts_at:
            # The helper's texts are used as they are: it indexes the rows while this
            # writes them (`finish_fts` copies its index in), and computes the summaries.
            decoder.build_fts(
                FtsRequest(
                    path=str(fts_at),
                    first=first,
                    rowids=planned.rowids,
                    **_stats_request(conn, planned, buckets),
                )
            )
        else:
            decoder.release()
    conn.create_function("cs_conversation", 1, conversation_of.get, deterministic=True)
    chat_sql, chat_joins = (
        "c.id",
        (
            "LEFT JOIN bulk_joins j ON j.message_id = m.ROWID"
            " LEFT JOIN bulk_chats c ON c.src = j.chat_rowid"
        ),
    )
    if chat_of is not None:  # the planner's: one dict lookup in C a row, no joins
        conn.create_function("cs_chat", 1, chat_of.get, deterministic=True)
        chat_sql, chat_joins = "cs_chat(m.ROWID)", ""
    sql = f"""
        INSERT INTO messages (guid, chat_id, conversation_id, handle_id, is_from_me, date_ns,
            text, subject, service, kind, group_title, other_handle_id, reply_to_guid,
            reply_to_part, edited, unsent, date_edited_ns, is_read, date_read_ns,
            is_delivered, date_delivered_ns, is_sent, balloon, effect, is_audio, body_status,
            source_rowid)
        SELECT m.guid, {chat_sql}, {conversation},
            CASE WHEN {from_me} THEN NULL ELSE h.id END,
            {from_me}, {date_ns},
            CASE WHEN {code} % 2 = 1 THEN ''
                 ELSE COALESCE(cs_ready_text(m.ROWID),
                               cs_body_text(m.ROWID, {col("attributedBody")}, {text_arg}))
                 END,
            {col("subject")}, {col("service")},
            CASE WHEN COALESCE({col("item_type")}, 0) = 0 THEN 'message'
                 ELSE cs_kind({col("item_type")}, {col("group_action_type")}) END,
            {col("group_title")}, o.id,
            CASE WHEN {col("thread_originator_guid")} IS NULL THEN NULL
                 ELSE cs_reply_guid(CAST({col("thread_originator_guid")} AS BLOB)) END,
            CASE WHEN {col("thread_originator_guid")} IS NULL THEN NULL
                 ELSE cs_reply_part(CAST({col("thread_originator_part")} AS BLOB)) END,
            {code} / 2, {code} % 2, {_date("date_edited", have)},
            {flag("is_read")}, {_date("date_read", have)},
            {flag("is_delivered")}, {_date("date_delivered", have)},
            {flag("is_sent")}, {col("balloon_bundle_id")}, {col("expressive_send_style_id")},
            {flag("is_audio_message")},
            CASE WHEN cs_ready_text(m.ROWID) IS NOT NULL THEN 'ok'
                 ELSE cs_body_status(m.ROWID, {col("attributedBody")}, {text_arg}) END,
            m.ROWID
        FROM src.message m
        {chat_joins}
        LEFT JOIN bulk_handles h ON h.src = m.handle_id
        LEFT JOIN bulk_handles o ON o.src = NULLIF(COALESCE({col("other_handle")}, 0), 0)
        WHERE {rows_where}
        ORDER BY m.ROWID
    """
    with stats_maintain.bulk_insert(conn, first):  # buckets in one GROUP BY, not per row
        conn.execute(sql, {"a": after, "u": upto})
    if stream is not None:  # every text came (or the rest were read here): the words, marks
        decoded = _decoded(stream)
        if decoded.words is None:  # it failed midway: its texts were right, its counts lost
            decoded_here = None
    if decoder is not None and decoder.fts_asked:  # what it must agree with to commit
        decoder.check_fts(
            None
            if decoded_here is None
            else FtsCheck(
                unsent=sorted(unsent),
                texts={r: t for r, t in decoded_here.items() if r not in unsent},
            )
        )
    if planned is not None:  # what the walk saw, so the rebuild need not walk again
        job = None
        if buckets is not None and decoded.words is not None:
            assert decoded_here is not None
            job = _precompute(conn, planned, buckets, decoded.words, decoded_here, unsent)
            if decoder is not None and decoder.walk_asked:  # it writes the walk's tables
                job.walked_remote = decoder.walk_built
            if decoder is not None and decoder.stats_asked:  # and the other one the rest
                job.remote = decoder.stats_built
        stats_maintain.prefill(conn, planned.stats, decoded.words, job)
    # The connection holds its functions, and they hold 300k texts and ids: let them go
    # before the index builds fill the page cache.
    for name, args in _FUNCTIONS:
        conn.create_function(name, args, None)
    marks = decoded.marks
    del decoded, conversation_of, chat_of, buckets
    last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]
    if last != first + count - 1:  # cannot happen within one snapshot; never guess
        raise RuntimeError(f"bulk load wrote ids up to {last}, expected {count} rows")
    ingest.next_id = first + count
    ingest.new_ids.extend(range(first, ingest.next_id))
    attached_sql = (
        "SELECT message_id FROM src.message_attachment_join"
        " WHERE message_id > :a AND message_id <= :u"
    )
    tally = planned.tally if planned is not None else None
    if planned is not None:
        plan.drop(conn)
        if reader.has_attachments:
            for (rowid,) in conn.execute(attached_sql, {"a": after, "u": upto}):
                mid = planned.id_of(first, rowid)
                if mid is not None:
                    ingest.by_rowid[rowid] = mid
        del planned
    elif reader.has_attachments:  # only messages with attachments need their ROWID mapped
        with_attachments = {r[0] for r in conn.execute(attached_sql, {"a": after, "u": upto})}
        ingest.by_rowid.update(
            (rowid, first + k) for k, rowid in enumerate(rowids) if rowid in with_attachments
        )
    c = ingest.counters
    c.bodies_corrupt += statuses.get("corrupt", 0)
    c.bodies_empty += statuses.get("none", 0)
    if tally is not None:  # the walk counted what the rows' kinds and chats say
        n_events, in_chats, n_orphans = tally
        c.messages_added += count - n_events
        c.system_events_added += n_events
        c.orphans += n_orphans
        ingest.reload_chats = ingest.reload_chats or in_chats > 0
    else:
        row = conn.execute(
            "SELECT sum(kind = 'message'), sum(kind <> 'message'), sum(chat_id IS NULL)"
            " FROM messages WHERE id >= :f",
            {"f": first},
        ).fetchone()
        c.messages_added += row[0] or 0
        c.system_events_added += row[1] or 0
        c.orphans += row[2] or 0
        if conn.execute(
            "SELECT 1 FROM messages WHERE id >= :f AND kind <> 'message' AND chat_id IS NOT NULL",
            {"f": first},
        ).fetchone():
            ingest.reload_chats = True
    for table in ("bulk_handles", "bulk_chats", "bulk_joins"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")  # names are constants
    return marks
