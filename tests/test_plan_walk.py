"""The array walk (plan.walk_arrays, which the import's planning helper runs) against the
Python walk it replaced (plan.walk, kept as the reference and the fallback): the same Walked,
field for field and in the same orders, on rows drawn to hit every branch: orphans, system
events at a span's edges and in gaps, date ties, negative dates, chats of events only."""

from __future__ import annotations

import sqlite3

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from chatstats.ingest import plan
from chatstats.ingest.conversations import GAP_NS

MINUTE = 60_000_000_000

row = st.tuples(
    st.one_of(st.none(), st.integers(1, 4)),  # chat (None: an orphan)
    st.integers(-3, 40).map(lambda k: k * 30 * MINUTE),  # dates on a 30-minute grid...
    st.sampled_from([0, 0, 1, -1, GAP_NS, 7]),  # ...shifted to land on and past the gap
    st.sampled_from([0, 0, 0, 1]),  # is_event
    st.integers(0, 3),  # h
    st.integers(0, 1),  # s
)


def both(rows, *, now_ns: int, seal_expired: bool) -> tuple[plan.Walked, plan.Walked]:
    # ROWIDs unique and not in date order, as chat.db's are after a restore.
    numbered = [
        (r * 7 % 1009 + 1, c, d + e, ev, 0 if s else h, s)
        for r, (c, d, e, ev, h, s) in enumerate(rows)
    ]
    assert len({x[0] for x in numbered}) == len(numbered)
    ordered = sorted(
        ((c, d, r, ev, h, s) for r, c, d, ev, h, s in numbered),
        key=lambda x: (x[0] is not None, x[0] or 0, x[1], x[2]),  # SQL: NULLs first
    )
    kw = {"first": 1, "next_cid": 5, "now_ns": now_ns, "seal_expired": seal_expired}
    reference = plan.walk(ordered, **kw)
    arrays = np.array(
        [(r, -1 if c is None else c, d, ev, h, s) for r, c, d, ev, h, s in numbered],
        dtype=np.int64,
    ).reshape(-1, 6)
    return reference, plan.walk_arrays(arrays, **kw)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(row, max_size=60),
    st.integers(0, 45).map(lambda k: k * 30 * MINUTE),
    st.booleans(),
)
def test_the_array_walk_decides_as_the_python_walk(rows, now_ns, seal_expired):
    reference, arrays = both(rows, now_ns=now_ns, seal_expired=seal_expired)
    for field in plan.Walked.__struct_fields__:  # field by field, for a readable failure
        assert getattr(arrays, field) == getattr(reference, field), field
    assert arrays == reference


def test_no_rows_and_events_only():
    for rows in ([], [(1, 0, 0, 1, 0, 1)], [(None, 0, 0, 0, 2, 0)]):
        reference, arrays = both(rows, now_ns=0, seal_expired=True)
        assert arrays == reference


def test_dates_the_arrays_cannot_take_are_left_to_the_python_walk():
    """A REAL or NULL date (a damaged row) or one near the int64 limit: read_arrays says
    None, so the caller walks those rows in Python, exactly."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (r, chat_id, date_ns, is_event, h, s)")
    conn.execute("INSERT INTO t VALUES (1, 1, 5, 0, 2, 0), (2, NULL, 6, 0, 0, 1)")
    select = "SELECT * FROM t"
    got = plan.read_arrays(conn, select, {})
    assert got is not None and sorted(got.tolist()) == [[1, 1, 5, 0, 2, 0], [2, -1, 6, 0, 0, 1]]
    for bad in (1.5, None, 2**62 + 2**61):
        conn.execute("UPDATE t SET date_ns = ? WHERE r = 2", (bad,))
        assert plan.read_arrays(conn, select, {}) is None, bad


@settings(max_examples=100, deadline=None)
@given(st.lists(row, max_size=40), st.booleans())
def test_without_the_statistics_the_walk_leaves_only_their_fields_empty(rows, seal_expired):
    """A database without the statistics' tables asks for no summary rows: everything else
    the walk decides is the same."""
    _reference, full = both(rows, now_ns=20 * 30 * MINUTE, seal_expired=seal_expired)
    numbered = [
        (r * 7 % 1009 + 1, -1 if c is None else c, d + e, ev, 0 if s else h, s)
        for r, (c, d, e, ev, h, s) in enumerate(rows)
    ]
    arrays = np.array(numbered, dtype=np.int64).reshape(-1, 6)
    bare = plan.walk_arrays(
        arrays, first=1, next_cid=5, now_ns=20 * 30 * MINUTE, seal_expired=seal_expired,
        stats=False,
    )  # fmt: skip
    assert bare.stats == ([], [], []) and bare.bucket_keys == b"" == bare.bucket_of
    for field in plan.Walked.__struct_fields__:
        if field not in ("stats", "bucket_keys", "bucket_of"):
            assert getattr(bare, field) == getattr(full, field), field
