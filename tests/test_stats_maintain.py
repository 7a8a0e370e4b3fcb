"""The trigger-kept statistics equal one set-based rebuild, whatever the order of writes.

Why property-based: the triggers take an O(1) path for a message appended after its
conversation's last one and recompute a conversation otherwise (a late message, an unsend,
a re-split, a moved date); edits, tapbacks and their removals touch buckets and reactions.
Random sequences of those writes, mostly appends as in life, must leave every summary
exactly as `maintain.rebuild` makes it from the rows.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chatstats import db as appdb
from chatstats import scratch
from chatstats.ingest import bulk, decode
from chatstats.stats import maintain, precompute, summary
from tests.conftest import PROFILES
from tests.library_check import plain_message
from tests.test_import import run_import

MINUTE = 60 * 10**9
T0 = 1_700_000_000 * 10**9


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stats") / "chatstats.db"
    conn = appdb.connect(path, write=True)
    appdb.migrate(conn)
    conn.execute("INSERT INTO handles (id, identifier) VALUES (1, '+15550001'), (2, 'a@b.c')")
    conn.execute("INSERT INTO chats (id, guid, is_group) VALUES (1, 'chat-1', 0), (2, 'chat-2', 1)")
    conn.close()
    return path


def _open(template: Path) -> sqlite3.Connection:
    src = sqlite3.connect(template)
    conn = sqlite3.connect(":memory:", isolation_level=None)
    src.backup(conn)
    src.close()
    return conn  # a plain connection: no custom SQL function is needed to write messages


def _tables(conn: sqlite3.Connection) -> dict[str, Counter[tuple]]:
    out: dict[str, Counter[tuple]] = {}
    for table in maintain.ALL_TABLES:
        rows = [tuple(r) for r in conn.execute(f"SELECT * FROM {table}")]  # constant names
        if table == "stats_blocks":  # the packed order of a block's buckets is free
            rows = [(*r[:4], frozenset(_triples(r[4]))) for r in rows]
        elif table in ("stats_month_packs", "stats_bucket_days", "stats_reply_days"):
            digits = 16 if table == "stats_reply_days" else 8
            rows = [(*r[:-1], tuple(sorted(_pairs(r[-1], digits)))) for r in rows]  # free order
        out[table] = Counter(rows)
    return out


def _pairs(packed: str, digits: int) -> list[tuple[int, int]]:
    xs = summary.hex_ints(packed, digits).tolist()
    return list(zip(xs[::2], xs[1::2], strict=True))


def _triples(packed: str) -> list[tuple[int, int, int]]:
    flat = np.frombuffer(bytes.fromhex(packed), dtype=summary._BLOCK)
    return [tuple(int(x) for x in r) for r in flat.tolist()]


TEXTS = st.sampled_from([None, "", "hi", "two words", " spaced  out\tthree ", "ünï cödé"])
OPS = st.lists(
    st.one_of(
        # (op, conversation 1..4, minutes after the last append (or before, when late), side,
        #  text)
        st.tuples(st.just("append"), st.integers(1, 4), st.integers(0, 30), st.booleans(), TEXTS),
        st.tuples(st.just("late"), st.integers(1, 4), st.integers(0, 600), st.booleans(), TEXTS),
        st.tuples(st.just("unsend"), st.integers(0, 10**6)),
        st.tuples(st.just("edit"), st.integers(0, 10**6), TEXTS),
        st.tuples(st.just("move"), st.integers(0, 10**6), st.integers(1, 4)),
        st.tuples(st.just("redate"), st.integers(0, 10**6), st.integers(-600, 600)),
        st.tuples(st.just("kind"), st.integers(0, 10**6)),
        st.tuples(
            st.just("react"),
            st.integers(0, 10**6),
            st.sampled_from(["love", "like"]),
            st.booleans(),
        ),
        st.tuples(st.just("unreact"), st.integers(0, 10**6)),
        st.tuples(st.just("delete_reaction"), st.integers(0, 10**6)),
    ),
    max_size=40,
)


def _apply(conn: sqlite3.Connection, ops: list[tuple]) -> None:
    clock = T0
    n = 0
    for op in ops:
        ids = [r[0] for r in conn.execute("SELECT id FROM messages ORDER BY id")]
        rids = [r[0] for r in conn.execute("SELECT id FROM reactions ORDER BY id")]
        kind = op[0]
        if kind in ("append", "late"):
            _, cv, minutes, mine, text = op
            if kind == "append":
                clock += minutes * MINUTE
                at = clock
            else:
                at = clock - minutes * MINUTE
            chat = 1 + cv % 2
            conn.execute(
                "INSERT OR IGNORE INTO conversations (id, chat_id, start_ns, end_ns, message_count)"
                " VALUES (:cv, :chat, 0, 0, 0)",
                {"cv": cv, "chat": chat},
            )
            n += 1
            conn.execute(
                "INSERT INTO messages (guid, chat_id, conversation_id, handle_id, is_from_me,"
                " date_ns, text) VALUES (:g, :chat, :cv, :h, :me, :at, :text)",
                {
                    "g": f"m{n}",
                    "chat": chat,
                    "cv": cv,
                    "h": None if mine else 1 + n % 2,
                    "me": int(mine),
                    "at": at,
                    "text": text,
                },
            )
        elif kind == "unsend" and ids:
            conn.execute("DELETE FROM messages WHERE id = ?", (ids[op[1] % len(ids)],))
        elif kind == "edit" and ids:
            conn.execute(
                "UPDATE messages SET text = ? WHERE id = ?", (op[2], ids[op[1] % len(ids)])
            )
        elif kind == "move" and ids:
            conn.execute(
                "INSERT OR IGNORE INTO conversations (id, chat_id, start_ns, end_ns, message_count)"
                " VALUES (:cv, :chat, 0, 0, 0)",
                {"cv": op[2], "chat": 1 + op[2] % 2},
            )
            conn.execute(
                "UPDATE messages SET conversation_id = :cv, chat_id = :chat WHERE id = :id",
                {"cv": op[2], "chat": 1 + op[2] % 2, "id": ids[op[1] % len(ids)]},
            )
        elif kind == "redate" and ids:
            conn.execute(
                "UPDATE messages SET date_ns = date_ns + ? WHERE id = ?",
                (op[2] * MINUTE, ids[op[1] % len(ids)]),
            )
        elif kind == "kind" and ids:
            conn.execute(
                "UPDATE messages SET kind = CASE kind WHEN 'message' THEN 'group_event'"
                " ELSE 'message' END WHERE id = ?",
                (ids[op[1] % len(ids)],),
            )
        elif kind == "react" and ids:
            n += 1
            conn.execute(
                "INSERT INTO reactions (guid, target_guid, type, is_removal, is_from_me, date_ns,"
                " active) SELECT :g, guid, :t, 0, :me, :at, 1 FROM messages WHERE id = :id",
                {
                    "g": f"r{n}",
                    "t": op[2],
                    "me": int(op[3]),
                    "at": clock,
                    "id": ids[op[1] % len(ids)],
                },
            )
        elif kind == "unreact" and rids:
            conn.execute("UPDATE reactions SET active = 0 WHERE id = ?", (rids[op[1] % len(rids)],))
        elif kind == "delete_reaction" and rids:
            conn.execute("DELETE FROM reactions WHERE id = ?", (rids[op[1] % len(rids)],))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
# A message moved into another conversation and back: the new conversation's recompute
# (0016 made its trigger fire first) re-inserted the moved reply over its old row.
@example(
    ops=[
        ("append", 1, 0, False, None),
        ("append", 1, 0, False, None),
        ("late", 4, 1, True, None),
        ("move", 0, 4),
        ("late", 1, 1, True, None),
        ("move", 0, 1),
    ]
)
def test_triggers_equal_a_rebuild(template: Path, ops: list[tuple]) -> None:
    conn = _open(template)
    _apply(conn, ops)
    maintain.drain(conn)
    kept = _tables(conn)
    conn.execute("BEGIN")
    maintain.rebuild(conn)
    rebuilt = _tables(conn)
    conn.execute("ROLLBACK")
    for table in maintain.ALL_TABLES:
        assert kept[table] == rebuilt[table], table
    conn.close()


def test_appends_take_the_fast_path(template: Path) -> None:
    """A conversation built by appends only is never recomputed: its rows are what O(1)
    updates make (a recompute would give the same rows, so this checks the path taken by
    removing the recompute trigger and still getting the rebuild's rows)."""
    conn = _open(template)
    conn.execute("DROP TRIGGER stats_conv_insert")
    _apply(conn, [("append", 1, i % 7, bool(i % 3), "a b") for i in range(30)])
    kept = _tables(conn)
    conn.execute("BEGIN")
    maintain.rebuild(conn)
    assert _tables(conn)["stats_replies"] == kept["stats_replies"]
    assert _tables(conn)["stats_conversations"] == kept["stats_conversations"]
    assert kept["stats_replies"]  # the sides alternate: there are replies
    conn.execute("ROLLBACK")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_queued_words_count_before_a_drain(template: Path, ops: list[tuple]) -> None:
    """A plain sqlite3 client writes the messages (no custom SQL function registered); the
    chat figures read with words still queued equal those after the writer's drain."""
    from datetime import date
    from zoneinfo import ZoneInfo

    from chatstats.stats import service
    from chatstats.stats.summary import MAX_NS, MIN_NS

    conn = _open(template)
    conn.row_factory = sqlite3.Row
    _apply(conn, ops)
    zone, today = ZoneInfo("America/New_York"), date(2024, 1, 1)
    for chat in (1, 2):
        before = service.chat_stats(conn, zone, chat, MIN_NS, MAX_NS, today)
        queued = conn.execute("SELECT COUNT(*) FROM stats_words_pending").fetchone()[0]
        conn.execute("BEGIN")
        maintain.drain(conn)
        after = service.chat_stats(conn, zone, chat, MIN_NS, MAX_NS, today)
        assert conn.execute("SELECT COUNT(*) FROM stats_words_pending").fetchone()[0] == 0
        conn.execute("ROLLBACK")
        assert before == after, queued


def test_words_are_counted_once_drained(template: Path) -> None:
    conn = _open(template)
    _apply(conn, [("append", 1, 1, True, " spaced  out\tthree "), ("append", 1, 1, False, "hi")])
    assert conn.execute("SELECT SUM(words) FROM stats_buckets").fetchone()[0] == 0
    assert maintain.drain(conn) == 2
    assert conn.execute("SELECT SUM(words) FROM stats_buckets").fetchone()[0] == 4
    assert maintain.drain(conn) == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_race_import_equals_a_rebuild(profile, libraries, tmp_path, capsys, monkeypatch) -> None:
    """The first (race-mode) import builds the summaries its own way (the conversation
    walk's rows, `maintain.prefill`, the rest computed in a thread by stats/precompute.py,
    or set-based after the load without the decode helper's word counts): they must
    equal what `rebuild` makes from the imported rows, on every chat.db schema profile
    (bodies, tapbacks and conversations differ between them)."""
    lib, _truth = libraries[profile]
    used: list[bool] = []
    known: list[bool] = []
    real = maintain._prefilled

    def spied(conn: sqlite3.Connection) -> tuple[list[str], bool] | None:
        got = real(conn)
        used.append(got is not None)
        known.extend([got[1]] if got is not None else [])
        return got

    monkeypatch.setattr(maintain, "_prefilled", spied)
    computed: list[str] = []  # summaries copied from the decoding helper's scratch file
    real_copy = scratch.copy

    def copy(conn: sqlite3.Connection, table: str, alias: str = scratch.ALIAS) -> None:
        if alias == scratch.ALIAS:
            computed.append(table)
        real_copy(conn, table, alias)

    monkeypatch.setattr(scratch, "copy", copy)
    summary = run_import(capsys, lib, tmp_path)
    assert summary["mode"] == "race"
    assert used == [True], "the walk's rows must be what the import kept"
    src = sqlite3.connect(lib / "chat.db")
    blobs = any(r[1] == "attributedBody" for r in src.execute("PRAGMA table_info(message)"))
    src.close()
    # Words counted by the decode helper where it decoded, not in a second pass here.
    assert known == [blobs and decode.Decoder.available()]
    # ...and then the rest computed by stats/precompute.py (in that helper), not by the
    # statements.
    assert bool(computed) == known[0]
    _assert_equals_a_rebuild(tmp_path / "chatstats.db")


def unusable(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Have the decoding helper write the summaries to a directory: it cannot."""
    directory.mkdir()
    real = bulk._stats_request

    def request(*args: object) -> dict[str, object]:
        got = real(*args)  # type: ignore[arg-type]
        return {**got, "stats_path": str(directory)} if got else got

    monkeypatch.setattr(bulk, "_stats_request", request)


def _assert_equals_a_rebuild(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("SELECT count(*) FROM stats_words_pending").fetchone() == (0,)
    imported = _tables(conn)
    assert sum(imported["stats_buckets"].values()) > 0
    assert sum(imported["stats_replies"].values()) > 0
    conn.execute("BEGIN")
    maintain.rebuild(conn)
    rebuilt = _tables(conn)
    conn.execute("ROLLBACK")
    conn.close()
    for table in maintain.ALL_TABLES:
        assert imported[table] == rebuilt[table], table


def test_race_import_falls_back_to_the_statements(libraries, tmp_path, capsys, monkeypatch):
    """A precomputing thread that fails (or declines: dates SQL and Python would divide
    differently) leaves the summaries to the statements, still equal to a rebuild."""
    lib, _truth = libraries[PROFILES[0]]  # bodies in blobs: the helper counts words
    calls: list[int] = []

    def broken(*args: object) -> object:
        calls.append(1)
        raise RuntimeError("boom")

    # The decoding helper cannot write them (its file a directory), so this process
    # computes them, and fails.
    unusable(monkeypatch, tmp_path / "not-a-file")
    monkeypatch.setattr(precompute, "compute", broken)
    assert run_import(capsys, lib, tmp_path)["mode"] == "race"
    assert calls == [1]
    _assert_equals_a_rebuild(tmp_path / "chatstats.db")


def test_a_failed_import_lets_its_precompute_go(libraries, tmp_path, capsys, monkeypatch):
    """A load that fails after `prefill` must not leave its job (and its connection) in
    the registry, where a daemon that retries imports would pile them up."""
    lib, _truth = libraries[PROFILES[0]]

    def failing(conn: sqlite3.Connection) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(maintain, "_fill", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        run_import(capsys, lib, tmp_path)
    assert maintain._JOBS == {}


def test_precompute_declines_what_sql_would_compute_otherwise() -> None:
    """Before 1970 (SQLite divides toward zero), past year 9999 (strftime gives NULL) and a
    negative gap (printed as two's complement): None, so the statements run."""
    conv = [(1, 1, 0, 0, 1, 0, 1, 0)]
    ok = precompute.compute([(5, 1, 0, 0)], [0], [7], {7: 2}, {}, set(), conv, [])
    assert ok is not None
    assert list(precompute.rows(ok["stats_buckets"][1])) == [(5, 1, 0, 0, 1, 2)]
    assert list(precompute.rows(ok["stats_months"][1])) == [(197001, 1, 0, 0, 1)]
    assert precompute.compute([(-1, 1, 0, 0)], [0], [7], {7: 2}, {}, set(), conv, []) is None
    late = 253_402_300_800 // 900 + 1
    assert precompute.compute([(late, 1, 0, 0)], [0], [7], {}, {}, set(), conv, []) is None
    reply = [(2, 1, 1, 3, 1, 10, -5)]
    assert precompute.compute([(5, 1, 0, 0)], [0], [7], {}, {}, set(), conv, reply) is None


def test_an_unsent_message_whose_blob_keeps_its_text_counts_no_words(
    libraries, tmp_path, capsys, monkeypatch
):
    """A message unsent (date_retracted) whose attributedBody still holds its text: the
    load writes it empty, so the summaries, computed from the decoding helper's word counts,
    must count none for it."""
    src, _truth = libraries["sequoia"]
    lib = tmp_path / "lib"
    shutil.copytree(src, lib)
    rowid = plain_message(lib / "chat.db")
    chat = sqlite3.connect(lib / "chat.db")
    chat.execute("UPDATE message SET date_retracted = date + 60 WHERE ROWID = ?", (rowid,))
    chat.commit()
    chat.close()
    copied: list[str] = []
    real_copy = scratch.copy

    def copy(conn: sqlite3.Connection, table: str, alias: str = scratch.ALIAS) -> None:
        copied.append(f"{alias}.{table}")
        real_copy(conn, table, alias)

    monkeypatch.setattr(scratch, "copy", copy)
    assert run_import(capsys, lib, tmp_path / "data")["mode"] == "race"
    assert f"{scratch.ALIAS}.stats_buckets" in copied, "the helper's summaries were used"
    db = tmp_path / "data" / "chatstats.db"
    conn = sqlite3.connect(db)
    assert conn.execute(
        "SELECT text, unsent FROM messages WHERE source_rowid = ?", (rowid,)
    ).fetchone() == ("", 1)
    conn.close()
    _assert_equals_a_rebuild(db)
