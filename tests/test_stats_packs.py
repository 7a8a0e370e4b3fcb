"""Schema 0015's packs and histograms give the same figures as the rows they summarise.

The figure tests (test_stats, test_stats_live) compare every route with the truth; these
pin the pieces those libraries rarely reach: gap bins at their edges, a year whose whole
days hold replies to messages from before it, and reusing loaded month packs only while
no other connection has committed.
"""

from __future__ import annotations

import sqlite3
import statistics
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatstats import db as appdb
from chatstats.stats import maintain, service, summary

SECOND = 10**9
ZONE = ZoneInfo("America/New_York")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "chatstats.db"
    conn = appdb.connect(p, write=True)
    appdb.migrate(conn)
    conn.execute("INSERT INTO handles (id, identifier) VALUES (1, '+15550001'), (2, 'a@b.c')")
    conn.execute("INSERT INTO chats (id, guid, is_group) VALUES (1, 'chat-1', 0)")
    conn.close()
    return p


def _ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()) * SECOND


def _add(conn: sqlite3.Connection, n: int, cv: int, at: int, mine: bool, handle: int = 1) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO conversations (id, chat_id, start_ns, end_ns, message_count)"
        " VALUES (:cv, 1, 0, 0, 0)",
        {"cv": cv},
    )
    conn.execute(
        "INSERT INTO messages (guid, chat_id, conversation_id, handle_id, is_from_me, date_ns,"
        " text) VALUES (:g, 1, :cv, :h, :me, :at, 'a b')",
        {"g": f"m{n}", "cv": cv, "h": None if mine else handle, "me": int(mine), "at": at},
    )


@pytest.mark.parametrize(
    "gap_s", [0, 0.5, 1, 9.999, 10, 10.5, 99, 99.9, 100, 109, 110, 999, 1000, 5399, 86_400 * 400]
)
def test_a_gap_falls_in_the_bin_sql_gives_it(gap_s: float) -> None:
    gap = int(gap_s * SECOND)
    conn = sqlite3.connect(":memory:")
    (b,) = conn.execute(
        "SELECT length(:g / 1000000000) * 100 + CAST(substr(:g / 1000000000, 1, 2) AS INTEGER)",
        {"g": gap},
    ).fetchone()
    lo, hi = summary.gap_bin_range(b)
    assert lo <= gap < hi
    # Bins keep the order of gaps: everything in a lower bin is a shorter gap.
    (b2,) = conn.execute(
        "SELECT length(:g / 1000000000) * 100 + CAST(substr(:g / 1000000000, 1, 2) AS INTEGER)",
        {"g": hi},
    ).fetchone()
    assert b2 > b and summary.gap_bin_range(b2)[0] == hi


def test_whole_chat_reply_times_walk_the_right_bin(path: Path) -> None:
    """Median and p90 read through the bins equal those of the plain gap list."""
    conn = appdb.connect(path, write=True)
    at = _ns("2024-05-01T12:00:00")
    gaps = [3, 12, 12, 47, 95, 100, 101, 640, 2, 7, 1500, 30]
    for i, g in enumerate(gaps):
        at += g * SECOND
        _add(conn, i, 1, at, mine=bool(i % 2))
    want = {}
    for side in (0, 1):
        xs = summary.ints(
            conn.execute(
                "SELECT group_concat(gap_ns) FROM stats_replies WHERE is_from_me = ?", (side,)
            ).fetchone()[0]
        )
        assert len(xs)
        secs = xs / 1e9
        want[side] = {"n": len(xs), "median_s": summary.median(secs), "p90_s": summary.p90(secs)}
    for side in (0, 1):
        assert summary.reply_times(conn, [1], side) == want[side]
    conn.close()


def test_a_year_leaves_out_replies_to_messages_before_it(path: Path) -> None:
    """A reply on a whole day of the year to a message sent before the year began is not
    one of the year's replies (the pack of that day says so by its min_prev_ns)."""
    conn = appdb.connect(path, write=True)
    a = service.local_year_start_ns(2024, ZONE)  # 2024-01-01T05:00Z
    _add(conn, 1, 1, a - 3600 * SECOND, mine=False)  # 2024-01-01T04:00Z, before the year
    _add(conn, 2, 1, _ns("2024-01-02T01:00:00"), mine=True)  # a reply on a whole UTC day
    _add(conn, 3, 1, _ns("2024-01-02T01:05:00"), mine=False)  # its answer: in the year
    _add(conn, 4, 2, _ns("2024-03-05T10:00:00"), mine=True)
    _add(conn, 5, 2, _ns("2024-03-05T10:01:00"), mine=False, handle=2)
    _add(conn, 6, 2, _ns("2024-03-05T10:03:00"), mine=True)
    b = service.local_year_start_ns(2025, ZONE)
    for side in (0, 1):
        got = service._year_replies(conn, side, a, b)
        want = conn.execute(
            "SELECT handle_id, gap_ns FROM stats_replies WHERE is_from_me = :s"
            " AND date_ns >= :a AND date_ns < :b AND date_ns - gap_ns >= :a",
            {"s": side, "a": a, "b": b},
        ).fetchall()
        assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, want))
    assert len(service._year_replies(conn, 1, a, b)) == 1  # not the reply to 04:00Z
    conn.close()


def test_loaded_month_packs_follow_another_connections_commit(path: Path) -> None:
    writer = appdb.connect(path, write=True)
    reader = appdb.connect(path, write=False)  # query-only: its month packs are reused
    run = service._snapshot(service.overview)
    lo, hi = service.MIN_NS, service.MAX_NS
    for i in range(5):
        _add(writer, i, 1, _ns(f"2023-0{i + 1}-10T10:00:00"), mine=bool(i % 2))
    first = run(reader, ZONE, lo, hi)
    assert run(reader, ZONE, lo, hi) == first  # unchanged: served from the loaded packs
    assert service._LOADED[id(reader)][0] is reader
    writer.execute("BEGIN IMMEDIATE")
    _add(writer, 9, 1, _ns("2023-02-20T10:00:00"), mine=False, handle=2)
    maintain.drain(writer)
    writer.execute("COMMIT")
    after = run(reader, ZONE, lo, hi)
    assert after["messages"] == first["messages"] + 1
    fresh = appdb.connect(path, write=True)  # not query-only: never cached
    assert after == run(fresh, ZONE, lo, hi)
    for c in (writer, reader, fresh):
        c.close()


@pytest.mark.parametrize("zone_name", ["America/New_York", "Asia/Kolkata"])
def test_wrapped_replies_and_streaks_match_the_truth(zone_name, libraries, tmp_path, capsys):
    """A year's response times, fastest responder, streaks and busiest day (read from the
    day packs) against the sample's truth, in a zone with DST and a half-hour one."""
    from collections import defaultdict
    from itertools import pairwise

    from chatstats.ingest.conversations import GAP_NS
    from tests import stats_truth
    from tests.test_import import run_import

    lib, truth = libraries["sequoia"]
    run_import(capsys, lib, tmp_path)
    conn = appdb.connect(tmp_path / "chatstats.db", write=False)
    zone = ZoneInfo(zone_name)
    _, contact, _ = stats_truth.ids(conn)
    today = datetime.now(zone).date()
    conv_of: dict[str, tuple[str, int]] = {}
    per_chat = defaultdict(list)
    for m in truth.messages:
        if m.kind == "message" and m.chat_guid:
            per_chat[m.chat_guid].append(m)
    for guid, chat_ms in per_chat.items():
        n, prev = 0, None
        for m in sorted(chat_ms, key=lambda m: m.date_ns):
            n += prev is None or m.date_ns - prev > GAP_NS
            conv_of[m.guid] = (guid, n)
            prev = m.date_ns
    every = stats_truth.messages(truth, service.MIN_NS, service.MAX_NS)
    years = sorted({stats_truth._local(m.date_ns, zone).year for m in every})[-3:]
    for year in years:
        ms = [m for m in every if stats_truth._local(m.date_ns, zone).year == year]
        got = service._snapshot(service.wrapped)(conn, zone, year, today)
        want = stats_truth.figures(truth, conn, zone, ms, today)
        assert got["response_times"] == want["response_times"], year
        assert got["streaks"] == want["streaks"], year
        busiest = max(want["by_day"], key=lambda d: (d["sent"] + d["received"], d["date"]))
        assert got["busiest_day"] == busiest
        convs = defaultdict(list)
        for m in sorted(ms, key=lambda m: m.date_ns):
            convs[conv_of[m.guid]].append(m)
        theirs = defaultdict(list)
        for c in convs.values():
            for a, b in pairwise(c):
                k = contact.get(b.sender or "")
                if a.is_from_me and not b.is_from_me and k is not None:
                    theirs[k].append((b.date_ns - a.date_ns) / 1e9)
        medians = [(summary.median(np.array(v)), k) for k, v in theirs.items() if len(v) >= 3]
        fastest = min(medians, default=None)
        assert got["fastest_responder"] == (
            None if fastest is None else {"contact_id": fastest[1], "median_s": fastest[0]}
        ), year
    conn.close()


@given(
    st.lists(st.tuples(st.integers(1, 6), st.integers(0, 5_400 * 10**9)), min_size=0, max_size=60)
)
def test_fastest_responder_is_the_same_by_either_sort(replies: list[tuple[int, int]]) -> None:
    """The usual path packs (contact, gap) into one int64 and sorts once; gaps too long for
    it take two stable sorts. Both give each contact's exact median."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE handles (id INTEGER PRIMARY KEY, contact_id INTEGER)")
    conn.executemany("INSERT INTO handles VALUES (?, ?)", [(h, 10 + h % 4) for h in range(1, 7)])
    handles = np.array([h for h, _g in replies], dtype=np.int64)
    gaps = np.array([g for _h, g in replies], dtype=np.int64)
    packed = service._fastest(conn, handles, gaps)
    by_contact: dict[int, list[float]] = {}
    for h, g in replies:
        by_contact.setdefault(10 + h % 4, []).append(g / 1e9)
    medians = [(statistics.median(v), c) for c, v in by_contact.items() if len(v) >= 3]
    want = None if not medians else (min(medians)[1], min(medians)[0])
    assert packed == want
    old = service._GAP_BITS
    service._GAP_BITS = 1  # every gap too long: the two-sort path
    try:
        assert service._fastest(conn, handles, gaps) == want
    finally:
        service._GAP_BITS = old
