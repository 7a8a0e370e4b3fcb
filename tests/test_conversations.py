"""The 90-minute splitter and its two algorithms, by property."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from chatstats.ingest.conversations import GAP_NS, Open, Point, append, reconcile, split

MIN = 60 * 1_000_000_000

dates = st.lists(st.integers(min_value=0, max_value=10_000 * MIN), min_size=0, max_size=60)


def points_of(ds: list[int]) -> list[Point]:
    return sorted(Point(d, i) for i, d in enumerate(ds))


def test_gap_of_exactly_90_minutes_stays_and_one_ns_more_splits():
    assert len(split([Point(0, 1), Point(GAP_NS, 2)])) == 1
    assert len(split([Point(0, 1), Point(GAP_NS + 1, 2)])) == 2


@given(dates)
def test_split_partitions_in_order_with_gaps_only_between_groups(ds):
    pts = points_of(ds)
    groups = split(pts)
    assert [m for g in groups for m in g.message_ids] == [p.message_id for p in pts]
    by_id = {p.message_id: p.date_ns for p in pts}
    for g in groups:
        inner = [by_id[m] for m in g.message_ids]
        assert g.start_ns == inner[0] and g.end_ns == inner[-1]
        assert all(b - a <= GAP_NS for a, b in itertools.pairwise(inner))
    for a, b in itertools.pairwise(groups):
        assert b.start_ns - a.end_ns > GAP_NS


@given(dates, st.integers(min_value=0, max_value=60), st.booleans())
def test_appending_in_batches_equals_one_split(ds, cut, sealed):
    """Live sync appends batch after batch; the result must equal a fresh split, whether
    or not the last conversation was sealed meanwhile."""
    pts = points_of(ds)
    head, tail = pts[:cut], pts[cut:]
    groups = split(head)
    last = None
    if groups:
        g = groups[-1]
        last = Open(len(groups) - 1, g.start_ns, g.end_ns, len(g.message_ids), sealed)
    plan = append(last, tail)
    built = [list(g.message_ids) for g in groups]
    if plan.extend is not None:
        cid, _end, ids = plan.extend
        built[cid].extend(ids)
    built += [list(g.message_ids) for g in plan.create]
    assert built == [g.message_ids for g in split(pts)]


def test_a_sealed_conversation_within_the_gap_is_reopened_beyond_it_is_not():
    """By message times alone, as a fresh split: sealed or not makes no difference."""
    plan = append(Open(7, 0, 10, 2, True), [Point(10 + GAP_NS, 3)])
    assert plan.extend == (7, 10 + GAP_NS, [3]) and plan.create == [] and plan.reopen
    plan = append(Open(7, 0, 10, 2, True), [Point(11 + GAP_NS, 3)])
    assert plan.extend is None and len(plan.create) == 1 and not plan.reopen
    assert not append(Open(7, 0, 10, 2, False), [Point(20, 3)]).reopen


@given(dates, st.lists(st.integers(min_value=0, max_value=10_000 * MIN), max_size=20))
@settings(max_examples=200)
def test_fresh_split_keeps_unchanged_conversations_and_grows_those_older_messages_reach(ds, extra):
    old = points_of(ds)
    existing = {100 + i: frozenset(g.message_ids) for i, g in enumerate(split(old))}
    new = sorted(old + [Point(d, 10_000 + i) for i, d in enumerate(extra)])
    groups = split(new)
    plan = reconcile(groups, existing)
    kept = {cid for cid, _ in plan.keep}
    grown = {cid for cid, _ in plan.grow}
    # A conversation keeps its id unchanged exactly when its message set is unchanged.
    for cid, members in existing.items():
        assert (cid in kept) == (members in {frozenset(g.message_ids) for g in groups})
    # One that grew holds all it had, and is the largest of those merged into its group.
    for cid, group in plan.grow:
        members = frozenset(group.message_ids)
        assert existing[cid] < members
        merged = [c for c, m in existing.items() if m <= members]
        assert all(len(existing[c]) <= len(existing[cid]) for c in merged)
    assert not kept & grown
    assert sorted(kept | grown | set(plan.delete)) == sorted(existing)
    assert len(plan.keep) + len(plan.grow) + len(plan.create) == len(groups)
    # Messages are only added: a new group holds old messages only if it keeps or grows one.
    placed = [g for _c, g in plan.keep + plan.grow]
    for g in plan.create:
        assert all(m >= 10_000 for m in g.message_ids)
    assert len(placed) + len(plan.create) == len(groups)
