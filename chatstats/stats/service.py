"""The statistics of CONTRACT.md, computed from trigger-kept buckets and indexed reads.

Why this shape: the overview sums 15-minute UTC buckets (schema 0007) and reads only the
partial buckets at the edges of `since`/`until` from messages, so it is exact without scanning
the history. A chat's or contact's figures need message order (conversations, replies,
streaks), so they read that chat's messages through the chat/date index. Local days and hours
come from zoneinfo at query time, so changing CHATSTATS_TIMEZONE needs no re-import.
`since` is inclusive, `until` exclusive.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from chatstats.db import Database, word_count
from chatstats.errors import NotFound
from chatstats.stats import store, summary

MIN_NS = -(2**63)
MAX_NS = 2**63 - 1
REACTION_TYPES = (
    "loved",
    "liked",
    "disliked",
    "laughed",
    "emphasized",
    "questioned",
    "emoji",
    "sticker",
)


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    moment = datetime(1970, 1, 1) + timedelta(microseconds=ns // 1000)
    return moment.isoformat(timespec="microseconds") + "Z"


def local(ns: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ns // 1000 / 1e6, tz=UTC).astimezone(zone)


def local_year_start_ns(year: int, zone: ZoneInfo) -> int:
    """The instant local 1 January of `year` begins (a 15-minute boundary in every real zone)."""
    return int(datetime(year, 1, 1, tzinfo=zone).timestamp()) * 1_000_000_000


def median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    n = len(s)
    return float(s[n // 2]) if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def p90(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    rank = -(-9 * len(s) // 10)  # nearest rank: ceil(0.9 n)
    return float(s[rank - 1])


def streaks(days: list[date], today: date) -> dict[str, Any]:
    longest, start, run, run_start = 0, None, 0, None
    prev: date | None = None
    for d in days:
        if prev is not None and d - prev == timedelta(days=1):
            run += 1
        else:
            run, run_start = 1, d
        if run > longest:
            longest, start = run, run_start
        prev = d
    current = run if prev is not None and (today - prev).days in (0, 1) else 0
    return {
        "longest_days": longest,
        "longest_start": start.isoformat() if start else None,
        "current_days": current,
    }


# ---------------------------------------------------------------------------------------------
# Overview


def _edge_counts(conn: sqlite3.Connection, a: int, b: int) -> list[sqlite3.Row]:
    """Messages in [a, b), a span inside one or two partial buckets: read exactly."""
    if a >= b:
        return []
    lo, hi = a // store.BUCKET_NS, (b - 1) // store.BUCKET_NS + 1
    rows: list[sqlite3.Row] = []
    for (chat,) in conn.execute(store.CHATS_IN_BUCKETS, {"lo": lo, "hi": hi}).fetchall():
        rows += conn.execute(store.EDGE, {"chat": chat, "a": a, "b": b}).fetchall()
    return rows


def _span(conn: sqlite3.Connection, since: int, until: int) -> tuple[int, int, list[sqlite3.Row]]:
    """Whole buckets [lo, hi) inside [since, until), plus the exact rows of the partial edges."""
    lo = -(-since // store.BUCKET_NS)
    hi = until // store.BUCKET_NS
    if lo >= hi:
        return 0, 0, _edge_counts(conn, since, until)
    edges = _edge_counts(conn, since, lo * store.BUCKET_NS) + _edge_counts(
        conn, hi * store.BUCKET_NS, until
    )
    return lo, hi, edges


def _month_start(ns: int) -> tuple[int, int]:
    """(YYYYMM, start ns) of the UTC month holding ns."""
    t = datetime(1970, 1, 1) + timedelta(microseconds=ns // 1000)
    start = datetime(t.year, t.month, 1)
    return t.year * 100 + t.month, (start - datetime(1970, 1, 1)) // timedelta(
        microseconds=1
    ) * 1000


def _next_month(ym: int) -> int:
    y, m = divmod(ym, 100)
    return (y + 1) * 100 + 1 if m == 12 else ym + 1


def _month_ns(ym: int) -> int:
    y, m = divmod(ym, 100)
    return (datetime(y, m, 1) - datetime(1970, 1, 1)) // timedelta(microseconds=1) * 1000


def _totals(conn: sqlite3.Connection, a: int, b: int) -> tuple[Counter[tuple[int, int]], set[int]]:
    """Messages in [a, b) per (chat, side) and the contacts who sent: whole UTC months from
    stats_months, the rest from 15-minute buckets, the partial buckets from messages."""
    per: Counter[tuple[int, int]] = Counter()
    contacts: set[int] = set()
    if a >= b:
        return per, contacts
    ym, start = _month_start(a)
    first_full = ym if start == a else _next_month(ym)
    last_ym, last_start = _month_start(b)  # months before last_ym end by b
    spans = [(a, b)]
    if first_full < last_ym:
        spans = [(a, _month_ns(first_full)), (last_start, b)]
        for r in conn.execute(store.MONTH_TOTALS, {"lo": first_full, "hi": last_ym}):
            per[(r["chat_id"], r["is_from_me"])] += r["n"]
        contacts |= {
            r[0] for r in conn.execute(store.MONTH_CONTACTS, {"lo": first_full, "hi": last_ym})
        }
    for x, y in spans:
        if x >= y:
            continue
        lo, hi, edges = _span(conn, x, y)
        for r in conn.execute(store.BUCKET_TOTALS, {"lo": lo, "hi": hi}):
            per[(r["chat_id"], r["is_from_me"])] += r["n"]
        contacts |= {r[0] for r in conn.execute(store.BUCKET_CONTACTS, {"lo": lo, "hi": hi})}
        for e in edges:
            per[(e["chat_id"], e["is_from_me"])] += 1
            if not e["is_from_me"] and e["contact_id"] is not None:
                contacts.add(e["contact_id"])
    return per, contacts


def overview(conn: sqlite3.Connection, zone: ZoneInfo, since: int, until: int) -> dict[str, Any]:
    rng = conn.execute(store.BUCKET_RANGE).fetchone()
    if rng["lo"] is not None:  # clamp to the data, so open bounds stay cheap
        since = max(since, rng["lo"] * store.BUCKET_NS)
        until = min(until, (rng["hi"] + 1) * store.BUCKET_NS)
    per, contacts = _totals(conn, since, until)
    per_chat: Counter[int] = Counter()
    sides = [0, 0]
    for (chat, side), n in per.items():
        per_chat[chat] += n
        sides[side] += n
    chats = [c for c, n in per_chat.items() if n > 0]
    first = min(
        (
            v
            for c in chats
            if (
                v := store.one_value(conn, store.FIRST_IN_CHAT, {"chat": c, "a": since, "b": until})
            )
            is not None
        ),
        default=None,
    )
    last = max(
        (
            v
            for c in chats
            if (v := store.one_value(conn, store.LAST_IN_CHAT, {"chat": c, "a": since, "b": until}))
            is not None
        ),
        default=None,
    )
    by_year = []
    if first is not None and last is not None:
        for year in range(local(int(first), zone).year, local(int(last), zone).year + 1):
            a = max(since, local_year_start_ns(year, zone))
            b = min(until, local_year_start_ns(year + 1, zone))
            ys = [0, 0]
            for (_chat, side), n in _totals(conn, a, b)[0].items():
                ys[side] += n
            if ys[0] or ys[1]:
                by_year.append({"year": year, "sent": ys[1], "received": ys[0]})
    top = sorted(chats, key=lambda c: (-per_chat[c], c))[:10]
    titles = {
        r["id"]: r["display_name"] or r["chat_identifier"]
        for r in conn.execute(store.CHAT_TITLES, {"ids": "[" + ",".join(map(str, top)) + "]"})
    }
    return {
        "timezone": zone.key,
        "messages": sides[0] + sides[1],
        "sent": sides[1],
        "received": sides[0],
        "chats": len(chats),
        "contacts": len(contacts),
        "first_message_time": iso(None if first is None else int(first)),
        "last_message_time": iso(None if last is None else int(last)),
        "by_year": by_year,
        "top_chats": [{"chat_id": c, "title": titles.get(c), "messages": per_chat[c]} for c in top],
    }


# ---------------------------------------------------------------------------------------------
# One chat or contact


def _reactions(
    conn: sqlite3.Connection, chats: set[int], a: int, b: int
) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for chat in chats:
        for r in conn.execute(store.CHAT_REACTIONS, {"chat": chat, "a": a, "b": b}):
            out[r[0]].append((r[1], r[2]))
    return out


class _Clock:
    """Local date, weekday and hour per 15-minute UTC bucket, memoised: every real offset is a
    multiple of 15 minutes, so one conversion serves every message of the bucket."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.memo: dict[int, tuple[date, int, int]] = {}

    def __call__(self, ns: int) -> tuple[date, int, int]:
        k = ns // store.BUCKET_NS
        got = self.memo.get(k)
        if got is None:
            t = local(k * store.BUCKET_NS, self.zone)
            got = self.memo[k] = (t.date(), t.weekday(), t.hour)
        return got


def _figures(
    conn: sqlite3.Connection,
    zone: ZoneInfo,
    rows: list[sqlite3.Row],
    today: date,
    a: int = MIN_NS,
    b: int = MAX_NS,
) -> dict[str, Any]:
    """Every figure of the chat/contact shape from the counted messages (time-ordered per chat)."""
    by_sender: dict[tuple[int | None, int], list[int]] = defaultdict(lambda: [0, 0])
    by_day: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    how = [[0] * 24 for _ in range(7)]
    convs: dict[int, list[sqlite3.Row]] = defaultdict(list)
    given: Counter[str] = Counter()
    received: Counter[str] = Counter()
    tapbacks = _reactions(conn, {r["chat_id"] for r in rows}, a, b)
    clock = _Clock(zone)
    for r in rows:
        mine = r["is_from_me"]
        key = (None if mine else r["contact_id"], mine)
        by_sender[key][0] += 1
        by_sender[key][1] += word_count(r["text"])
        day, weekday, hour = clock(r["date_ns"])
        by_day[day][0 if mine else 1] += 1
        how[weekday][hour] += 1
        if r["conversation_id"] is not None:
            convs[r["conversation_id"]].append(r)
        for kind, by_me in tapbacks.get(r["guid"], ()):
            if by_me and not mine:
                given[kind] += 1
            elif not by_me and mine:
                received[kind] += 1
    me_rt: list[float] = []
    them_rt: list[float] = []
    by_me = 0
    sizes = []
    for msgs in convs.values():
        sizes.append(len(msgs))
        by_me += msgs[0]["is_from_me"]
        for prev, cur in pairwise(msgs):
            if prev["is_from_me"] != cur["is_from_me"]:
                gap = (cur["date_ns"] - prev["date_ns"]) / 1e9
                (me_rt if cur["is_from_me"] else them_rt).append(gap)
    sent = sum(v[0] for k, v in by_sender.items() if k[1])
    total = len(rows)
    days = sorted(by_day)
    return {
        "timezone": zone.key,
        "messages": total,
        "sent": sent,
        "received": total - sent,
        "first_message_time": iso(min((r["date_ns"] for r in rows), default=None)),
        "last_message_time": iso(max((r["date_ns"] for r in rows), default=None)),
        "by_sender": [
            {"contact_id": k[0], "is_from_me": bool(k[1]), "messages": v[0], "words": v[1]}
            for k, v in sorted(by_sender.items(), key=lambda kv: (-kv[1][0], kv[0][0] or 0))
        ],
        "by_day": [
            {"date": d.isoformat(), "sent": by_day[d][0], "received": by_day[d][1]} for d in days
        ],
        "hour_of_week": how,
        "conversations": {
            "count": len(sizes),
            "started_by_me": by_me,
            "started_by_them": len(sizes) - by_me,
            "median_messages": median([float(s) for s in sizes]),
        },
        "response_times": {
            side: {"n": len(xs), "median_s": median(xs), "p90_s": p90(xs)}
            for side, xs in (("me", me_rt), ("them", them_rt))
        },
        "reactions": {
            "given": dict(sorted(given.items())),
            "received": dict(sorted(received.items())),
        },
        "streaks": streaks(days, today),
    }


def chat_stats(
    conn: sqlite3.Connection, zone: ZoneInfo, chat_id: int, since: int, until: int, today: date
) -> dict[str, Any]:
    if conn.execute(store.CHAT, {"id": chat_id}).fetchone() is None:
        raise NotFound(f"no chat with id {chat_id}")
    parts = summary.Parts()
    summary.chat_part(conn, parts, chat_id, since, until)
    return summary.finish(conn, zone, parts, today)


def contact_stats(
    conn: sqlite3.Connection, zone: ZoneInfo, contact_id: int, since: int, until: int, today: date
) -> dict[str, Any]:
    """Their messages in every chat they are in, and mine in their 1:1 chats.

    A 1:1 chat whose other messages all come from the contact's handles is the chat's own
    figures; in a group chat only their messages count. A 1:1 chat that also holds someone
    else's messages (an unmerged handle) matches no summary and is read exactly."""
    if conn.execute(store.CONTACT, {"id": contact_id}).fetchone() is None:
        raise NotFound(f"no contact with id {contact_id}")
    handles = frozenset(r[0] for r in conn.execute(store.CONTACT_HANDLES, {"contact": contact_id}))
    parts = summary.Parts()
    for chat in conn.execute(store.CONTACT_CHATS, {"contact": contact_id}).fetchall():
        cid = chat["id"]
        if chat["is_group"]:
            summary.chat_part(conn, parts, cid, since, until, handles)
            continue
        senders = {r[0] for r in conn.execute(store.CHAT_SENDERS, {"chat": cid})}
        if senders <= handles:
            summary.chat_part(conn, parts, cid, since, until)
            continue
        rows = [
            (r["date_ns"], r["handle"], r["is_from_me"], r["text"], r["guid"], r["conversation_id"])
            for r in conn.execute(store.CHAT_ROWS, {"chat": cid, "a": since, "b": until})
            if r["is_from_me"] or r["handle"] in handles
        ]
        summary.rows_part(conn, parts, cid, rows, since, until)
    return summary.finish(conn, zone, parts, today)


def wrapped(conn: sqlite3.Connection, zone: ZoneInfo, year: int, today: date) -> dict[str, Any]:
    """The year in messages: the overview of the year and the year before, plus its highlights."""
    a, b = local_year_start_ns(year, zone), local_year_start_ns(year + 1, zone)
    this = overview(conn, zone, a, b)
    before = overview(conn, zone, local_year_start_ns(year - 1, zone), a)
    rows: list[sqlite3.Row] = []
    lo, hi = a // store.BUCKET_NS, -(-b // store.BUCKET_NS)
    for (chat,) in conn.execute(store.CHATS_IN_BUCKETS, {"lo": lo, "hi": hi}).fetchall():
        rows += conn.execute(store.CHAT_MESSAGES, {"chat": chat, "a": a, "b": b}).fetchall()
    fig = _figures(conn, zone, rows, today, a, b)
    people: Counter[int] = Counter(
        r["contact_id"] for r in rows if not r["is_from_me"] and r["contact_id"] is not None
    )
    most_reacted = None
    tapbacks = _reactions(conn, {r["chat_id"] for r in rows}, a, b)
    for r in rows:
        n = len(tapbacks.get(r["guid"], ()))
        if n and (most_reacted is None or n > most_reacted["reactions"]):
            most_reacted = {"message_id": r["id"], "chat_id": r["chat_id"], "reactions": n}
    replies: dict[int, list[float]] = defaultdict(list)
    by_conv: dict[int, list[sqlite3.Row]] = defaultdict(list)
    for r in rows:
        if r["conversation_id"] is not None:
            by_conv[r["conversation_id"]].append(r)
    for msgs in by_conv.values():
        for prev, cur in pairwise(msgs):
            if prev["is_from_me"] and not cur["is_from_me"] and cur["contact_id"] is not None:
                replies[cur["contact_id"]].append((cur["date_ns"] - prev["date_ns"]) / 1e9)
    fastest = min(
        ((k, median(v)) for k, v in replies.items() if len(v) >= 3),
        key=lambda kv: (kv[1], kv[0]),
        default=None,
    )
    busiest = max(fig["by_day"], key=lambda d: (d["sent"] + d["received"], d["date"]), default=None)
    hours = [sum(fig["hour_of_week"][d][h] for d in range(7)) for h in range(24)]
    return {
        "timezone": zone.key,
        "year": year,
        "messages": this["messages"],
        "sent": this["sent"],
        "received": this["received"],
        "chats": this["chats"],
        "contacts": this["contacts"],
        "top_chats": this["top_chats"],
        "top_people": [
            {"contact_id": k, "messages": n}
            for k, n in sorted(people.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        ],
        "fastest_responder": None
        if fastest is None
        else {"contact_id": fastest[0], "median_s": fastest[1]},
        "most_reacted_message": most_reacted,
        "busiest_day": busiest,
        "streaks": fig["streaks"],
        "response_times": fig["response_times"],
        "top_hour": max(range(24), key=lambda h: (hours[h], -h)) if any(hours) else None,
        "previous_year": {
            "year": year - 1,
            "messages": before["messages"],
            "sent": before["sent"],
            "received": before["received"],
        },
    }


class Stats:
    """The statistics service the routes and the CLI call (reads only)."""

    def __init__(self, db: Database, zone: ZoneInfo) -> None:
        self._db = db
        self.zone = zone

    def _today(self) -> date:
        return datetime.now(self.zone).date()

    async def overview(self, since: int | None, until: int | None) -> dict[str, Any]:
        return await self._db.read(overview, self.zone, _lo(since), _hi(until))

    async def chat(self, chat_id: int, since: int | None, until: int | None) -> dict[str, Any]:
        return await self._db.read(
            chat_stats, self.zone, chat_id, _lo(since), _hi(until), self._today()
        )

    async def contact(
        self, contact_id: int, since: int | None, until: int | None
    ) -> dict[str, Any]:
        return await self._db.read(
            contact_stats, self.zone, contact_id, _lo(since), _hi(until), self._today()
        )

    async def wrapped(self, year: int) -> dict[str, Any]:
        return await self._db.read(wrapped, self.zone, year, self._today())


def _lo(ns: int | None) -> int:
    return MIN_NS if ns is None else ns


def _hi(ns: int | None) -> int:
    return MAX_NS if ns is None else ns
