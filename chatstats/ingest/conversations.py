"""Conversations: a chat's messages split wherever 90 minutes pass in silence.

Two algorithms, as in the seeds, both pure so they can be property-tested:
- `append`: live sync and imports that only add newer messages extend the chat's last
  conversation or open new ones; nothing older changes.
- `split` + `reconcile` ("fresh split & compare"): when older messages arrive (an iPhone
  backup interleaving with what a Mac already had), re-split the chat's whole history and
  keep each existing conversation id whose message set came out unchanged, or grew.

Both decide by message times alone, so they always agree with a fresh split: a message
within 90 minutes of a conversation joins it even when that conversation was already sealed
(a late message: delivered after a phone was offline, or synced from another device). The
caller then reopens it (chatstats/ingest/sealer.py) rather than starting a new one.

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
    reopen: bool = False  # the extended conversation was sealed


def append(last: Open | None, points: Sequence[Point], gap_ns: int = GAP_NS) -> AppendPlan:
    """New messages, all at or after the chat's newest one, onto its last conversation.

    Sealed or not: a sealed conversation that a message comes within the gap of is reopened.
    """
    groups = split(points, gap_ns)
    if not groups:
        return AppendPlan(None, [])
    first = groups[0]
    if last is not None and first.start_ns - last.end_ns <= gap_ns:
        extend = (last.conversation_id, first.end_ns, first.message_ids)
        return AppendPlan(extend, groups[1:], last.sealed)
    return AppendPlan(None, groups)


class ReconcilePlan(NamedTuple):
    keep: list[tuple[int, Group]]  # existing id whose message set is unchanged
    create: list[Group]
    delete: list[int]  # existing ids that no longer match any group
    grow: list[tuple[int, Group]]  # existing id whose messages all lie in a larger group


def reconcile(groups: Sequence[Group], existing: dict[int, frozenset[int]]) -> ReconcilePlan:
    """Match a fresh split against existing conversations.

    An unchanged message set keeps its id. Otherwise a group that holds all of an existing
    conversation's messages grows it (the one with the most, when older messages merged
    several; the others are deleted), so its id, and what was analysed under it, survive.
    Adding messages can only merge groups, never split them, so with additions alone every
    existing conversation is kept, grown or merged away, and nothing is created from one.
    """
    by_set = {members: cid for cid, members in existing.items()}
    owner = {m: cid for cid, members in existing.items() for m in members}
    keep: list[tuple[int, Group]] = []
    grow: list[tuple[int, Group]] = []
    create: list[Group] = []
    used: set[int] = set()
    pending: list[Group] = []
    for group in groups:
        cid = by_set.get(frozenset(group.message_ids))
        if cid is not None and cid not in used:
            keep.append((cid, group))
            used.add(cid)
        else:
            pending.append(group)
    for group in pending:
        members = frozenset(group.message_ids)
        inside = {owner[m] for m in group.message_ids if m in owner} - used
        whole = [cid for cid in inside if existing[cid] <= members]
        if whole:
            cid = min(whole, key=lambda c: (-len(existing[c]), c))
            grow.append((cid, group))
            used.add(cid)
        else:
            create.append(group)
    delete = sorted(cid for cid in existing if cid not in used)
    return ReconcilePlan(keep, create, delete, grow)
