"""Conversations: a chat's messages split wherever 90 minutes pass in silence.

Two algorithms, as in the seeds, both pure so they can be property-tested:
- `append`: live sync and imports that only add newer messages extend the chat's last
  conversation or open new ones; nothing existing changes.
- `split` + `reconcile` ("fresh split & compare"): when older messages arrive (an iPhone
  backup interleaving with what a Mac already had), re-split the chat's whole history and
  keep each existing conversation id whose message set came out unchanged.

A gap of exactly 90 minutes stays in the same conversation; one nanosecond more splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

GAP_NS = 90 * 60 * 1_000_000_000


class Point(NamedTuple):
    date_ns: int
    message_id: int


class Group(NamedTuple):
    start_ns: int
    end_ns: int
    message_ids: list[int]


def split(points: Sequence[Point], gap_ns: int = GAP_NS) -> list[Group]:
    """Groups of `points`, which must be sorted by (date_ns, message_id)."""
    groups: list[Group] = []
    ids: list[int] = []
    start = prev = 0
    for date_ns, message_id in points:
        if ids and date_ns - prev > gap_ns:
            groups.append(Group(start, prev, ids))
            ids = []
        if not ids:
            start = date_ns
        ids.append(message_id)
        prev = date_ns
    if ids:
        groups.append(Group(start, prev, ids))
    return groups


class Open(NamedTuple):
    """The chat's latest conversation, as far as `append` needs to know it."""

    conversation_id: int
    start_ns: int
    end_ns: int
    message_count: int
    sealed: bool


class AppendPlan(NamedTuple):
    extend: tuple[int, int, list[int]] | None  # (conversation_id, new end_ns, added message ids)
    create: list[Group]


def append(last: Open | None, points: Sequence[Point], gap_ns: int = GAP_NS) -> AppendPlan:
    """New messages, all at or after the chat's newest one, onto its last conversation.

    A sealed conversation is finished: messages after it always open a new one.
    """
    groups = split(points, gap_ns)
    if not groups:
        return AppendPlan(None, [])
    first = groups[0]
    if last is not None and not last.sealed and first.start_ns - last.end_ns <= gap_ns:
        return AppendPlan((last.conversation_id, first.end_ns, first.message_ids), groups[1:])
    return AppendPlan(None, groups)


class ReconcilePlan(NamedTuple):
    keep: list[tuple[int, Group]]  # existing id whose message set is unchanged
    create: list[Group]
    delete: list[int]  # existing ids that no longer match any group


def reconcile(groups: Sequence[Group], existing: dict[int, frozenset[int]]) -> ReconcilePlan:
    """Match a fresh split against existing conversations by exact message set."""
    by_set = {members: cid for cid, members in existing.items()}
    keep: list[tuple[int, Group]] = []
    create: list[Group] = []
    used: set[int] = set()
    for group in groups:
        cid = by_set.get(frozenset(group.message_ids))
        if cid is not None and cid not in used:
            keep.append((cid, group))
            used.add(cid)
        else:
            create.append(group)
    delete = sorted(cid for cid in existing if cid not in used)
    return ReconcilePlan(keep, create, delete)
