"""The first import's conversations, planned by SQLite itself before the rows are written.

Why: splitting 300k messages into conversations the general way (a Point per message, a
sort and a walk per chat, then a ROWID → conversation dict the INSERT looked up once per
row) was over a third of the importing thread's Python time. Here SQLite sorts the rows by
(chat, date, ROWID) and Python only walks them once, noting where a gap opens; the INSERT
finds each message's conversation in a small temp table of spans (one index seek in C),
so nothing per message is built in Python. (Window functions for the split, measured:
three times slower than this walk.) The import's helper now decides it over whole columns
with NumPy (`walk_arrays`, same result): at 300k, SQLite's sort and the Python walk were 3 s
the import sat waiting for. The Python `walk` stays as the reference and for rows whose
dates are not plain integers.

It decides exactly as `conversations.split` + `Ingest._plan_conversations` do on a first
load (a test compares with the Python path): messages only, sorted by (date_ns, id) per
chat, a new conversation after a gap over `GAP_NS`; ids numbered chat by chat in the order
of each chat's first message (ROWID order), and by time within a chat; a conversation that
ended over `GAP_NS` before the import is filed sealed, the others get seal timers; each
system event joins the conversation of its chat whose span holds it, or none.

Only for a load into an app database with no messages and no conversations (race mode),
where nothing older can be extended, reopened or reconciled; `usable` says so.
"""

from __future__ import annotations

import bisect
import itertools
import sqlite3
from array import array
from collections import defaultdict
from collections.abc import Iterable
from operator import itemgetter
from typing import Any, NamedTuple

import msgspec
import numpy as np

from chatstats.ingest.conversations import GAP_NS

_BUCKET_NS = 900_000_000_000  # the statistics' bucket: 15 minutes


class Planned(NamedTuple):
    rowids: list[int]  # every loaded ROWID, ascending: the k-th gets id first + k
    created: int  # conversations created
    timers: bool  # some were left open (seal timers set)
    events: dict[int, int]  # system event ROWID → its conversation id
    bumps: list[dict[str, int]]  # per chat, what `Ingest._bump_chats` adds
    stats: tuple[list[tuple[int, ...]], ...]  # the summaries this walk saw: see `build`
    contacts: tuple[list[tuple[int, ...]], list[tuple[int, ...]]]  # Walked.received, .mine
    tally: tuple[int, int, int]  # Walked.tally

    def id_of(self, first: int, rowid: int) -> int | None:
        """The new message id of a loaded ROWID (None: not loaded)."""
        k = bisect.bisect_left(self.rowids, rowid)
        if k < len(self.rowids) and self.rowids[k] == rowid:
            return first + k
        return None


def usable(conn: sqlite3.Connection) -> bool:
    """Nothing for new messages to extend: no messages, conversations or chat history."""
    row = conn.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM messages) AND NOT EXISTS (SELECT 1 FROM conversations)"
        " AND NOT EXISTS (SELECT 1 FROM chats WHERE last_message_ns IS NOT NULL)"
    ).fetchone()
    return bool(row[0])


class Walked(msgspec.Struct, array_like=True, tag=3):
    """What the walk decided, before anything is written: computed by `walk` here or in the
    import's helper process (decode.py), which sends it whole; `write` turns it into rows."""

    rowids: list[int]
    conversations: list[tuple[int | None, ...]]  # rows of `conversations`
    timers: list[tuple[int, ...]]  # (conversation id, chat id, due_ns)
    spans: list[tuple[int, ...]]  # (chat id, start_ns, conversation id), sorted
    events: dict[int, int]
    bumps: list[dict[str, int]]
    stats: tuple[list[tuple[int, ...]], list[tuple[int, ...]], list[tuple[int, ...]]]
    # Per row walked, in walk order: its ROWID, app chat id and conversation id (None: none),
    # so the INSERT finds both with one dict lookup each instead of joins and a span search.
    order: list[int]
    chat_of: list[int | None]
    conv_of: list[int | None]
    # What `totals.refresh_contacts` counts, from the rows: per sender handle, the messages
    # received in a chat, and per chat, mine (h or chat id, rows, latest date_ns).
    received: list[tuple[int, ...]]
    mine: list[tuple[int, ...]]
    # The statistics' 15-minute buckets (schema 0007), for stats/precompute.py, as native
    # int64 arrays' bytes (no Python int per row held through the import): each key
    # (bucket, chat id, h, s) the walk saw, flattened, and per row walked its key's index
    # (-1: an event or orphan, in no bucket).
    bucket_keys: bytes
    bucket_of: bytes
    # (system events, of those the ones in a chat, rows in no chat): the import's counters
    # and whether chat titles need reloading, without a scan of the rows written.
    tally: tuple[int, int, int]


def lookup_tables(
    conn: sqlite3.Connection,
    handle_map: dict[int, int],
    chat_map: dict[int, int],
    after: int,
    upto: int,
) -> None:
    """The temp tables the load joins (chat.db ATTACHed as `src`): chat.db's handle and chat
    ROWIDs to app ids, and each message's chat (the lowest, for the rare message in several).
    Here, not in bulk.py, because the planning helper builds the same ones."""
    map_tables(conn, handle_map, chat_map)
    join_table(conn, after, upto)


def map_tables(
    conn: sqlite3.Connection, handle_map: dict[int, int], chat_map: dict[int, int]
) -> None:
    conn.execute("CREATE TEMP TABLE bulk_handles (src INTEGER PRIMARY KEY, id INTEGER)")
    conn.execute("CREATE TEMP TABLE bulk_chats (src INTEGER PRIMARY KEY, id INTEGER)")
    conn.executemany("INSERT INTO bulk_handles VALUES (?, ?)", handle_map.items())
    conn.executemany("INSERT INTO bulk_chats VALUES (?, ?)", chat_map.items())


def join_table(conn: sqlite3.Connection, after: int, upto: int) -> None:
    # Keyed by ROWID and filled in order (the GROUP BY walks chat.db's message_id index):
    # appends, and lookups by rowid, where a separate unique index cost twice as much.
    conn.execute("CREATE TEMP TABLE bulk_joins (message_id INTEGER PRIMARY KEY, chat_rowid)")
    conn.execute(
        "INSERT INTO bulk_joins SELECT message_id, MIN(chat_id) FROM src.chat_message_join"
        " WHERE message_id > :a AND message_id <= :u GROUP BY message_id ORDER BY message_id",
        {"a": after, "u": upto},
    )


def select_sql(select_rows: str) -> str:
    """The walk's input: `select_rows` (see `build`) in each chat's time order."""
    return (
        f"SELECT chat_id, date_ns, r, is_event, h, s FROM ({select_rows})"
        " ORDER BY chat_id, date_ns, r"
    )


def next_conversation_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM conversations").fetchone()[0])


def conversation_sql(date_ns: str, is_event: str) -> str:
    """The INSERT's conversation id of row `m` in chat `c`: a message's is the span of its
    chat starting last at or before it (it always holds it); an event's was placed here."""
    return (
        f"(CASE WHEN {is_event} THEN cs_conversation(m.ROWID) ELSE"
        " (SELECT g.cid FROM bulk_spans g WHERE g.chat_id = c.id"
        f" AND g.start_ns <= {date_ns} ORDER BY g.start_ns DESC LIMIT 1) END)"
    )


# A reply in the walk: (its group, ROWID, h, s, date_ns, gap_ns), the side having changed.
_Reply = tuple[list[Any], int, int, int, int, int]


def build(
    conn: sqlite3.Connection,
    *,
    select_rows: str,
    params: dict[str, int],
    first: int,
    now_ns: int,
    seal_expired: bool,
) -> Planned:
    """Plan every row `select_rows` gives (columns r: ROWID, chat_id: app chat id or NULL,
    date_ns, is_event, h: the sender's app handle id or 0, s: is_from_me 0/1); creates the
    conversations, their seal timers and `bulk_spans`.

    The walk is in each conversation's order, so it also notes the statistics of schema
    0011 that follow that order, as `maintain.REBUILD` derives them from the rows: rows of
    stats_conversations, stats_conv_senders and stats_replies (`Planned.stats`), so the
    rebuild after the load need not walk every message again (its window pass was the
    larger half of the summaries' cost)."""
    walked = walk_query(
        conn,
        select_rows,
        params,
        first=first,
        next_cid=next_conversation_id(conn),
        now_ns=now_ns,
        seal_expired=seal_expired,
    )
    return write(conn, walked)


def walk_query(
    conn: sqlite3.Connection, select_rows: str, params: dict[str, int], **walk_args: Any
) -> Walked:
    """The plan of `select_rows`: by NumPy when every date is a plain integer, else by the
    Python walk over SQLite's sort (see `read_arrays`). `stats` as `walk_arrays` has it
    (the Python walk always fills the summaries' fields)."""
    stats = walk_args.pop("stats", True)
    rows = read_arrays(conn, select_rows, params)
    if rows is not None:
        return walk_arrays(rows, stats=stats, **walk_args)
    return walk(conn.execute(select_sql(select_rows), params), **walk_args)


def walk(
    rows: Iterable[tuple[Any, ...]], *, first: int, next_cid: int, now_ns: int, seal_expired: bool
) -> Walked:
    """The plan of `rows` (as `select_sql` orders them), without a database: pure, so the
    import's helper process can run it on the other core."""
    gap = GAP_NS
    loaded = array("q")
    keep = loaded.append
    # Per group: [chat_first, start_ns, chat_id, end_ns, messages, first_s, last ROWID,
    # last_s, {(h, s): messages}]
    groups: list[list[Any]] = []
    replies: list[_Reply] = []  # (group, ROWID, h, s, date_ns, gap_ns): the side changed
    events: list[tuple[int, int, int]] = []  # (chat_id, date_ns, ROWID)
    bumps: list[tuple[int, int, int, int]] = []  # (chat_id, rows, last date, last ROWID)
    chat = None
    n = first_msg = 0
    last_d = last_r = 0
    group: list[Any] | None = None
    chat_groups: list[list[Any]] = []
    senders: dict[tuple[int, int], int] = {}
    prev = prev_s = 0
    reply = replies.append
    chat_of: list[int | None] = []
    of: list[list[Any] | None] = []  # per row walked: its group (None: an event or orphan)
    chat_is, group_is = chat_of.append, of.append
    received: dict[int, list[int]] = {}
    mine: dict[int, list[int]] = {}
    key_index: dict[tuple[int, int, int, int], int] = {}
    bucket_of = array("q")
    bucket_is = bucket_of.append
    n_events = n_orphans = 0
    for chat_id, d, r, is_event, h, s in rows:
        keep(r)
        chat_is(chat_id)
        if is_event:
            n_events += 1
        if chat_id is None:
            n_orphans += 1
            group_is(None)
            bucket_is(-1)
            continue
        tally = mine.get(chat_id) if s else received.get(h) if h else None
        if tally is not None:
            tally[0] += 1
            if d > tally[1]:
                tally[1] = d
        elif s:
            mine[chat_id] = [1, d]
        elif h:
            received[h] = [1, d]
        if chat_id != chat:
            if chat is not None:
                bumps.append((chat, n, last_d, last_r))
                for g in chat_groups:
                    g[0] = first_msg
            chat, n, first_msg, group, chat_groups = chat_id, 0, 0, None, []
        n += 1
        last_d, last_r = d, r
        if is_event:
            events.append((chat_id, d, r))
            group_is(None)
            bucket_is(-1)
            continue
        if first_msg == 0 or r < first_msg:
            first_msg = r
        if group is not None and d - prev <= gap:
            group[3] = d
            group[4] += 1
            group[6] = r
            group[7] = s
            if s != prev_s:
                reply((group, r, h, s, d, d - prev))
        else:
            senders = {}
            group = [0, d, chat_id, d, 1, s, r, s, senders]
            groups.append(group)
            chat_groups.append(group)
        group_is(group)
        key = (h, s)
        senders[key] = senders.get(key, 0) + 1
        # SQL's integer division (toward zero), which the summaries' statements use.
        bucket = (d if d >= 0 else -d) // _BUCKET_NS * (1 if d >= 0 else -1)
        bkey = (bucket, chat_id, h, s)
        at_key = key_index.get(bkey)
        if at_key is None:
            at_key = key_index[bkey] = len(key_index)
        bucket_is(at_key)
        prev = d
        prev_s = s
    if chat is not None:
        bumps.append((chat, n, last_d, last_r))
        for g in chat_groups:
            g[0] = first_msg
    order = loaded.tolist()
    rowids = sorted(loaded)
    del loaded
    # Ids chat by chat, in the order of each chat's first message, then by time.
    groups.sort(key=itemgetter(0, 1, 2, 3, 4))  # as the lists' own order did (no ties)
    sealed_before = now_ns - gap
    conversations: list[tuple[int | None, ...]] = []
    spans: list[tuple[int, ...]] = []
    timers: list[tuple[int, ...]] = []
    by_chat: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for cid, g in enumerate(groups, next_cid):
        _f, start, chat_id, end, count = g[:5]
        g.append(cid)
        sealed = seal_expired and end < sealed_before
        conversations.append(
            (cid, chat_id, start, end, count, int(sealed), now_ns if sealed else None)
        )
        spans.append((chat_id, start, cid))
        by_chat[chat_id].append((start, end, cid))
        if not sealed:
            timers.append((cid, chat_id, end + gap))
    spans.sort()
    # A system event joins the span of its chat that starts last at or before it, if that
    # has not ended before it (a chat's spans never overlap), as Ingest._place_events does.
    placed: dict[int, int] = {}
    for chat_id, d, r in events:
        known = by_chat.get(chat_id)
        if not known:
            continue
        i = bisect.bisect_right(known, (d, float("inf"))) - 1
        if i >= 0 and known[i][1] >= d:
            placed[r] = known[i][2]
    at = bisect.bisect_left
    n_rows = len(rowids)

    def id_of(rowid: int) -> int:
        k = at(rowids, rowid)
        return first + k if k < n_rows and rowids[k] == rowid else 0

    return Walked(
        rowids,
        conversations,
        timers,
        spans,
        placed,
        [{"id": c, "n": k, "d": d, "m": id_of(r)} for c, k, d, r in bumps],
        _stats(groups, replies, rowids, first),
        order,
        chat_of,
        [placed.get(r) if g is None else g[9] for g, r in zip(of, order, strict=True)],
        [(k, n, d) for k, (n, d) in received.items()],
        [(k, n, d) for k, (n, d) in mine.items()],
        array("q", itertools.chain.from_iterable(key_index)).tobytes(),
        bucket_of.tobytes(),
        (n_events, len(events), n_orphans),
    )


# Dates the array walk takes: any two differ by less than 2**63, so no difference overflows.
_DATE_LIMIT = 4 * 10**18


def read_arrays(
    conn: sqlite3.Connection, select_rows: str, params: dict[str, int]
) -> np.ndarray | None:
    """`select_rows` as an (n, 6) int64 array of (r, chat_id or -1, date_ns, is_event, h, s),
    in no particular order; None when some date is not an integer (REAL or NULL from a damaged
    row) or is out of `_DATE_LIMIT`, which only the Python `walk` takes exactly.

    Why unsorted: SQLite's sort of 300k rows and Python's walk of them were 3 s of the
    planning helper, which the import waits for; NumPy sorts and splits them in a tenth.
    Why a JSON array per column (json_group_array, built in C over one scan, so the six
    agree row for row): a Python tuple per row and an int object per value were 0.47 s at
    300k, against 0.33 s this way."""
    columns = conn.execute(
        "SELECT json_group_array(r), json_group_array(COALESCE(chat_id, -1)),"
        " json_group_array(CASE WHEN typeof(date_ns) = 'integer' THEN date_ns END),"
        " json_group_array(is_event), json_group_array(h), json_group_array(s)"
        f" FROM ({select_rows})",
        params,
    ).fetchone()
    lists = [msgspec.json.decode(c) for c in columns]
    out = np.empty((len(lists[0]), 6), dtype=np.int64)
    try:
        for k, values in enumerate(lists):
            out[:, k] = np.fromiter(values, dtype=np.int64, count=len(values))
    except (TypeError, ValueError, OverflowError):  # a NULL (not an integer) date
        return None
    if len(out) and int(np.abs(out[:, 2]).max()) >= _DATE_LIMIT:
        return None
    return out


def _first_seen(*cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct keys of the rows' `cols`, numbered in order of first appearance: per row
    its key's number, and per key the row it first appears at and how many rows have it."""
    n = len(cols[0])
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    by = np.lexsort(tuple(reversed(cols)))  # stable: ties keep the rows' order
    new = np.zeros(n, dtype=bool)
    new[0] = True
    for c in cols:
        sc = c[by]
        new[1:] |= sc[1:] != sc[:-1]
    starts = np.flatnonzero(new)
    label = np.cumsum(new) - 1
    firsts = by[starts]
    counts = np.diff(np.append(starts, n))
    seen = np.argsort(firsts, kind="stable")
    renumber = np.empty_like(seen)
    renumber[seen] = np.arange(len(seen))
    inverse = np.empty(n, dtype=np.int64)
    inverse[by] = renumber[label]
    return inverse, firsts[seen], counts[seen]


def _with_none(values: np.ndarray, none: np.ndarray) -> list[int | None]:
    out: list[int | None] = values.tolist()
    for i in np.flatnonzero(none).tolist():
        out[i] = None
    return out


def walk_arrays(
    rows: np.ndarray,
    *,
    first: int,
    next_cid: int,
    now_ns: int,
    seal_expired: bool,
    stats: bool = True,
) -> Walked:
    """`walk`, decided over whole columns by NumPy: the same Walked, field for field and in
    the same orders (a property test holds the two to it). `rows` as `read_arrays` gives.
    Without `stats` (a database without the statistics' tables) the summaries' fields stay
    empty: nobody would read them, and they are a fifth of the walk."""
    o = np.lexsort((rows[:, 0], rows[:, 2], rows[:, 1]))  # (chat, date, ROWID); orphans first
    r, chat, d, ev, h, s = (np.ascontiguousarray(rows[o, k]) for k in range(6))
    n_rows = len(r)
    rowids = np.sort(r)

    def id_of(x: np.ndarray) -> np.ndarray:
        return np.searchsorted(rowids, x) + first  # every walked ROWID is there

    orphan = chat < 0
    inchat = ~orphan
    is_msg = inchat & (ev == 0)
    mi = np.flatnonzero(is_msg)
    mc, md, mr, mh, ms = chat[mi], d[mi], r[mi], h[mi], s[mi]
    m = len(mi)
    new = np.ones(m, dtype=bool)  # a message that opens a conversation
    new[1:] = (mc[1:] != mc[:-1]) | (md[1:] - md[:-1] > GAP_NS)
    g_of = np.cumsum(new) - 1  # per message, its group (groups sorted by chat, start)
    g_first = np.flatnonzero(new)
    g_last = np.append(g_first[1:] - 1, m - 1) if m else g_first
    n_groups = len(g_first)
    g_chat, g_start, g_end = mc[g_first], md[g_first], md[g_last]
    g_count = g_last - g_first + 1
    # Ids chat by chat in the order of each chat's first message's ROWID, then by time.
    chat_open = np.flatnonzero(np.r_[True, mc[1:] != mc[:-1]]) if m else np.zeros(0, np.int64)
    chat_low = np.minimum.reduceat(mr, chat_open) if m else np.zeros(0, np.int64)
    g_low = chat_low[np.cumsum(np.r_[True, g_chat[1:] != g_chat[:-1]]) - 1] if m else chat_low
    ranked = np.argsort(g_low, kind="stable")  # groups in id order
    g_cid = np.empty(n_groups, dtype=np.int64)
    g_cid[ranked] = np.arange(next_cid, next_cid + n_groups)
    sealed_before = now_ns - GAP_NS
    g_sealed = (g_end < sealed_before) if seal_expired else np.zeros(n_groups, dtype=bool)

    conversations: list[tuple[int | None, ...]] = []
    timers: list[tuple[int, ...]] = []
    for cid, c, start, end, count, sealed in zip(
        g_cid[ranked].tolist(),
        g_chat[ranked].tolist(),
        g_start[ranked].tolist(),
        g_end[ranked].tolist(),
        g_count[ranked].tolist(),
        g_sealed[ranked].tolist(),
        strict=True,
    ):
        conversations.append((cid, c, start, end, count, int(sealed), now_ns if sealed else None))
        if not sealed:
            timers.append((cid, c, end + GAP_NS))
    spans: list[tuple[int, ...]] = list(
        zip(g_chat.tolist(), g_start.tolist(), g_cid.tolist(), strict=True)
    )

    # A system event joins the span of its chat starting last at or before it, if that has
    # not ended before it: groups and events merged in (chat, time) order, groups first on
    # a tie, each event taking the last group before it.
    ei = np.flatnonzero(inchat & (ev != 0))
    e_chat, e_d = chat[ei], d[ei]
    kinds = np.r_[np.zeros(n_groups, dtype=np.int64), np.ones(len(ei), dtype=np.int64)]
    merged = np.lexsort((kinds, np.r_[g_start, e_d], np.r_[g_chat, e_chat]))
    last_group = np.where(merged < n_groups, merged, -1)
    last_group = np.maximum.accumulate(last_group) if len(merged) else last_group
    before = np.empty(len(ei), dtype=np.int64)
    before[merged[merged >= n_groups] - n_groups] = last_group[merged >= n_groups]
    conv = np.full(n_rows, -1, dtype=np.int64)
    conv[mi] = g_cid[g_of]
    placed: dict[int, int] = {}
    if n_groups and len(ei):
        at = np.maximum(before, 0)
        ok = (before >= 0) & (g_chat[at] == e_chat) & (g_end[at] >= e_d)
        placed = dict(zip(r[ei][ok].tolist(), g_cid[at][ok].tolist(), strict=True))
        conv[ei[ok]] = g_cid[at][ok]

    # Per chat, in walk order: its rows (events too), the last row's date and message id.
    ci = np.flatnonzero(inchat)
    c_open = ci[np.flatnonzero(np.r_[True, chat[ci][1:] != chat[ci][:-1]])] if len(ci) else ci
    c_close = np.append(c_open[1:] - 1, n_rows - 1) if len(ci) else ci
    bumps = [
        {"id": c, "n": k, "d": last_d, "m": last_m}
        for c, k, last_d, last_m in zip(
            chat[c_open].tolist(),
            (c_close - c_open + 1).tolist(),
            d[c_close].tolist(),
            id_of(r[c_close]).tolist(),
            strict=True,
        )
    ]

    # What totals.refresh_contacts counts: mine per chat, received per sender handle.
    def tally(where: np.ndarray, key: np.ndarray) -> list[tuple[int, ...]]:
        at_rows = np.flatnonzero(where)
        inverse, seen_at, counts = _first_seen(key[at_rows])
        latest = np.full(len(seen_at), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(latest, inverse, d[at_rows])
        return list(
            zip(key[at_rows][seen_at].tolist(), counts.tolist(), latest.tolist(), strict=True)
        )

    mine = tally(inchat & (s != 0), chat)
    received = tally(inchat & (s == 0) & (h != 0), h)
    tallied = (int(np.count_nonzero(ev)), len(ei), int(np.count_nonzero(orphan)))
    head = (rowids.tolist(), conversations, timers, spans, placed, bumps)
    tail = (r.tolist(), _with_none(chat, orphan), _with_none(conv, conv < 0), received, mine)
    if not stats:
        return Walked(*head, ([], [], []), *tail, b"", b"", tallied)

    # The statistics of schema 0011, as `_stats` gives them.
    g_last_id = id_of(mr[g_last])
    stats_conversations = list(
        zip(
            g_cid[ranked].tolist(),
            g_chat[ranked].tolist(),
            g_start[ranked].tolist(),
            g_end[ranked].tolist(),
            g_count[ranked].tolist(),
            ms[g_first][ranked].tolist(),
            g_last_id[ranked].tolist(),
            ms[g_last][ranked].tolist(),
            strict=True,
        )
    )
    _, s_at, s_n = _first_seen(g_of, mh, ms)  # per group, its (h, s) in first-seen order
    s_group = g_of[s_at]
    s_order = np.lexsort((s_at, g_cid[s_group]))
    s_at, s_n, s_group = s_at[s_order], s_n[s_order], s_group[s_order]
    conv_senders: list[tuple[int, ...]] = list(
        zip(
            g_cid[s_group].tolist(),
            mh[s_at].tolist(),
            ms[s_at].tolist(),
            g_chat[s_group].tolist(),
            s_n.tolist(),
            strict=True,
        )
    )
    turn = np.zeros(m, dtype=bool)  # the side changed within a conversation
    turn[1:] = ~new[1:] & (ms[1:] != ms[:-1])
    ti = np.flatnonzero(turn)
    t_order = np.argsort(mr[ti], kind="stable")  # by message id
    ti = ti[t_order]
    replies = list(
        zip(
            id_of(mr[ti]).tolist(),
            mc[ti].tolist(),
            g_cid[g_of[ti]].tolist(),
            mh[ti].tolist(),
            ms[ti].tolist(),
            md[ti].tolist(),
            (md[ti] - md[ti - 1]).tolist(),
            strict=True,
        )
    )

    # The statistics' buckets (SQL's division, toward zero), numbered as first seen.
    bucket = np.where(md >= 0, md // _BUCKET_NS, -((-md) // _BUCKET_NS))
    b_inverse, b_at, _ = _first_seen(bucket, mc, mh, ms)
    keys = np.stack([bucket[b_at], mc[b_at], mh[b_at], ms[b_at]], axis=1).astype(np.int64)
    bucket_of = np.full(n_rows, -1, dtype=np.int64)
    bucket_of[mi] = b_inverse

    return Walked(
        *head,
        (stats_conversations, conv_senders, replies),
        *tail,
        np.ascontiguousarray(keys).tobytes(),
        bucket_of.tobytes(),
        tallied,
    )


def write(conn: sqlite3.Connection, w: Walked, *, spans: bool = True) -> Planned:
    """Write a walk's conversations, seal timers and (`spans`) `bulk_spans`, the lookup of
    an INSERT that does not use `Walked.conv_of`."""
    conn.executemany(
        "INSERT INTO conversations (id, chat_id, start_ns, end_ns, message_count, sealed,"
        " sealed_at_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
        w.conversations,
    )
    # As tracker.schedule does for each open conversation.
    conn.executemany(
        "INSERT INTO seal_timers (conversation_id, chat_id, due_ns) VALUES (?, ?, ?)"
        " ON CONFLICT (conversation_id) DO UPDATE SET chat_id = excluded.chat_id,"
        " due_ns = excluded.due_ns",
        w.timers,
    )
    if spans:
        conn.execute(
            "CREATE TEMP TABLE bulk_spans (chat_id INTEGER NOT NULL, start_ns INTEGER NOT NULL,"
            " cid INTEGER NOT NULL, PRIMARY KEY (chat_id, start_ns)) WITHOUT ROWID"
        )
        conn.executemany("INSERT INTO bulk_spans VALUES (?, ?, ?)", w.spans)
    return Planned(
        w.rowids,
        len(w.conversations),
        bool(w.timers),
        w.events,
        w.bumps,
        w.stats,
        (w.received, w.mine),
        w.tally,
    )


def _stats(
    groups: list[list[Any]], replies: list[_Reply], rowids: list[int], first: int
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Rows of stats_conversations, stats_conv_senders and stats_replies (in their columns'
    order), each ROWID turned into its message id as `Planned.id_of` does (every walked
    ROWID was loaded, so none misses)."""
    at = bisect.bisect_left
    conversations: list[tuple[int, ...]] = []
    conv_senders: list[tuple[int, ...]] = []
    for _f, start, chat_id, end, count, first_s, last_r, last_s, senders, cid in groups:
        last_id = first + at(rowids, last_r)
        conversations.append((cid, chat_id, start, end, count, first_s, last_id, last_s))
        conv_senders.extend((cid, h, s, chat_id, n) for (h, s), n in senders.items())
    out: list[tuple[int, ...]] = [
        (first + at(rowids, r), g[2], g[9], h, s, d, gap) for g, r, h, s, d, gap in replies
    ]
    out.sort()  # by message id: appends to the table's B-tree
    return conversations, conv_senders, out


def drop(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS temp.bulk_spans")
