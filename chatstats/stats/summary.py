"""A chat's or contact's figures from the summaries of schemas 0011 and 0015, never from all
its messages.

Why this shape: the biggest chat of the 300k library has 65k messages; reading them took over
a second. Its summaries are ~260 packed 30-day blocks of 15-minute buckets (counts and words
per sender, fixed-width hex read with one bytes.fromhex), one row per conversation (and a
histogram of their sizes), one per reply (its exact gap, and a histogram of gap bins for
order statistics) and one per standing tapback bucket, so a figure costs a few indexed
reads and some numpy. Only the parts of the
range that cut through a 15-minute bucket or a conversation are read from messages, exactly.
Local days and hours are taken in the zone at query time (each bucket at the offset of its
start: every real offset is a multiple of 15 minutes), so a zone change needs no rebuild.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from chatstats.db import word_count

BUCKET_NS = 900_000_000_000
BLOCK = 2880  # buckets per stats_blocks row (30 days)
MIN_NS = -(2**63)
MAX_NS = 2**63 - 1
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_I64 = np.int64


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    moment = datetime(1970, 1, 1) + timedelta(microseconds=ns // 1000)
    return moment.isoformat(timespec="microseconds") + "Z"


def ints(text: str | None) -> np.ndarray:
    """A comma-separated list of integers (a group_concat) as an int64 array."""
    if not text:
        return np.zeros(0, dtype=_I64)
    return np.fromstring(text, dtype=_I64, sep=",")


def hex_ints(text: str | None, digits: int = 16) -> np.ndarray:
    """A pack of schema 0015 (integers as `digits` hex digits each: 16 for 64-bit two's
    complement, 8 for 32-bit) as an int64 array."""
    if not text:
        return np.zeros(0, dtype=_I64)
    return np.frombuffer(bytes.fromhex(text), dtype=">i8" if digits == 16 else ">i4").astype(_I64)


def median(xs: np.ndarray) -> float | None:
    n = len(xs)
    if not n:
        return None
    s = np.sort(xs)
    return float(s[n // 2]) if n % 2 else (float(s[n // 2 - 1]) + float(s[n // 2])) / 2


def p90(xs: np.ndarray) -> float | None:
    n = len(xs)
    if not n:
        return None
    rank = -(-9 * n // 10)  # nearest rank: ceil(0.9 n)
    return float(np.partition(xs, rank - 1)[rank - 1])


# ---------------------------------------------------------------------------------------------
# The zone's offsets, per bucket


def _offset_q(zone: ZoneInfo, bucket: int) -> int:
    t = datetime.fromtimestamp(bucket * 900, tz=UTC).astimezone(zone)
    off = t.utcoffset()
    return int(off.total_seconds()) // 900 if off is not None else 0


@lru_cache(maxsize=512)
def _year_offsets(zone: ZoneInfo, year: int) -> tuple[tuple[int, int], ...]:
    """(first bucket, offset in quarter hours) of each constant-offset run within a UTC year:
    the offset at each day's start, bisected to the bucket where it changes."""
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp()) // 900
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()) // 900
    runs = [(start, _offset_q(zone, start))]
    prev_b, prev = start, runs[0][1]
    for b in range(start + 96, end + 96, 96):
        b = min(b, end)
        cur = _offset_q(zone, b)
        if cur != prev:
            lo, hi = prev_b, b  # offset(lo) == prev, offset(hi) != prev
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset_q(zone, mid) == prev:
                    lo = mid
                else:
                    hi = mid
            runs.append((hi, _offset_q(zone, hi)))
            prev = runs[-1][1]
        prev_b = b
        if b == end:
            break
    return tuple(runs)


def local_quarters(zone: ZoneInfo, buckets: np.ndarray) -> np.ndarray:
    """Local quarter-hour numbers (since the local 1970 epoch) of UTC buckets."""
    if not len(buckets):
        return buckets
    y0 = datetime.fromtimestamp(int(buckets.min()) * 900, tz=UTC).year
    y1 = datetime.fromtimestamp(int(buckets.max()) * 900, tz=UTC).year
    runs = [r for y in range(y0, y1 + 1) for r in _year_offsets(zone, y)]
    starts = np.array([r[0] for r in runs], dtype=_I64)
    offs = np.array([r[1] for r in runs], dtype=_I64)
    idx = np.searchsorted(starts, buckets, side="right") - 1
    return buckets + offs[np.maximum(idx, 0)]


# ---------------------------------------------------------------------------------------------
# Reads


class Parts:
    """What the figures are made of, gathered chat by chat and then finished in one go."""

    def __init__(self) -> None:
        # Column-major (5, n) arrays: bucket, handle, side, messages, words.
        self.buckets: list[np.ndarray] = []
        self.first: list[int] = []
        self.last: list[int] = []
        self.sizes: list[np.ndarray] = []  # per conversation: messages * 2 + started_by_me
        # By the reply's side: gaps in ns, or a chat id standing for all of that chat's.
        self.gaps: dict[int, list[np.ndarray | int]] = {0: [], 1: []}
        self.given: Counter[str] = Counter()
        self.received: Counter[str] = Counter()

    def add_rows(self, rows: Sequence[tuple[int, int, int, int, int]]) -> None:
        if rows:
            self.buckets.append(_columns(rows))


def _columns(rows: Sequence[tuple[int, ...]]) -> np.ndarray:
    """Bucket rows (bucket, handle, side, messages, words) as a (5, n) column array."""
    return np.ascontiguousarray(np.array(rows, dtype=_I64).reshape(-1, 5).T)


def _json_ids(ids: Iterable[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


# A stats_blocks pack (schema 0015): big-endian (bucket, messages, words) records.
_BLOCK = np.dtype([("bucket", ">i4"), ("messages", ">i4"), ("words", ">i8")])
# One row: the blocks' (handle, side, buckets) heads and their packs, concatenated in the
# same order (fetching ~500 rows one by one cost more than reading them). Lengths as BLOB:
# length() of TEXT counts UTF-8 characters, ~1 ms over a big chat's 1 MB of packs.
_BLOCKS = (
    "SELECT group_concat(printf('%016x%016x%016x', handle_id, is_from_me,"
    " length(CAST(packed AS BLOB)) / 32), ''), group_concat(packed, '') FROM stats_blocks"
    " WHERE chat_id = :chat AND block >= :blo AND block <= :bhi"
)
_BLOCKS_OF = _BLOCKS + " AND is_from_me = 0 AND handle_id IN (SELECT value FROM json_each(:hs))"
_QUEUED = (
    "SELECT bucket, handle_id, is_from_me, sign, text FROM stats_words_pending"
    " WHERE chat_id = :chat AND bucket >= :lo AND bucket < :hi"
)
_MESSAGES = (
    "SELECT date_ns, COALESCE(handle_id, 0), is_from_me, text, guid, conversation_id"
    " FROM messages WHERE chat_id = :chat AND kind = 'message'"
    " AND date_ns >= :a AND date_ns < :b ORDER BY date_ns, id"
)
_EDGE_OF_RANGE = (
    "SELECT conversation_id FROM messages WHERE chat_id = :chat AND kind = 'message'"
    " AND date_ns >= :a AND date_ns < :b ORDER BY date_ns {dir}, id {dir} LIMIT 1"
)
_CONVERSATION = "SELECT start_ns, end_ns FROM stats_conversations WHERE conversation_id = :cv"
_CONV_ROWS = (
    "SELECT is_from_me, COALESCE(handle_id, 0) FROM messages WHERE conversation_id = :cv"
    " AND kind = 'message' AND chat_id IS NOT NULL AND date_ns >= :a AND date_ns < :b"
    " ORDER BY date_ns, id"
)
_WHOLE_CONVS = (
    "SELECT group_concat(messages * 2 + first_from_me) FROM stats_conversations"
    " WHERE chat_id = :chat AND start_ns >= :a AND end_ns < :b"
)
_WHOLE_CONVS_OF = (
    "SELECT group_concat(n * 2) FROM (SELECT SUM(s.messages) AS n FROM stats_conv_senders s"
    " JOIN stats_conversations c ON c.conversation_id = s.conversation_id"
    " WHERE s.handle_id IN (SELECT value FROM json_each(:hs)) AND s.chat_id = :chat"
    " AND s.is_from_me = 0 AND c.start_ns >= :a AND c.end_ns < :b GROUP BY s.conversation_id)"
)
_CONV_SIZES = "SELECT messages, first_from_me, n FROM stats_conv_sizes WHERE chat_id = :chat"
_GAPS_ALL = (
    "SELECT group_concat(gap_ns) FROM stats_replies WHERE chat_id = :chat AND is_from_me = :side"
)
_GAPS = _GAPS_ALL + " AND date_ns >= :a AND date_ns < :b AND date_ns - gap_ns >= :a"
_REACTIONS = (
    "SELECT type, SUM(n) FROM stats_reactions WHERE chat_id = :chat AND target_from_me = :tfm"
    " AND by_me = :by_me AND bucket >= :lo AND bucket < :hi GROUP BY type"
)
_REACTION_TOTALS = (
    "SELECT target_from_me, by_me, type, n FROM stats_reaction_totals WHERE chat_id = :chat"
)
_REACTIONS_OF = (
    "SELECT type, SUM(n) FROM stats_reactions WHERE chat_id = :chat AND target_from_me = 0"
    " AND by_me = 1 AND bucket >= :lo AND bucket < :hi"
    " AND target_handle IN (SELECT value FROM json_each(:hs)) GROUP BY type"
)
_EDGE_REACTIONS = (
    "SELECT r.type, r.is_from_me, m.is_from_me, COALESCE(m.handle_id, 0) FROM messages m"
    " JOIN reactions r ON r.target_guid = m.guid AND r.active = 1 AND r.is_removal = 0"
    " WHERE m.chat_id = :chat AND m.kind = 'message' AND m.date_ns >= :a AND m.date_ns < :b"
)
_FIRST = (
    "SELECT date_ns, COALESCE(handle_id, 0), is_from_me FROM messages WHERE chat_id = :chat"
    " AND kind = 'message' AND date_ns >= :a AND date_ns < :b ORDER BY date_ns {dir}"
)


def _spans(since: int, until: int) -> tuple[int, int, list[tuple[int, int]]]:
    """Whole buckets [lo, hi) inside [since, until) and the partial spans around them."""
    lo = -(-since // BUCKET_NS)
    hi = until // BUCKET_NS
    if lo >= hi:
        return 0, 0, [(since, until)]
    return lo, hi, [(since, lo * BUCKET_NS), (hi * BUCKET_NS, until)]


def chat_part(
    conn: sqlite3.Connection,
    parts: Parts,
    chat: int,
    since: int,
    until: int,
    handles: frozenset[int] | None = None,
) -> None:
    """One chat's share of the figures: every message of it in [since, until), or with
    `handles`, only the messages those handles sent (a contact in a group chat)."""
    lo, hi, edges = _spans(since, until)
    own: list[np.ndarray] = []  # this chat's bucket rows
    hs = None if handles is None else _json_ids(sorted(handles))

    def counted(handle: int, mine: int) -> bool:
        return handles is None or (not mine and handle in handles)

    # Counts and words: whole buckets from the packed blocks, partial ones from messages.
    if lo < hi:
        p = {"chat": chat, "blo": lo // BLOCK - 1, "bhi": (hi - 1) // BLOCK + 1, "hs": hs}
        heads, packs = conn.execute(_BLOCKS if hs is None else _BLOCKS_OF, p).fetchone()
        if heads:
            head = hex_ints(heads).reshape(-1, 3)  # handle, side, buckets
            flat = np.frombuffer(bytes.fromhex(packs), dtype=_BLOCK)
            cols = np.empty((5, len(flat)), dtype=_I64)
            cols[0] = flat["bucket"]
            cols[1] = np.repeat(head[:, 0], head[:, 2])
            cols[2] = np.repeat(head[:, 1], head[:, 2])
            cols[3] = flat["messages"]
            cols[4] = flat["words"]
            b = cols[0]
            if len(b) and (int(b.min()) < lo or int(b.max()) >= hi):
                cols = np.ascontiguousarray(cols[:, (b >= lo) & (b < hi)])
            own.append(cols)
        # Words still queued by the triggers (schema 0011): rows of no messages.
        queued = [
            (r[0], r[1], r[2], 0, r[3] * word_count(r[4]))
            for r in conn.execute(_QUEUED, {"chat": chat, "lo": lo, "hi": hi})
            if counted(r[1], r[2])
        ]
        if queued:
            own.append(_columns(queued))
    edge_rows = []
    for a, b in edges:
        if a >= b:
            continue
        for r in conn.execute(_MESSAGES, {"chat": chat, "a": a, "b": b}):
            if counted(r[1], r[2]):
                edge_rows.append((r[0] // BUCKET_NS, r[1], r[2], 1, word_count(r[3])))
        for r in conn.execute(_EDGE_REACTIONS, {"chat": chat, "a": a, "b": b}):
            if not counted(r[3], r[2]):
                continue
            if r[1] and not r[2]:
                parts.given[r[0]] += 1
            elif not r[1] and r[2]:
                parts.received[r[0]] += 1
    if edge_rows:
        own.append(_columns(edge_rows))
    parts.buckets.extend(own)
    # First and last message: the first and last counted bucket, read exactly.
    present = [c[0] for c in own if c.shape[1]]
    if present:
        bs = np.concatenate(present)
        for which, b0, sink in (
            ("ASC", int(bs.min()), parts.first),
            ("DESC", int(bs.max()), parts.last),
        ):
            a, b = max(since, b0 * BUCKET_NS), min(until, (b0 + 1) * BUCKET_NS)
            for r in conn.execute(_FIRST.format(dir=which), {"chat": chat, "a": a, "b": b}):
                if counted(r[1], r[2]):
                    sink.append(r[0])
                    break
    # Conversations: whole ones from stats_conversations, the one or two cut by the range
    # from their messages in it.
    if hs is None and since == MIN_NS and until == MAX_NS:
        # A whole chat: no conversation is cut, its sizes come from the histogram (0015).
        got = np.array(conn.execute(_CONV_SIZES, {"chat": chat}).fetchall(), dtype=_I64)
        if len(got):
            parts.sizes.append(np.repeat(got[:, 0] * 2 + got[:, 1], got[:, 2]))
    else:
        whole = {"chat": chat, "a": since, "b": until, "hs": hs}
        sql = _WHOLE_CONVS if hs is None else _WHOLE_CONVS_OF
        parts.sizes.append(ints(conn.execute(sql, whole).fetchone()[0]))
        cut = set()
        for direction in ("ASC", "DESC"):
            row = conn.execute(
                _EDGE_OF_RANGE.format(dir=direction), {"chat": chat, "a": since, "b": until}
            ).fetchone()
            if row is not None and row[0] is not None:
                span = conn.execute(_CONVERSATION, {"cv": row[0]}).fetchone()
                if span is not None and (span[0] < since or span[1] >= until):
                    cut.add(row[0])
        for cv in cut:
            seq = [
                r
                for r in conn.execute(_CONV_ROWS, {"cv": cv, "a": since, "b": until})
                if counted(r[1], r[0])
            ]
            if seq:
                parts.sizes.append(np.array([len(seq) * 2 + seq[0][0]], dtype=_I64))
    # Replies (only where both sides are counted: not a contact's share of a group chat).
    # A whole chat's stay in the index (its order statistics are read there, see `finish`).
    if handles is None:
        for side in (0, 1):
            if since == MIN_NS and until == MAX_NS:
                parts.gaps[side].append(chat)
                continue
            p2 = {"chat": chat, "side": side, "a": since, "b": until}
            parts.gaps[side].append(ints(conn.execute(_GAPS, p2).fetchone()[0]))
    # Standing tapbacks on the counted messages, whole buckets (the edges were read above).
    if hs is None and since == MIN_NS and until == MAX_NS:
        for tfm, by_me, kind, n in conn.execute(_REACTION_TOTALS, {"chat": chat}):
            if by_me and not tfm:
                parts.given[kind] += n
            elif tfm and not by_me:
                parts.received[kind] += n
    elif lo < hi:
        if hs is None:
            sinks: tuple[tuple[int, int, Counter[str]], ...] = (
                (0, 1, parts.given),
                (1, 0, parts.received),
            )
            for tfm, by_me, tally in sinks:
                q = {"chat": chat, "tfm": tfm, "by_me": by_me, "lo": lo, "hi": hi}
                for kind, n in conn.execute(_REACTIONS, q):
                    tally[kind] += n
        else:
            for kind, n in conn.execute(
                _REACTIONS_OF, {"chat": chat, "lo": lo, "hi": hi, "hs": hs}
            ):
                parts.given[kind] += n


def rows_part(
    conn: sqlite3.Connection,
    parts: Parts,
    chat: int,
    rows: list[tuple[Any, ...]],
    since: int,
    until: int,
) -> None:
    """A share of one chat given as its counted message rows (date_ns, handle, side, text,
    guid, conversation_id) in time order: the exact path for what no summary matches (a 1:1
    chat holding messages of someone other than the contact)."""
    parts.add_rows([(r[0] // BUCKET_NS, r[1], r[2], 1, word_count(r[3])) for r in rows])
    if rows:
        parts.first.append(rows[0][0])
        parts.last.append(rows[-1][0])
    convs: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for r in rows:
        if r[5] is not None:
            convs[r[5]].append(r)
    parts.sizes.append(np.array([len(c) * 2 + c[0][2] for c in convs.values()], dtype=_I64))
    gaps: dict[int, list[int]] = {0: [], 1: []}
    for c in convs.values():
        for prev, cur in pairwise(c):
            if prev[2] != cur[2]:
                gaps[cur[2]].append(cur[0] - prev[0])
    for side in (0, 1):
        parts.gaps[side].append(np.array(gaps[side], dtype=_I64))
    side_of = {r[4]: r[2] for r in rows}
    for kind, by_me, _tfm, _h, guid in conn.execute(
        "SELECT r.type, r.is_from_me, m.is_from_me, m.handle_id, m.guid FROM messages m"
        " JOIN reactions r ON r.target_guid = m.guid AND r.active = 1 AND r.is_removal = 0"
        " WHERE m.chat_id = :chat AND m.kind = 'message' AND m.date_ns >= :a AND m.date_ns < :b",
        {"chat": chat, "a": since, "b": until},
    ):
        target = side_of.get(guid)
        if target is None:
            continue
        if by_me and not target:
            parts.given[kind] += 1
        elif not by_me and target:
            parts.received[kind] += 1


# ---------------------------------------------------------------------------------------------
# Finishing


def streaks(days: np.ndarray, today: date) -> dict[str, Any]:
    """Runs of consecutive local day numbers (sorted, unique)."""
    if not len(days):
        return {"longest_days": 0, "longest_start": None, "current_days": 0}
    breaks = np.flatnonzero(np.diff(days) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(days)]))
    lengths = ends - starts
    best = int(np.argmax(lengths))  # the first of the longest runs
    today_n = today.toordinal() - _EPOCH_ORDINAL
    last = int(days[-1])
    return {
        "longest_days": int(lengths[best]),
        "longest_start": day_iso(int(days[starts[best]])),
        "current_days": int(lengths[-1]) if today_n - last in (0, 1) else 0,
    }


_DAY_ISO: dict[int, str] = {}  # day number -> ISO date; bounded by the days of a history


def day_strings(days: np.ndarray) -> list[str]:
    """ISO dates of local day numbers: remembered, since every answer lists thousands of
    the same days (numpy's conversion of ~3000 of them cost ~1.5 ms per answer)."""
    out = []
    memo = _DAY_ISO
    for d in days.tolist():
        got = memo.get(d)
        if got is None:
            got = memo[d] = day_iso(d)
        out.append(got)
    return out


def day_iso(n: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + n).isoformat()


def local_grid(
    zone: ZoneInfo, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[int]]]:
    """(day numbers, sent, received per day, hour_of_week) of bucket rows."""
    return local_grid_of(zone, cols[:, 0], cols[:, 2], cols[:, 3])


def local_grid_of(
    zone: ZoneInfo, buckets: np.ndarray, sides: np.ndarray, n: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[int]]]:
    """(day numbers, sent, received per day, hour_of_week) of buckets with their side and
    messages (rows of no messages left out by the caller)."""
    q = local_quarters(zone, buckets)
    day = q // 96
    hour = (q % 96) // 4
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
    how = np.bincount(weekday * 24 + hour, weights=n, minlength=168).astype(_I64)
    grid = how.reshape(7, 24).tolist()
    mine_n = np.where(sides == 1, n, 0)
    d0 = int(day.min())
    span = int(day.max()) - d0 + 1
    if span <= 4 * len(day) + 4096:  # days counted by offset: no sort of every bucket
        rel = day - d0
        inv = np.flatnonzero(np.bincount(rel, minlength=span))
        all_n = np.bincount(rel, weights=n, minlength=span)[inv]
        sent = np.bincount(rel, weights=mine_n, minlength=span)[inv]
        return inv + d0, sent.astype(_I64), (all_n - sent).astype(_I64), grid
    days, inv = np.unique(day, return_inverse=True)
    all_n = np.bincount(inv, weights=n, minlength=len(days))
    sent = np.bincount(inv, weights=mine_n, minlength=len(days))
    return days, sent.astype(_I64), (all_n - sent).astype(_I64), grid


_GAP_BINS = (
    "SELECT bin, n FROM stats_gap_bins WHERE chat_id = :chat AND is_from_me = :side ORDER BY bin"
)
_GAP_AT = (
    "SELECT gap_ns FROM stats_replies WHERE chat_id = :chat AND is_from_me = :side"
    " AND gap_ns >= :lo AND gap_ns < :hi ORDER BY gap_ns LIMIT 1 OFFSET :k"
)


def gap_bin_range(b: int) -> tuple[int, int]:
    """The gaps [lo, hi) in ns of a stats_gap_bins bin: length(s) * 100 + the first two
    digits of s, s the gap in whole seconds (schema 0015)."""
    digits, lead = divmod(b, 100)
    scale = 1 if digits == 1 else 10 ** (digits - 2)
    return lead * scale * 1_000_000_000, (lead + 1) * scale * 1_000_000_000


def _chat_gap_at(conn: sqlite3.Connection, chat: int, side: int) -> tuple[int, Any]:
    """(n, k-th smallest gap) of one whole chat's replies of a side: the bins' counts say
    which bin holds rank k, and one walk inside that bin finds it."""
    bins = conn.execute(_GAP_BINS, {"chat": chat, "side": side}).fetchall()
    ids = [int(r[0]) for r in bins]
    cum = np.cumsum(np.array([int(r[1]) for r in bins], dtype=_I64))
    n = int(cum[-1]) if len(cum) else 0

    def at(k: int) -> int:
        i = int(np.searchsorted(cum, k, side="right"))
        before = int(cum[i - 1]) if i else 0
        lo, hi = gap_bin_range(ids[i])
        p = {"chat": chat, "side": side, "lo": lo, "hi": hi, "k": k - before}
        return int(conn.execute(_GAP_AT, p).fetchone()[0])

    return n, at


def reply_times(conn: sqlite3.Connection, got: list[np.ndarray | int], side: int) -> dict[str, Any]:
    """n, median and nearest-rank p90 in seconds. One whole chat alone is read as order
    statistics through stats_gap_bins and stats_replies_chat (a walk inside one bin each,
    no list in Python); anything else as the union of the gap lists."""
    chats = [g for g in got if isinstance(g, int)]
    arrays = [g for g in got if not isinstance(g, int) and len(g)]
    if len(chats) == 1 and not arrays:
        n, at = _chat_gap_at(conn, chats[0], side)
        if not n:
            return {"n": 0, "median_s": None, "p90_s": None}
        mid = at(n // 2) / 1e9 if n % 2 else (at(n // 2 - 1) / 1e9 + at(n // 2) / 1e9) / 2
        return {"n": n, "median_s": mid, "p90_s": at(-(-9 * n // 10) - 1) / 1e9}
    for chat in chats:
        p = {"chat": chat, "side": side}
        arrays.append(ints(conn.execute(_GAPS_ALL, p).fetchone()[0]))
    gaps = (np.concatenate(arrays) if arrays else np.zeros(0, dtype=_I64)) / 1e9
    return {"n": len(gaps), "median_s": median(gaps), "p90_s": p90(gaps)}


def finish(conn: sqlite3.Connection, zone: ZoneInfo, parts: Parts, today: date) -> dict[str, Any]:
    # Column-major: every sum below reads one contiguous column.
    E = np.concatenate(parts.buckets, axis=1) if parts.buckets else np.zeros((5, 0), dtype=_I64)
    has = E[3] != 0
    C = E if has.all() else np.ascontiguousarray(E[:, has])
    bucket, side, n = C[0], C[2], C[3]
    total = int(n.sum())
    sent = int(n[side == 1].sum())
    # by_sender: handles to contacts (a merge moves handles, never rewrites the summaries).
    keys = C[1] * 2 + side
    all_keys = E[1] * 2 + E[2]
    if len(keys) and int(all_keys.min()) >= 0 and int(all_keys.max()) < 1 << 20:
        # Sender keys are small ids: counted by key, no sort of every bucket.
        size = int(all_keys.max()) + 1
        uniq = np.flatnonzero(np.bincount(keys, minlength=size))
        msgs = np.bincount(keys, weights=n, minlength=size)[uniq].astype(_I64)
        # Words from every row: queued words come in rows of no messages, always for a
        # sender with messages in that bucket.
        words = np.bincount(all_keys, weights=E[4], minlength=size)[uniq].astype(_I64)
        # Ties in by_sender go to the sender seen first (as a walk through the messages would).
        first = np.full(size, np.iinfo(_I64).max, dtype=_I64)
        np.minimum.at(first, keys, bucket)
        first_at = first[uniq].tolist()
    else:
        uniq, inv = np.unique(keys, return_inverse=True)
        msgs = np.bincount(inv, weights=n, minlength=len(uniq)).astype(_I64)
        at = np.searchsorted(uniq, all_keys) if len(uniq) else inv
        words = np.bincount(at, weights=E[4], minlength=len(uniq)).astype(_I64)
        first_at = [int(bucket[inv == i].min()) for i in range(len(uniq))]
    handle_ids = [int(k) // 2 for k in uniq if k % 2 == 0 and k // 2 != 0]
    contact_of = {
        h: c
        for h, c in conn.execute(
            "SELECT id, contact_id FROM handles WHERE id IN (SELECT value FROM json_each(:ids))",
            {"ids": _json_ids(handle_ids)},
        )
    }
    by_sender: dict[tuple[int | None, int], list[int]] = {}
    for k, m, w, f in zip(uniq.tolist(), msgs.tolist(), words.tolist(), first_at, strict=True):
        mine = k % 2
        key = (None if mine else contact_of.get(k // 2), mine)
        got = by_sender.setdefault(key, [0, 0, f])
        got[0] += m
        got[1] += w
        got[2] = min(got[2], f)
    empty = np.zeros(0, dtype=_I64)
    days, day_sent, day_recv, how = (
        local_grid_of(zone, bucket, side, n) if len(n) else (empty, empty, empty, [[0] * 24] * 7)
    )
    sizes = np.concatenate(parts.sizes) if parts.sizes else np.zeros(0, dtype=_I64)
    by_me = int((sizes % 2).sum())
    rt = {
        name: reply_times(conn, parts.gaps[side], side) for name, side in (("me", 1), ("them", 0))
    }
    day_sent_l = day_sent.tolist()
    day_recv_l = day_recv.tolist()
    return {
        "timezone": zone.key,
        "messages": total,
        "sent": sent,
        "received": total - sent,
        "first_message_time": iso(min(parts.first, default=None)),
        "last_message_time": iso(max(parts.last, default=None)),
        "by_sender": [
            {"contact_id": k[0], "is_from_me": bool(k[1]), "messages": v[0], "words": v[1]}
            for k, v in sorted(
                by_sender.items(), key=lambda kv: (-kv[1][0], kv[0][0] or 0, kv[1][2])
            )
        ],
        "by_day": [
            {"date": d, "sent": s, "received": r}
            for d, s, r in zip(day_strings(days), day_sent_l, day_recv_l, strict=True)
        ],
        "hour_of_week": how,
        "conversations": {
            "count": len(sizes),
            "started_by_me": by_me,
            "started_by_them": len(sizes) - by_me,
            "median_messages": median((sizes // 2).astype(float)),
        },
        "response_times": rt,
        "reactions": {
            "given": dict(sorted(parts.given.items())),
            "received": dict(sorted(parts.received.items())),
        },
        "streaks": streaks(days, today),
    }
