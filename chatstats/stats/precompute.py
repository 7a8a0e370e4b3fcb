"""The first import's summaries computed in Python, off the writer's core.

Why: after a 300k-message load the set-based statements of `maintain` (GROUP BYs over the
messages, the buckets and the replies, with a word-count function called per row) cost
~2.4 s of the writer's core: a third of the import. Everything they need is already in
memory at that point: the conversation walk's rows (each message's 15-minute bucket, chat,
sender and side; the conversations and replies) and the decode helper's word counts. So
`compute` derives the same rows elsewhere, and the writer only copies or inserts them: in
the decoding helper process (ingest/decode.py, which has the words and texts itself), or,
when it cannot, in a thread here (`Job`) while the writer is busy in SQLite (its index
builds release the GIL).

It must equal `maintain.REBUILD` exactly (tests/test_stats_maintain.py compares a race
import with a rebuild on every schema profile). Where SQL and Python arithmetic could part
(negative dates, where SQLite divides toward zero; dates past year 9999, where strftime
gives NULL; negative gaps, whose hex SQLite prints as two's complement), `compute` returns
None and the import runs the statements instead.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from chatstats import log, scratch
from chatstats.db import word_count

logger = log.get(__name__)

BUCKET_NS = 900_000_000_000  # 15 minutes
DAY_NS = 86_400_000_000_000
_MAX_UNIX_S = 253_402_300_799  # 9999-12-31T23:59:59: the last second strftime formats

Rows = list[tuple[Any, ...]]
# table → (its columns, each column's values: a list or a NumPy array), column-wise so the
# thread's result stays compact (Python tuples for 120k buckets were ~20 MB more at the
# import's peak); `rows` turns one into the tuples an INSERT takes, lazily.
Columns = list[Any]
Tables = dict[str, tuple[tuple[str, ...], Columns]]


def rows(columns: Columns) -> Iterator[tuple[Any, ...]]:
    return zip(*(c.tolist() if isinstance(c, np.ndarray) else c for c in columns), strict=True)


def _runs(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by `keys` (the first is primary): the order, and where each run of equal keys
    starts in it."""
    order = np.lexsort(keys[::-1])
    return order, _starts(order, *keys)


def _starts(order: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Where, in `order`, each run of equal `keys` starts."""
    n = len(order)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for k in keys:
        ks = k[order]
        change[1:] |= ks[1:] != ks[:-1]
    return np.flatnonzero(change)


def _group_sum(keys: list[np.ndarray], values: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """GROUP BY keys, SUM(values), in the keys' order."""
    order, starts = _runs(*keys)
    if len(order) == 0:
        return [k[:0] for k in keys], values[:0]
    return [k[order][starts] for k in keys], np.add.reduceat(values[order], starts)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _packed(
    order: np.ndarray, starts: np.ndarray, widths: tuple[int, ...], *cols: np.ndarray
) -> list[str]:
    """Per run, its rows' hex fields concatenated, as SQLite's group_concat of
    printf('%0<width>x', ...) makes them. Every record has the same width, so the records
    are written once into one buffer and each run is a slice of it (a % format per row
    was most of this module's time); a value too wide for its field (printf widens it)
    takes the per-row path."""
    values = [c[order] for c in cols]
    bounds = [*starts.tolist(), len(order)]
    if any(
        len(v) and (v.min() < 0 or (w < 16 and v.max() >= 16**w))
        for v, w in zip(values, widths, strict=True)
    ):
        fmt = "".join(f"%0{w}x" for w in widths)
        lists = [v.tolist() for v in values]
        return [
            "".join(fmt % tuple(v[j] for v in lists) for j in range(a, z))
            for a, z in itertools.pairwise(bounds)
        ]
    digits = [
        _HEX[(v[:, None] >> (np.arange(w - 1, -1, -1, dtype=np.int64) * 4)) & 0xF]
        for v, w in zip(values, widths, strict=True)
    ]
    text = np.concatenate(digits, axis=1).tobytes().decode("ascii") if len(order) else ""
    size = sum(widths)
    return [text[a * size : z * size] for a, z in itertools.pairwise(bounds)]


def compute(
    keys: np.ndarray,
    bucket_of: np.ndarray,
    order: np.ndarray,
    words: dict[int, int | None],
    texts: dict[int, str | None],
    zero: set[int],
    conversations: Rows,
    replies: Rows,
) -> Tables | None:
    """The rows of every summary but the reactions'. `keys`: (bucket, chat id, handle id or
    0, is_from_me) of each bucket the walk saw; `bucket_of`: per row walked (`order`, its
    ROWIDs), its key's index, or -1 for a row no bucket counts (a system event, an orphan);
    `words`: the helper's counts by ROWID (None: count `texts`' text); `zero`: ROWIDs whose
    text the load wrote empty (unsent); `conversations`, `replies`: the walk's rows of
    stats_conversations and stats_replies (`plan._stats`)."""
    k = np.asarray(keys, dtype=np.int64).reshape(-1, 4)
    b, c, h, s = (np.ascontiguousarray(k[:, i]) for i in range(4))
    if len(b) and (b.min() < 0 or int(b.max()) * 900 > _MAX_UNIX_S):
        return None
    if any(r[5] < 0 or r[6] < 0 or r[3] < 0 for r in replies):
        return None
    n = len(keys)
    at = np.asarray(bucket_of, dtype=np.int64)
    w = _row_words(np.asarray(order, dtype=np.int64), words, texts, zero)
    counted = at >= 0
    counts = np.bincount(at[counted], minlength=n).astype(np.int64)
    sums = np.rint(np.bincount(at[counted], weights=w[counted], minlength=n)).astype(np.int64)
    del at, w, counted
    tables: Tables = {}
    pk = np.lexsort((s, h, c, b))
    tables["stats_buckets"] = (
        ("bucket", "chat_id", "handle_id", "is_from_me", "messages", "words"),
        [b[pk], c[pk], h[pk], s[pk], counts[pk], sums[pk]],
    )
    month = _months(b)
    (mm, mc, mh, ms), mn = _group_sum([month, c, h, s], counts)
    tables["stats_months"] = (
        ("month", "chat_id", "handle_id", "is_from_me", "messages"),
        [mm, mc, mh, ms, mn],
    )
    (yy, yc, yh, ys), yn = _group_sum([mm // 100, mc, mh, ms], mn)
    tables["stats_years"] = (
        ("year", "chat_id", "handle_id", "is_from_me", "messages"),
        [yy, yc, yh, ys, yn],
    )
    block = b // 2880
    run = np.lexsort((b, s, h, block, c))
    starts = _starts(run, c, block, h, s)
    tables["stats_blocks"] = (
        ("chat_id", "block", "handle_id", "is_from_me", "packed"),
        [
            c[run][starts],
            block[run][starts],
            h[run][starts],
            s[run][starts],
            _packed(run, starts, (8, 8, 16), b, counts, sums),
        ],
    )
    live = mn > 0
    pc, ph, ps, pm, pn = mc[live], mh[live], ms[live], mm[live], mn[live]
    run, starts = _runs(pc, ph, ps)
    tables["stats_month_packs"] = (
        ("chat_id", "handle_id", "is_from_me", "packed"),
        [
            pc[run][starts],
            ph[run][starts],
            ps[run][starts],
            _packed(run, starts, (8, 8), pm, pn),
        ],
    )
    # Per bucket and side (bucket * 2 + is_from_me, as 0015 packs it), the messages of
    # every chat; per UTC day (bucket / 96), those that are not 0.
    (half,), per_half = _group_sum([b * 2 + (s != 0)], counts)
    half, per_half = half[per_half > 0], per_half[per_half > 0]
    day_of = half // 192
    run, starts = _runs(day_of)
    tables["stats_bucket_days"] = (
        ("day", "packed"),
        [day_of[run][starts], _packed(run, starts, (8, 8), half, per_half)],
    )
    ra = np.array(replies, dtype=np.int64).reshape(-1, 7)
    rc, rh, rs, rd, rg = (np.ascontiguousarray(ra[:, i]) for i in (1, 3, 4, 5, 6))
    del ra
    day = rd // DAY_NS
    run, starts = _runs(day, rs)
    low = np.minimum.reduceat((rd - rg)[run], starts) if len(run) else rd[:0]
    tables["stats_reply_days"] = (
        ("day", "is_from_me", "min_prev_ns", "packed"),
        [day[run][starts], rs[run][starts], low, _packed(run, starts, (16, 16), rh, rg)],
    )
    # length(gap_s) * 100 + its first two digits, as 0015's bin of a gap in seconds.
    seconds = rg // 1_000_000_000
    tens = 10 ** np.arange(19, dtype=np.int64)
    length = np.maximum(np.searchsorted(tens, seconds, side="right"), 1)
    first_two = seconds // tens[np.maximum(length - 2, 0)]
    (gc, gs, gb), gn = _group_sum([rc, rs, length * 100 + first_two], np.ones_like(rc))
    tables["stats_gap_bins"] = (("chat_id", "is_from_me", "bin", "n"), [gc, gs, gb, gn])
    sizes: dict[tuple[int, int, int], int] = defaultdict(int)
    for _cid, chat_id, _start, _end, messages, first_s, _last, _last_s in conversations:
        sizes[(chat_id, messages, first_s)] += 1
    tables["stats_conv_sizes"] = (
        ("chat_id", "messages", "first_from_me", "n"),
        [*map(list, zip(*sizes, strict=True)), list(sizes.values())] if sizes else [[], [], [], []],
    )
    return tables


def _row_words(
    order: np.ndarray, words: dict[int, int | None], texts: dict[int, str | None], zero: set[int]
) -> np.ndarray:
    """Per row walked, its text's words as the load wrote it: 0 if unsent, else the
    helper's count, else its text's (`texts`)."""
    known = np.fromiter(words.keys(), dtype=np.int64, count=len(words))
    counts = np.fromiter(
        (-1 if v is None else v for v in words.values()), dtype=np.int64, count=len(words)
    )
    by_rowid = np.argsort(known)
    known, counts = known[by_rowid], counts[by_rowid]
    at = np.minimum(np.searchsorted(known, order), max(len(known) - 1, 0))
    out = np.full(len(order), -1, dtype=np.int64)
    if len(known):
        found = known[at] == order
        out[found] = counts[at[found]]
    for k in np.flatnonzero(out < 0).tolist():  # the helper had none: few
        out[k] = word_count(texts.get(int(order[k])))
    if zero:
        out[np.isin(order, np.fromiter(zero, dtype=np.int64, count=len(zero)))] = 0
    return out


def _months(bucket: np.ndarray) -> np.ndarray:
    """Each bucket's UTC month as YYYYMM, as strftime('%Y%m', bucket * 900, 'unixepoch')."""
    months = (bucket * 900).astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    year, month = np.divmod(months, 12)
    out: np.ndarray = (year + 1970) * 100 + month + 1
    return out


class Job:
    """`compute` in a daemon thread; `result()` waits for it. A failure is logged (no data
    in the message: the exception's type) and gives None, so the caller falls back to SQL.

    With a `scratch` file (chatstats/scratch.py) the thread also writes the rows there, with
    `walked` (the conversation walk's tables, handed over by `maintain.prefill`), and builds
    their `indexes` (table → CREATE INDEX statements); `built` then names the tables the
    writer can copy whole. A failure there leaves `built` empty: the writer inserts."""

    def __init__(
        self,
        fn: Callable[[], Tables | None],
        *,
        scratch: Path | None = None,
        indexes: dict[str, list[str]] | None = None,
    ) -> None:
        self._fn = fn
        self._result: Tables | None = None
        self._thread = threading.Thread(target=self._run, name="stats-precompute", daemon=True)
        self.scratch = scratch
        self._indexes = indexes or {}
        # table → (columns, rows), set by `maintain.prefill` before the thread starts.
        self.walked: dict[str, tuple[tuple[str, ...], list[tuple[int, ...]]]] = {}
        # Set when another process writes the walked tables into a scratch file of their
        # own (the planning helper: ingest/decode.py): then this thread leaves them out,
        # and `maintain._fill` asks this (with a timeout) whether they were written.
        self.walked_remote: Callable[[float], bool] | None = None
        # Set when another process computes and writes the summaries themselves (the
        # decoding helper): the thread is not started, and `result` asks this (with a
        # timeout) which tables it wrote, computing them here only if it wrote none.
        self.remote: Callable[[float], frozenset[str]] | None = None
        self.built: frozenset[str] = frozenset()

    def start(self) -> None:
        """Begin, best when the writer enters long statements (they release the GIL, which
        this thread's Python needs); `result` runs it if nobody did."""
        if self._thread.ident is None and self.remote is None:
            self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._fn()
        except Exception as exc:  # any: the statements can still do it
            logger.warning("stats_precompute_failed", error=type(exc).__name__)
        if self.scratch is None or (self._result is None and not self.walked):
            return
        tables: dict[str, tuple[tuple[str, ...], Iterable[tuple[Any, ...]]]] = (
            dict(self.walked) if self.walked_remote is None else {}
        )
        for table, (columns, values) in (self._result or {}).items():
            tables[table] = (columns, rows(values))
        try:
            scratch.write(
                self.scratch, tables, [sql for t in tables for sql in self._indexes.get(t, [])]
            )
        except (sqlite3.Error, OSError) as exc:  # the writer inserts them instead
            logger.warning("stats_scratch_failed", error=type(exc).__name__)
            return
        self.built = frozenset(tables)

    def result(self) -> Tables | None:
        if self.remote is not None and self._thread.ident is None:
            built = self.remote(120)
            if built:  # nothing left to insert: the writer copies them (`built`)
                self.built = frozenset(built)
                return {table: ((), []) for table in built}
            # Here, then, and inserted by the writer: the helper may have left the scratch
            # file half-written (a write that failed midway), so it is not used again.
            self.scratch = None
            self._run()
            out, self._result = self._result, None
            return out
        self.start()
        self._thread.join()
        out, self._result = self._result, None
        return out
