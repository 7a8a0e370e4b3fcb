"""The statistics of CONTRACT.md, computed from trigger-kept buckets and indexed reads.

Why this shape: a range is cut into whole UTC months (summed with numpy from schema 0015's
month packs, one read per answer), whole 15-minute UTC buckets (schema 0007) and the partial
buckets at the edges of `since`/`until`, read exactly from messages; so every figure is
exact without scanning the history. A year in messages reads its local days and hours from
per-UTC-day bucket packs and its replies from per-UTC-day reply packs (0015). A chat's or
contact's figures come from the per-chat summaries (summary.py). Local days and hours come
from zoneinfo at query time, so changing CHATSTATS_TIMEZONE needs no re-import.
`since` is inclusive, `until` exclusive.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

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


def _year_ns(year: int) -> int:
    return _month_ns(year * 100 + 1)


Span = tuple[int, int, list[sqlite3.Row], int]  # whole buckets [lo, hi), edge rows, sign


def _pieces(
    conn: sqlite3.Connection, a: int, b: int
) -> tuple[tuple[int, int] | None, list[tuple[int, int]], list[Span]]:
    """[a, b) as whole UTC years, whole UTC months (YYYYMM ranges), whole buckets and exact
    edge rows: the coarsest summary that covers each stretch. A month cut by a bound is its
    rollup minus the buckets it has outside [a, b) when those are the fewer (sign -1): a
    local year then reads hours of buckets at its ends, not weeks."""
    years = None
    outer = [(a, b)]
    if a < b:
        ya, yb = _month_start(a)[0] // 100, _month_start(b)[0] // 100
        first_full = ya if _year_ns(ya) == a else ya + 1
        if first_full < yb:
            years = (first_full, yb)
            outer = [(a, _year_ns(first_full)), (_year_ns(yb), b)]
    months: list[tuple[int, int]] = []
    spans: list[Span] = []

    def part(ym: int, x: int, y: int) -> None:
        """[x, y) inside month ym: its buckets, or the month less the rest of it."""
        m0, m1 = _month_ns(ym), _month_ns(_next_month(ym))
        if (x - m0) + (m1 - y) < y - x:
            months.append((ym, _next_month(ym)))
            spans.extend((*_span(conn, u, v), -1) for u, v in ((m0, x), (y, m1)) if u < v)
        else:
            spans.append((*_span(conn, x, y), 1))

    for x, y in outer:
        if x >= y:
            continue
        ym, start = _month_start(x)
        last_ym, last_start = _month_start(y)  # months before last_ym end by y
        if ym == last_ym:
            part(ym, x, y)
            continue
        first_month = ym if start == x else _next_month(ym)
        if start != x:
            part(ym, x, _month_ns(first_month))
        if first_month < last_ym:
            months.append((first_month, last_ym))
        if last_start < y:
            part(last_ym, last_start, y)
    return years, months, spans


# The month packs as last loaded on each read-only connection, with the PRAGMA data_version
# they were read at: another connection's commit changes it, so a pack is reused only while
# the database is unchanged (read-only connections never change it themselves).
_LOADED: dict[int, tuple[sqlite3.Connection, int, Any]] = {}


def _read_version(conn: sqlite3.Connection) -> int | None:
    """The data_version of a query-only connection (inside its read snapshot), else None:
    a connection that writes would not see its own changes in it."""
    if not conn.execute("PRAGMA query_only").fetchone()[0]:
        return None
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


RangeSums = tuple[Counter[tuple[int, int]], Counter[int], Counter[int]]


class Months:
    """stats_month_packs (schema 0015) as arrays, read once per answer on first use: every
    whole UTC month and year of a range is then a numpy mask over ~20k (month, messages)
    pairs instead of a GROUP BY over stats_months or stats_years."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._loaded = False
        self.memo: dict[tuple[int, int, bool], RangeSums] = {}
        self.people: dict[tuple[int, int], Counter[int]] = {}

    def _load(self) -> None:
        conn = self._conn
        version = _read_version(conn)
        got = _LOADED.get(id(conn))
        if version is not None and got is not None and got[0] is conn and got[1] == version:
            self.keys, self.month, self.n, self.row, self.side, self._groups = got[2]
            self._loaded = True
            return
        heads, packs = conn.execute(store.MONTH_PACKS).fetchone()
        head = summary.hex_ints(heads).reshape(-1, 4)  # chat, handle, side, pairs
        self.keys = [(c, h, s) for c, h, s, _n in head.tolist()]
        flat = summary.hex_ints(packs, 8).reshape(-1, 2)
        self.month = flat[:, 0]
        self.n = flat[:, 1]
        self.row = np.repeat(np.arange(len(head), dtype=np.int64), head[:, 3])
        self.side = head[:, 2].copy()
        # Each pack's (chat, side) and, for received ones, handle, as group indexes: the
        # sums per chat and per sender are then bincounts, not a loop over the packs.
        chat_side = head[:, 0] * 2 + head[:, 2]
        cs_ids, cs_of = np.unique(chat_side, return_inverse=True)
        theirs = np.flatnonzero(head[:, 2] == 0)
        h_ids, h_of = np.unique(head[theirs, 1], return_inverse=True)
        self._groups = (
            [(int(k) // 2, int(k) % 2) for k in cs_ids],
            cs_of,
            h_ids.tolist(),
            h_of,
            theirs,
        )
        self._loaded = True
        if version is not None:
            _LOADED[id(conn)] = (
                conn,
                version,
                (self.keys, self.month, self.n, self.row, self.side, self._groups),
            )
            while len(_LOADED) > 8:
                _LOADED.pop(next(iter(_LOADED)))

    def sums(
        self, ranges: list[tuple[int, int]]
    ) -> tuple[dict[tuple[int, int], int], dict[int, int], list[int]]:
        """Messages in the union of disjoint YYYYMM ranges [lo, hi): per (chat, side), per
        sender handle (received only), and [received, sent]."""
        if not ranges:
            return {}, {}, [0, 0]
        if not self._loaded:
            self._load()
        keep = np.zeros(len(self.month), dtype=bool)
        for lo, hi in ranges:
            keep |= (self.month >= lo) & (self.month < hi)
        per_pack = np.bincount(self.row[keep], weights=self.n[keep], minlength=len(self.keys))
        cs_keys, cs_of, h_keys, h_of, theirs = self._groups
        cs = np.bincount(cs_of, weights=per_pack, minlength=len(cs_keys)).astype(np.int64)
        hs = np.bincount(h_of, weights=per_pack[theirs], minlength=len(h_keys)).astype(np.int64)
        sides = np.bincount(self.side, weights=per_pack, minlength=2).astype(np.int64)
        nz = np.flatnonzero(cs).tolist()
        per = dict(zip([cs_keys[i] for i in nz], cs[nz].tolist(), strict=True))
        nh = np.flatnonzero(hs).tolist()
        per_handle = dict(zip([h_keys[i] for i in nh], hs[nh].tolist(), strict=True))
        return per, per_handle, sides.tolist()

    def years_sides(self) -> dict[int, list[int]]:
        """{UTC year: [received, sent]} over all time."""
        if not self._loaded:
            self._load()
        out: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        if not len(self.month):
            return out
        y0 = int(self.month.min()) // 100
        key = (self.month // 100 - y0) * 2 + self.side[self.row]
        sums = np.bincount(key, weights=self.n)
        for k in np.flatnonzero(sums).tolist():
            out[y0 + k // 2][k % 2] += int(sums[k])
        return out


def _range_sums(
    conn: sqlite3.Connection, months: Months, a: int, b: int, detail: bool = True
) -> tuple[Counter[tuple[int, int]], Counter[int], Counter[int]]:
    """Messages in [a, b) per (chat, side), received per sender handle, and received per
    contact from the exact edges: whole UTC years and months from the month packs, the rest
    from 15-minute buckets (signed: a month less its buckets outside), the partial buckets
    from messages. Handles are mapped to contacts by the caller, after the signed sums.
    Without `detail`, only the sides: per (0, side), and no senders. Remembered per range
    for the answer (a year in messages asks for its year twice)."""
    memo = months.memo.get((a, b, detail))
    if memo is not None:
        return memo
    per: dict[tuple[int, int], int] = {}
    per_handle: dict[int, int] = {}
    people: dict[int, int] = {}
    if a < b:
        years, month_ranges, spans = _pieces(conn, a, b)
        ranges = list(month_ranges)
        if years is not None:
            ranges.append((years[0] * 100 + 1, years[1] * 100 + 1))
        whole, whole_handles, whole_sides = months.sums(ranges)
        if detail:
            per, per_handle = whole, whole_handles
        else:
            per = {(0, side): n for side, n in enumerate(whole_sides) if n}
        for lo, hi, edges, sign in spans:
            if lo < hi and detail:
                p = {"lo": lo, "hi": hi}
                for chat, handle, side, n in conn.execute(store.BUCKET_KEYS, p):
                    per[(chat, side)] = per.get((chat, side), 0) + sign * n
                    if not side:
                        per_handle[handle] = per_handle.get(handle, 0) + sign * n
            elif lo < hi:
                for _zero, side, n in conn.execute(store.BUCKET_SIDES_CHAT, {"lo": lo, "hi": hi}):
                    per[(0, side)] = per.get((0, side), 0) + sign * n
            for e in edges:
                k = (e["chat_id"] if detail else 0, e["is_from_me"])
                per[k] = per.get(k, 0) + sign
                if detail and not e["is_from_me"] and e["contact_id"] is not None:
                    people[e["contact_id"]] = people.get(e["contact_id"], 0) + sign
    got = (Counter(per), Counter(per_handle), Counter(people))
    months.memo[(a, b, detail)] = got
    return got


def _contacts_in(
    conn: sqlite3.Connection, per_handle: Counter[int], people: Counter[int]
) -> Counter[int]:
    """Received messages per contact: the handles' signed sums mapped, plus the edges'."""
    out = dict(people)
    contact_of = _contacts_of(conn, [h for h, n in per_handle.items() if n])
    for h, n in per_handle.items():
        k = contact_of.get(h)
        if k is not None:
            out[k] = out.get(k, 0) + n
    return Counter({k: n for k, n in out.items() if n > 0})


def _totals(
    conn: sqlite3.Connection, a: int, b: int, months: Months | None = None
) -> tuple[Counter[tuple[int, int]], set[int]]:
    """Messages in [a, b) per (chat, side) and the contacts who sent (see `_range_sums`)."""
    months = months or Months(conn)
    per, _per_handle, _people = _range_sums(conn, months, a, b)
    return per, set(_people_in(conn, months, a, b))


def _people_in(conn: sqlite3.Connection, months: Months, a: int, b: int) -> Counter[int]:
    """Received messages per contact in [a, b), remembered for the answer like the sums."""
    got = months.people.get((a, b))
    if got is None:
        got = months.people[(a, b)] = _contacts_in(conn, *_range_sums(conn, months, a, b)[1:])
    return got


def _sides(conn: sqlite3.Connection, a: int, b: int, months: Months | None = None) -> list[int]:
    """[received, sent] in [a, b)."""
    ys = [0, 0]
    for (_chat, side), n in _range_sums(conn, months or Months(conn), a, b, False)[0].items():
        ys[side] += n
    return ys


def _edge_message(conn: sqlite3.Connection, since: int, until: int, last: bool) -> int | None:
    """The first (or last) message time in [since, until): the first (last) bucket holding
    any, then that bucket's chats read exactly; a bucket cut by the bound may hold none."""
    if since >= until:
        return None
    lo, hi = since // store.BUCKET_NS, (until - 1) // store.BUCKET_NS
    while lo <= hi:
        b = store.one_value(
            conn, store.LAST_BUCKET if last else store.FIRST_BUCKET, {"lo": lo, "hi": hi}
        )
        if b is None:
            return None
        b = int(b)  # type: ignore[call-overload]
        a2 = max(since, b * store.BUCKET_NS)
        b2 = min(until, (b + 1) * store.BUCKET_NS)
        found = [
            int(v)  # type: ignore[call-overload]
            for (chat,) in conn.execute(store.CHATS_IN_BUCKET, {"b": b}).fetchall()
            if (
                v := store.one_value(
                    conn,
                    store.LAST_IN_CHAT if last else store.FIRST_IN_CHAT,
                    {"chat": chat, "a": a2, "b": b2},
                )
            )
            is not None
        ]
        if found:
            return int(max(found) if last else min(found))
        if last:
            hi = b - 1
        else:
            lo = b + 1
    return None


def overview(
    conn: sqlite3.Connection,
    zone: ZoneInfo,
    since: int,
    until: int,
    months: Months | None = None,
) -> dict[str, Any]:
    rng = conn.execute(store.BUCKET_RANGE).fetchone()
    if rng["lo"] is not None:  # clamp to the data, so open bounds stay cheap
        since = max(since, rng["lo"] * store.BUCKET_NS)
        until = min(until, (rng["hi"] + 1) * store.BUCKET_NS)
    months = months or Months(conn)
    per, contacts = _totals(conn, since, until, months)
    per_chat: Counter[int] = Counter()
    sides = [0, 0]
    for (chat, side), n in per.items():
        per_chat[chat] += n
        sides[side] += n
    chats = [c for c, n in per_chat.items() if n > 0]
    first = _edge_message(conn, since, until, last=False) if chats else None
    last = _edge_message(conn, since, until, last=True) if chats else None
    by_year = []
    if first is not None and last is not None:
        utc_years = months.years_sides()
        years = list(range(local(first, zone).year, local(last, zone).year + 1))
        # A whole local year is its UTC year, give or take the hours between the two new
        # years at each end: whole buckets, summed for every year in one query.
        fixes: list[tuple[int, int, int, int]] = []  # year, sign, first bucket, end bucket
        cut: dict[int, tuple[int, int]] = {}
        for year in years:
            y0, y1 = local_year_start_ns(year, zone), local_year_start_ns(year + 1, zone)
            a, b = max(since, y0), min(until, y1)
            u0, u1 = _year_ns(year), _year_ns(year + 1)
            if (a, b) != (y0, y1) or any(t % store.BUCKET_NS for t in (a, b)):
                cut[year] = (a, b)
                continue
            for x, y in ((a, u0), (u1, b)):
                lo_, hi_, k = (x, y, 1) if x <= y else (y, x, -1)
                if lo_ < hi_:
                    fixes.append((year, k, lo_ // store.BUCKET_NS, hi_ // store.BUCKET_NS))
        delta: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        if fixes:
            spans = json.dumps([[lo_, hi_] for _y, _k, lo_, hi_ in fixes])
            for i, side, n in conn.execute(store.BUCKET_SIDES_MANY, {"ranges": spans}):
                year, k = fixes[i][0], fixes[i][1]
                delta[year][side] += k * n
        for year in years:
            if year in cut:
                ys = _sides(conn, *cut[year], months)
            else:
                ys = [u + d for u, d in zip(utc_years[year], delta[year], strict=True)]
            if ys[0] or ys[1]:
                by_year.append({"year": year, "sent": ys[1], "received": ys[0]})
    top = sorted(chats, key=lambda c: (-per_chat[c], c))[:10]
    titles = chat_titles(conn, top)
    return {
        "timezone": zone.key,
        "messages": sides[0] + sides[1],
        "sent": sides[1],
        "received": sides[0],
        "chats": len(chats),
        "contacts": len(contacts),
        "first_message_time": iso(first),
        "last_message_time": iso(last),
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


def chat_titles(conn: sqlite3.Connection, ids: list[int]) -> dict[int, str]:
    """Chat titles exactly as /api/chats names them (the library's rule, repeated here
    because the statistics may not import the library: a group's own name, else who is in
    it, each person once, else the chat identifier or GUID); tests hold the two equal."""
    p = {"ids": "[" + ",".join(map(str, ids)) + "]"}
    people: dict[int, list[sqlite3.Row]] = defaultdict(list)
    for r in conn.execute(store.CHAT_PEOPLE, p):
        people[r["chat_id"]].append(r)
    out = {}
    for r in conn.execute(store.CHAT_TITLES, p):
        title = r["display_name"] if r["is_group"] and r["display_name"] else ""
        if not title:
            seen: set[tuple[str, Any]] = set()
            names = []
            for m in people[r["id"]]:
                key = (
                    ("contact", m["contact_id"])
                    if m["contact_id"] is not None
                    else ("handle", m["identifier"])
                )
                if key not in seen:
                    seen.add(key)
                    names.append(m["name"] or m["identifier"] or "")
            title = ", ".join(n for n in names if n) or r["display_name"] or ""
        out[r["id"]] = title or r["chat_identifier"] or r["guid"]
    return out


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


DAY_NS = 86_400_000_000_000


def _year_buckets(conn: sqlite3.Connection, lo: int, hi: int) -> np.ndarray:
    """Bucket rows (bucket, 0, side, messages, 0) of buckets [lo, hi), summed over chats and
    senders: whole UTC days from stats_bucket_days (schema 0015), the hours of a day cut by
    a bound from stats_buckets."""
    d0, d1 = -(-lo // 96), hi // 96
    edges = [(lo, hi)] if d0 >= d1 else [(lo, d0 * 96), (d1 * 96, hi)]
    packs = conn.execute(store.BUCKET_DAYS, {"d0": d0, "d1": d1}).fetchone()[0]
    flat = summary.hex_ints(packs, 8).reshape(-1, 2)
    rest = [
        (k, n)
        for x, y in edges
        if x < y
        for k, n in conn.execute(store.BUCKET_SIDES_RANGE, {"lo": x, "hi": y})
    ]
    if rest:
        flat = np.concatenate((flat, np.array(rest, dtype=np.int64).reshape(-1, 2)))
    cols = np.zeros((len(flat), 5), dtype=np.int64)
    cols[:, 0], cols[:, 2], cols[:, 3] = flat[:, 0] // 2, flat[:, 0] % 2, flat[:, 1]
    return cols


def _year_replies(conn: sqlite3.Connection, side: int, a: int, b: int) -> np.ndarray:
    """(handle, gap_ns) of one side's replies in [a, b) to a message also in it: whole UTC
    days from stats_reply_days (schema 0015) unless one replies to a message before `a`;
    those days and the parts of days cut by a bound read from stats_replies."""
    d0, d1 = -(-a // DAY_NS), b // DAY_NS
    exact = [(a, b)] if d0 >= d1 else [(a, d0 * DAY_NS), (d1 * DAY_NS, b)]
    p = {"side": side, "d0": d0, "d1": d1, "a": a}
    flat = summary.hex_ints(conn.execute(store.REPLY_DAYS, p).fetchone()[0]).reshape(-1, 2)
    for (day,) in conn.execute(store.REPLY_DAYS_BEFORE, p):
        exact.append((day * DAY_NS, (day + 1) * DAY_NS))
    rest = [
        (h, gap)
        for x, y in exact
        if x < y
        for h, gap in conn.execute(store.REPLIES_RANGE, {"side": side, "x": x, "y": y, "a": a})
    ]
    if rest:
        flat = np.concatenate((flat, np.array(rest, dtype=np.int64).reshape(-1, 2)))
    return flat


def _ranks(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct ids ascending, each element's index in them), as np.unique gives; small
    non-negative ids (handles, contacts) by a lookup table instead of a sort."""
    if not len(ids) or int(ids.min()) < 0 or int(ids.max()) >= 1 << 24:
        return np.unique(ids, return_inverse=True)
    seen = np.bincount(ids)
    return np.flatnonzero(seen), np.cumsum(seen > 0)[ids] - 1


_GAP_BITS = 47


def _fastest(
    conn: sqlite3.Connection, handles: np.ndarray, gaps: np.ndarray
) -> tuple[int, float] | None:
    """The contact with the lowest median reply time over at least 3 replies (the lowest
    contact id on a tie), as (contact_id, median_s); grouped with numpy, not per reply."""
    if not len(handles):
        return None
    uniq, inv = _ranks(handles)
    contact_of = _contacts_of(conn, uniq.tolist())
    ids = np.array([-1 if (k := contact_of.get(h)) is None else k for h in uniq.tolist()])
    who = ids[inv]
    keep = who >= 0
    who, gaps = who[keep], gaps[keep]
    if not len(who):
        return None
    # Each contact's gaps in order. Usually one sort of (contact rank, gap) packed into one
    # int64 (a reply's gap is within its conversation, far below 2^47 ns = 39 hours); the
    # order of equal pairs does not change a median. Otherwise by gap, then (stable) by
    # contact, ranked so the second sort is a radix sort of small integers.
    who_ids, rank = _ranks(who)
    if len(who_ids) < 1 << 16 and int(gaps.min()) >= 0 and int(gaps.max()) < 1 << _GAP_BITS:
        key = np.sort((rank.astype(np.int64) << _GAP_BITS) | gaps)
        who, secs = who_ids[key >> _GAP_BITS], (key & ((1 << _GAP_BITS) - 1)) / 1e9
    else:
        order = np.argsort(gaps, kind="stable")
        small = rank.astype(np.int16) if len(who_ids) < 1 << 15 else rank
        order = order[np.argsort(small[order], kind="stable")]
        who, secs = who[order], gaps[order] / 1e9
    starts = np.flatnonzero(np.concatenate(([True], who[1:] != who[:-1])))
    sizes = np.diff(np.concatenate((starts, [len(who)])))
    ok = sizes >= 3
    starts, sizes = starts[ok], sizes[ok]
    if not len(starts):
        return None
    hi = secs[starts + sizes // 2]
    lo = secs[starts + (sizes - 1) // 2]
    medians = np.where(sizes % 2 == 1, hi, (lo + hi) / 2)
    best = min(zip(medians.tolist(), who[starts].tolist(), strict=True))
    return int(best[1]), float(best[0])


def wrapped(conn: sqlite3.Connection, zone: ZoneInfo, year: int, today: date) -> dict[str, Any]:
    """The year in messages: the overview of the year, the year before's totals, and its
    highlights, all from the summaries (a local year is whole 15-minute buckets).

    The most reacted message is the one with the most standing tapbacks, the earliest on a tie.
    """
    a, b = local_year_start_ns(year, zone), local_year_start_ns(year + 1, zone)
    months = Months(conn)
    this = overview(conn, zone, a, b, months)
    before = _sides(conn, local_year_start_ns(year - 1, zone), a, months)
    lo, hi = a // store.BUCKET_NS, b // store.BUCKET_NS
    cols = _year_buckets(conn, lo, hi)
    people = _people_in(conn, months, a, b)
    busiest = None
    days = np.zeros(0, dtype=np.int64)
    hours = [0] * 24
    if len(cols):
        days, sent, recv, how = summary.local_grid(zone, cols)
        hours = [sum(how[d][h] for d in range(7)) for h in range(24)]
        totals = sent + recv
        best = int(np.flatnonzero(totals == totals.max())[-1])  # the latest of the busiest
        busiest = {
            "date": summary.day_iso(int(days[best])),
            "sent": int(sent[best]),
            "received": int(recv[best]),
        }
    reply = {"a": a, "b": b}
    mine_rt = _year_replies(conn, 1, a, b)[:, 1]
    theirs = _year_replies(conn, 0, a, b)
    their_h, their_rt = theirs[:, 0], theirs[:, 1]
    rt = {
        "me": summary.reply_times(conn, [mine_rt], 1),
        "them": summary.reply_times(conn, [their_rt], 0),
    }
    fastest = _fastest(conn, their_h, their_rt)
    top = conn.execute(store.MOST_REACTED, reply).fetchone()
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
        "most_reacted_message": None
        if top is None
        else {"message_id": top[0], "chat_id": top[1], "reactions": top[2]},
        "busiest_day": busiest,
        "streaks": summary.streaks(days, today),
        "response_times": rt,
        "top_hour": max(range(24), key=lambda h: (hours[h], -h)) if any(hours) else None,
        "previous_year": {
            "year": year - 1,
            "messages": before[0] + before[1],
            "sent": before[1],
            "received": before[0],
        },
    }


def _contacts_of(conn: sqlite3.Connection, handles: list[int]) -> dict[int, int | None]:
    ids = json.dumps([int(h) for h in handles])
    return dict(conn.execute(store.HANDLE_CONTACTS, {"ids": ids}).fetchall())


def live_counts(
    conn: sqlite3.Connection, chat_ids: list[int], contact_ids: list[int]
) -> tuple[dict[int, dict[str, int]], dict[int, dict[str, int]]]:
    """All-time {messages, sent, received} per chat and per contact, as their stats routes
    count them (a contact: their messages anywhere, mine in their 1:1 chats), from
    stats_years: a few rows each, cheap enough to send with every live batch."""
    conn.execute("BEGIN")  # one snapshot for every figure
    try:
        chats: dict[int, dict[str, int]] = {
            c: {"messages": 0, "sent": 0, "received": 0} for c in chat_ids
        }
        ids = "[" + ",".join(str(int(c)) for c in chat_ids) + "]"
        for chat, side, n in conn.execute(store.CHAT_COUNTS, {"ids": ids}):
            chats[chat]["sent" if side else "received"] += n
        contacts: dict[int, dict[str, int]] = {}
        for k in contact_ids:
            received = conn.execute(store.HANDLES_RECEIVED, {"contact": k}).fetchone()[0] or 0
            own = [r[0] for r in conn.execute(store.CONTACT_CHATS, {"contact": k}) if not r[1]]
            sent = 0
            p = {"ids": "[" + ",".join(str(int(c)) for c in own) + "]"}
            for _chat, side, n in conn.execute(store.CHAT_COUNTS, p):
                sent += n if side else 0
            contacts[k] = {"messages": received + sent, "sent": sent, "received": received}
    finally:
        conn.execute("COMMIT")
    for v in chats.values():
        v["messages"] = v["sent"] + v["received"]
    return chats, contacts


def _snapshot(fn: Any) -> Any:
    """`fn` inside one read transaction: every figure of an answer sees the same commit."""

    def run(conn: sqlite3.Connection, *args: Any) -> Any:
        conn.execute("BEGIN")
        try:
            return fn(conn, *args)
        finally:
            conn.execute("COMMIT")

    return run


class Stats:
    """The statistics service the routes and the CLI call (reads only)."""

    def __init__(self, db: Database, zone: ZoneInfo) -> None:
        self._db = db
        self.zone = zone

    def _today(self) -> date:
        return datetime.now(self.zone).date()

    async def overview(self, since: int | None, until: int | None) -> dict[str, Any]:
        return await self._db.read(_snapshot(overview), self.zone, _lo(since), _hi(until))

    async def chat(self, chat_id: int, since: int | None, until: int | None) -> dict[str, Any]:
        return await self._db.read(
            _snapshot(chat_stats), self.zone, chat_id, _lo(since), _hi(until), self._today()
        )

    async def contact(
        self, contact_id: int, since: int | None, until: int | None
    ) -> dict[str, Any]:
        return await self._db.read(
            _snapshot(contact_stats), self.zone, contact_id, _lo(since), _hi(until), self._today()
        )

    async def live_counts(
        self, chat_ids: list[int], contact_ids: list[int]
    ) -> tuple[dict[int, dict[str, int]], dict[int, dict[str, int]]]:
        return await self._db.read(live_counts, chat_ids, contact_ids)

    async def wrapped(self, year: int) -> dict[str, Any]:
        return await self._db.read(_snapshot(wrapped), self.zone, year, self._today())


def _lo(ns: int | None) -> int:
    return MIN_NS if ns is None else ns


def _hi(ns: int | None) -> int:
    return MAX_NS if ns is None else ns
