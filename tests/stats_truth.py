"""A plain reimplementation of CONTRACT.md's statistics from a sample library's truth.

Independent of chatstats.stats on purpose: it walks the truth's messages and reactions with
the definitions as written, and takes only id mappings (chat guid -> id, handle -> contact)
from the app database.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from chatstats.sample.truth import Truth, TruthMessage

GAP_NS = 90 * 60 * 1_000_000_000


def ids(conn: sqlite3.Connection) -> tuple[dict[str, int], dict[str, int | None], dict[int, bool]]:
    chats = {g: i for i, g in conn.execute("SELECT id, guid FROM chats")}
    groups = {i: bool(g) for i, g in conn.execute("SELECT id, is_group FROM chats")}
    contact = {h: c for h, c in conn.execute("SELECT identifier, contact_id FROM handles")}
    return chats, contact, groups


def _local(ns: int, zone: ZoneInfo) -> datetime:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)).astimezone(zone)


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return (datetime(1970, 1, 1) + timedelta(microseconds=ns // 1000)).isoformat(
        timespec="microseconds"
    ) + "Z"


def messages(truth: Truth, since: int, until: int) -> list[TruthMessage]:
    return [
        m
        for m in truth.messages
        if m.kind == "message" and m.chat_guid is not None and since <= m.date_ns < until
    ]


def _words(m: TruthMessage) -> int:
    return len(m.text.split()) if m.text and not m.unsent else 0


def overview(
    truth: Truth, conn: sqlite3.Connection, zone: ZoneInfo, since: int, until: int
) -> dict[str, Any]:
    chats, contact, _ = ids(conn)
    ms = messages(truth, since, until)
    per_chat = Counter(chats[m.chat_guid] for m in ms if m.chat_guid)
    years: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for m in ms:
        years[_local(m.date_ns, zone).year][0 if m.is_from_me else 1] += 1
    titles = chat_titles(conn)
    top = sorted(per_chat, key=lambda c: (-per_chat[c], c))[:10]
    return {
        "timezone": zone.key,
        "messages": len(ms),
        "sent": sum(m.is_from_me for m in ms),
        "received": sum(not m.is_from_me for m in ms),
        "chats": len(per_chat),
        "contacts": len(
            {
                contact[m.sender]
                for m in ms
                if not m.is_from_me and m.sender and contact.get(m.sender) is not None
            }
        ),
        "first_message_time": _iso(min((m.date_ns for m in ms), default=None)),
        "last_message_time": _iso(max((m.date_ns for m in ms), default=None)),
        "by_year": [{"year": y, "sent": v[0], "received": v[1]} for y, v in sorted(years.items())],
        "top_chats": [{"chat_id": c, "title": titles[c], "messages": per_chat[c]} for c in top],
    }


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    n = len(s)
    return float(s[n // 2]) if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _p90(xs: list[float]) -> float | None:
    return float(sorted(xs)[math.ceil(0.9 * len(xs)) - 1]) if xs else None


def figures(
    truth: Truth, conn: sqlite3.Connection, zone: ZoneInfo, ms: list[TruthMessage], today: date
) -> dict[str, Any]:
    """The chat/contact shape from the counted messages `ms`."""
    _, contact, _ = ids(conn)
    ms = sorted(ms, key=lambda m: m.date_ns)
    by_sender: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    by_day: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    how = [[0] * 24 for _ in range(7)]
    for m in ms:
        k = (None if m.is_from_me else contact.get(m.sender or ""), m.is_from_me)
        by_sender[k][0] += 1
        by_sender[k][1] += _words(m)
        t = _local(m.date_ns, zone)
        by_day[t.date()][0 if m.is_from_me else 1] += 1
        how[t.weekday()][t.hour] += 1
    # Conversations: the 90-minute rule over each chat's own messages (all of them).
    conv_of: dict[str, int] = {}
    n = 0
    per_chat: dict[str, list[TruthMessage]] = defaultdict(list)
    for m in truth.messages:
        if m.kind == "message" and m.chat_guid:
            per_chat[m.chat_guid].append(m)
    for chat_ms in per_chat.values():
        prev = None
        for m in sorted(chat_ms, key=lambda m: m.date_ns):
            if prev is None or m.date_ns - prev > GAP_NS:
                n += 1
            conv_of[m.guid] = n
            prev = m.date_ns
    convs: dict[int, list[TruthMessage]] = defaultdict(list)
    for m in ms:
        convs[conv_of[m.guid]].append(m)
    me, them = [], []
    for c in convs.values():
        for a, b in pairwise(c):
            if a.is_from_me != b.is_from_me:
                (me if b.is_from_me else them).append((b.date_ns - a.date_ns) / 1e9)
    counted = {m.guid: m for m in ms}
    given: Counter[str] = Counter()
    received: Counter[str] = Counter()
    for r in truth.reactions:
        target = counted.get(r.target_guid)
        if target is None:
            continue
        if r.is_from_me and not target.is_from_me:
            given[r.type] += 1
        elif not r.is_from_me and target.is_from_me:
            received[r.type] += 1
    days = sorted(by_day)
    longest, start, run, run_start, prev_d = 0, None, 0, None, None
    for d in days:
        run, run_start = (run + 1, run_start) if prev_d and (d - prev_d).days == 1 else (1, d)
        if run > longest:
            longest, start = run, run_start
        prev_d = d
    sizes = [len(c) for c in convs.values()]
    by_me = sum(c[0].is_from_me for c in convs.values())
    return {
        "timezone": zone.key,
        "messages": len(ms),
        "sent": sum(m.is_from_me for m in ms),
        "received": sum(not m.is_from_me for m in ms),
        "first_message_time": _iso(ms[0].date_ns if ms else None),
        "last_message_time": _iso(ms[-1].date_ns if ms else None),
        "by_sender": sorted(
            [
                {"contact_id": k[0], "is_from_me": k[1], "messages": v[0], "words": v[1]}
                for k, v in by_sender.items()
            ],
            key=lambda x: (-x["messages"], x["contact_id"] or 0),
        ),
        "by_day": [
            {"date": d.isoformat(), "sent": by_day[d][0], "received": by_day[d][1]} for d in days
        ],
        "hour_of_week": how,
        "conversations": {
            "count": len(sizes),
            "started_by_me": by_me,
            "started_by_them": len(sizes) - by_me,
            "median_messages": _median([float(s) for s in sizes]),
        },
        "response_times": {
            "me": {"n": len(me), "median_s": _median(me), "p90_s": _p90(me)},
            "them": {"n": len(them), "median_s": _median(them), "p90_s": _p90(them)},
        },
        "reactions": {
            "given": dict(sorted(given.items())),
            "received": dict(sorted(received.items())),
        },
        "streaks": {
            "longest_days": longest,
            "longest_start": start.isoformat() if start else None,
            "current_days": run if prev_d and (today - prev_d).days in (0, 1) else 0,
        },
    }


def chat_messages(truth: Truth, chat_guid: str, since: int, until: int) -> list[TruthMessage]:
    return [m for m in messages(truth, since, until) if m.chat_guid == chat_guid]


def contact_messages(
    truth: Truth, conn: sqlite3.Connection, contact_id: int, since: int, until: int
) -> list[TruthMessage]:
    _, contact, _ = ids(conn)
    theirs = {
        t.guid
        for t in truth.chats
        if not t.is_group and any(contact.get(p) == contact_id for p in t.participants)
    }
    out = []
    for m in messages(truth, since, until):
        if (not m.is_from_me and contact.get(m.sender or "") == contact_id) or (
            m.is_from_me and m.chat_guid in theirs
        ):
            out.append(m)
    return out


def chat_titles(conn: sqlite3.Connection) -> dict[int, str]:
    """Every chat's title as the library (/api/chats) names it: stats' top chats match."""
    from chatstats.library.service import Person, chat_title
    from chatstats.library.store import participants

    people: dict[int, list[Person]] = defaultdict(list)
    for p in participants(conn, [r[0] for r in conn.execute("SELECT id FROM chats")]):
        people[p["chat_id"]].append(
            Person(contact_id=p["contact_id"], name=p["name"], identifier=p["identifier"])
        )
    return {
        r[0]: chat_title(r[1], bool(r[2]), people[r[0]]) or r[3] or r[4]
        for r in conn.execute("SELECT id, display_name, is_group, chat_identifier, guid FROM chats")
    }
