"""Search by meaning and hybrid search over the vector index, and the index's lifecycle.

Hybrid = reciprocal rank fusion (k = 60; only each list's first HEAD ranks count fully) of
three ranked lists of messages (no weights fitted to the sample's planted questions):
- words: FTS5 bm25 over any of the query's words but stopwords, each also as its stem's
  prefix (a question rarely shares all its words, or their forms, with the answer, so an AND
  of the literal words finds little);
- singles: messages nearest the query by their own vector;
- windows: conversation windows nearest the query, each standing for its message nearest
  the query (conversation context counts: the window found the place).
Mode semantic fuses the two vector lists alone. Results are re-read from the database, so
an unsent or deleted message can never come back from a stale vector.

Live updates stay off the hot path: the follower lets the commit that woke it publish
first (DEFER_S), then refreshes only the conversations the events name (a few rows each) in
a worker thread, and saves (which writes the whole index) only once things are quiet.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from chatstats import log
from chatstats.context import embed_calls
from chatstats.context.build import run_child
from chatstats.context.embed import BundledEmbedder, bundled
from chatstats.context.index import VectorIndex
from chatstats.context.remote_embed import EmbeddingFailed
from chatstats.db import connect
from chatstats.errors import BadRequest, NotFound
from chatstats.events import catalogue
from chatstats.library import store
from chatstats.library.service import _build_messages, search_terms

logger = log.get(__name__)

RRF_K = 60
CANDIDATES = 100
# Hybrid: only a leg's first HEAD ranks count fully; past them a rank counts TAIL of its
# RRF share. With k = 60 the shares fall slowly (rank 80 still earns 0.43 of rank 1), so a
# message the two legs both rank ~50th, weak evidence twice, outranked either leg's first
# hit: many weak semantic hits outvoted a strong word match, and the reverse. Past the
# head a rank now only orders the tail (a page longer than the heads still fills).
# Measured on the planted questions (recall@5/@10, same-question recall@10; bench_search):
# 20k seed 7 0.186/0.299/0.443 -> 0.237/0.340/0.619, seed 11 0.207/0.306/0.579 ->
# 0.215/0.331/0.661, 300k seed 7 0.054/0.094/0.374 -> 0.052/0.098/0.384; a head of 10,
# 20 or 30 all gain, 50 and more not: a trend over sizes and seeds, not a fitted point.
HEAD = 20
TAIL = 0.01
MODES = ("text", "semantic", "hybrid")
SAVE_EVERY_S = 60.0
# A window hit counts a quarter of a single's in the semantic list: a window says where the
# talk was about the question, its best line is only a guess at which message answers it.
# Summed by RRF, a message found by both legs outranks the nearest single found by one, so
# at 0.5 the windows pushed answers out of the top 5. Measured (bench_search, 20k, seeds 7
# and 11; recall@5/@10): semantic 0.031/0.206 and 0.074/0.190 at 0.5 -> 0.103/0.247 and
# 0.116/0.198 at 0.25; hybrid 0.155/0.258 and 0.198/0.264 -> 0.186/0.299 and 0.182/0.298.
# Singles alone rank better at 5 (about 0.2), no better at 10: two seeds, not a fit.
WINDOW_WEIGHT = 0.25
# A due save waits for this long without events (a save holds the index and the GIL).
QUIET_S = 5.0
# Question words that match nearly every message and would drown the fused ranking.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "at",
        "be",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "get",
        "got",
        "had",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "them",
        "there",
        "they",
        "this",
        "to",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)


def parse_time(raw: str | None, name: str) -> int | None:
    """ISO 8601 → ns since the Unix epoch (naive means UTC)."""
    if raw is None or raw == "":
        return None
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    ns = int(t.timestamp() * 1_000_000_000)
    if not -(2**63) <= ns < 2**63:  # SQLite's integers: years 1677 to 2262 (schemathesis found it)
        raise BadRequest(f"{name} must be between the years 1678 and 2261")
    return ns


# Inflections a question and its answer often differ by ("what is she researching" for "I
# researched it"): the index has no stemmer (unicode61), so each word also matches, as an
# FTS5 prefix, its stem with one of these cut off. Stems shorter than 4 letters are left
# out (a prefix like "go*" would match half the vocabulary).
_SUFFIXES = ("ing", "ed", "es", "s", "ly", "er")
_MIN_STEM = 4


def _stem(word: str) -> str | None:
    """The word less its first matching suffix, or None (no suffix, or too short a stem)."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            return word[: -len(suffix)]
    return None


def _word_groups(q: str) -> list[str]:
    """Per non-stopword of the query, its FTS5 expression: the word literally, OR its
    stem's prefix (an exact form matches both, so it still ranks first). Stems are letters
    and digits only, so no FTS syntax gets in."""
    groups: list[str] = []
    for term in search_terms(q):
        bare = term.lower().strip("?!.,'\"")
        if bare in STOPWORDS:
            continue
        literal = store.match_expression([term])
        stem = _stem(bare) if bare.isalnum() else None
        groups.append(literal if stem is None else f'{literal} OR "{stem}"*')
    return groups


def words_match(q: str) -> str | None:
    """The hybrid's FTS5 query: any of the query's words but stopwords (see _word_groups);
    None when only stopwords are left."""
    groups = _word_groups(q)
    return " OR ".join(groups) if groups else None


# The words leg ranks at most about this many matching rows. FTS5's bm25 costs ~2.5 µs a
# matching row (it reads each row's size), against ~0.1 µs to count them: on 300k messages
# a question with one common word ("see": 7,800 rows) took 26 ms of hybrid's 30 ms budget.
# So its words are taken rarest first until their rows would pass the budget: the words
# left out are the commonest, whose bm25 weight (idf) is lowest, and the rarest word that
# matches anything is always kept.
WORDS_BUDGET = 6000


def _budgeted_match(conn: sqlite3.Connection, q: str) -> str | None:
    groups = _word_groups(q)
    if len(groups) < 2:
        return groups[0] if groups else None
    counted = []
    for n, group in enumerate(groups):
        (df,) = conn.execute(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH :m", {"m": group}
        ).fetchone()
        counted.append((df, n, group))
    kept: list[tuple[int, str]] = []
    rows = 0
    for df, n, group in sorted(counted):
        if df == 0:
            continue
        if kept and rows + df > WORDS_BUDGET:
            break
        kept.append((n, group))
        rows += df
    return " OR ".join(g for _n, g in sorted(kept)) if kept else None


def _fts_ranked(conn: sqlite3.Connection, q: str, limit: int) -> list[int]:
    """Messages holding any of the words, best bm25 first (a question's words rarely all
    appear in the answer, so AND would miss it), within WORDS_BUDGET."""
    try:
        match = _budgeted_match(conn, q)
        if match is None:
            return []
        rows = conn.execute(
            "SELECT rowid FROM messages_fts WHERE messages_fts MATCH :match"
            " ORDER BY bm25(messages_fts) LIMIT :limit",
            {"match": match, "limit": limit},
        ).fetchall()
    except sqlite3.OperationalError as exc:
        raise BadRequest(f"bad search syntax: {exc}") from None
    return [r[0] for r in rows]


# Search keeps up to READERS read connections between queries (one per concurrent search),
# each with a page cache of at most READER_CACHE_KB.
READERS = 4
READER_CACHE_KB = 8000

# After a wake-up, the follower first lets the waking commit's publish run on the loop.
DEFER_S = 0.05
# At most one live refresh per this many seconds (bursts coalesce into one).
REFRESH_EVERY_S = 0.25
# While the embedding provider fails (after its own retries): waits before the next build
# attempt, and before a failed live refresh is tried again.
BUILD_RETRY_S = (5.0, 30.0, 120.0, 300.0)
# The build thread's nice value (see _in_build_thread).
BUILD_NICE = 15
RETRY_REFRESH_S = 10.0


class SearchIndex:
    """Owns the VectorIndex: load or build it in a thread, follow the event log, answer."""

    def __init__(self, state: Any, embedder: Any) -> None:
        self._state = state
        self.index = VectorIndex(Path(state.settings.data_dir), embedder)
        self.ready = threading.Event()
        self._saved_at = time.monotonic()
        self._dirty = False
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()

    def _conn(self) -> sqlite3.Connection:
        return connect(self._state.db.path, write=False)

    def describe(self) -> dict[str, Any]:
        """The index's status, `building` until search accepts queries: a build's last step
        (the save) and a loaded index's catch-up run after the items are counted, and a
        client that waited for items > 0 and not building got index_unavailable."""
        out = self.index.describe()
        out["building"] = out["building"] or not self.ready.is_set()
        return out

    def _prepare(self, last_event: int) -> None:
        conn = self._conn()
        try:
            loaded = self.index.load()
            if not loaded:
                logger.info("index_rebuild", reason="missing_or_stale")
                loaded = self._build_in_child(last_event) and self.index.load()
                if not loaded:
                    self.index.rebuild(conn, last_event)
            if loaded:  # messages imported while the daemon was down (or the child built)
                seen = self.index.max_message_id
                if catch_up(self.index, conn, seen) > seen:
                    self.index.save()
        finally:
            conn.close()
        self.ready.set()

    def _build_in_child(self, last_event: int) -> bool:
        """A full build with the bundled model runs in a child process (context/build.py:
        the build's freed heap stays in the child, not in the daemon's RSS); any other
        embedder (a LiteLLM provider, whose calls the daemon accounts) builds in-process.
        False when it did not run or failed: the caller builds in-process then."""
        embedder = self.index.embedder
        inner = getattr(embedder, "inner", embedder)  # under its accounting (embed_calls)
        if not isinstance(inner, BundledEmbedder):
            return False
        if inner.name != bundled().name:
            return False
        status = self.index.status

        def progress(fraction: float) -> None:
            status.progress = min(0.99, fraction)

        status.building, status.progress = True, 0.0
        try:
            ok = run_child(
                Path(self._state.settings.data_dir), Path(self._state.db.path), last_event, progress,
                on_call=getattr(embedder, "record", None),  # the child's embedding calls
            )  # fmt: skip
            status.progress = 1.0 if ok else 0.0
            return ok
        except OSError as exc:
            logger.warning("index_build_child_unavailable", error=type(exc).__name__)
            return False
        finally:
            status.building = False

    async def run(self, stop: anyio.Event) -> None:
        """Load (or build) off the loop, then keep up with `messages_synced` events."""
        bus = self._state.bus
        last = await bus.last_id()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._report_progress, bus)
            built = await self._prepare_until_built(last, stop)
            tg.cancel_scope.cancel()
        if not built:
            return
        await bus.publish("global", catalogue.IndexReady(**self.index.describe()))
        after = self.index.event_id or last
        try:
            await self._follow(bus, after, stop)
        finally:  # a clean stop keeps every live update not yet saved
            self.close_readers()
            if self._dirty:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.index.save)

    async def _prepare_until_built(self, last: int, stop: anyio.Event) -> bool:
        """Load or build, again after a wait while the embedding provider fails (ingest and
        everything else go on meanwhile; search answers index_unavailable). False: stopped."""
        for attempt in itertools.count():
            try:
                await _in_build_thread(self._prepare, last)
                return True
            except EmbeddingFailed as exc:
                wait = BUILD_RETRY_S[min(attempt, len(BUILD_RETRY_S) - 1)]
                logger.warning("index_build_failed", error=exc.message, retry_in_s=wait)
                with anyio.move_on_after(wait):
                    await stop.wait()
                if stop.is_set():
                    return False
        return False  # pragma: no cover

    def close_readers(self) -> None:
        """Close the search connections kept between queries (a later search opens anew)."""
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                return

    async def _follow(self, bus: Any, after: int, stop: anyio.Event) -> None:
        # Woken by the daemon's own commits (notify) and, for other processes', by the bus's
        # slow fallback poll: no timer of its own, so an idle daemon does not wake for it.
        # The daemon cancels this task at shutdown; `stop` is checked between batches.
        last_refresh = 0.0
        # What a failed refresh (the embedding provider failing) left to do, retried after
        # RETRY_REFRESH_S or with the next events, whichever comes first.
        retry: tuple[set[int], set[int], set[int]] | None = None
        while not stop.is_set():
            save_due = self._dirty and time.monotonic() - self._saved_at >= SAVE_EVERY_S
            timeout = RETRY_REFRESH_S if retry else QUIET_S if save_due else None
            events = await bus.read(after, limit=500, timeout=timeout)
            if not events:
                if retry:
                    retry = await self._try_refresh(*retry, after)
                elif save_due:  # quiet for QUIET_S: now a save cannot delay a live message
                    await anyio.to_thread.run_sync(self._save)
                continue
            # The commit that woke us publishes to SSE right after its notify: let it go first.
            wait = max(DEFER_S, last_refresh + REFRESH_EVERY_S - time.monotonic())
            await anyio.sleep(wait)
            events += await bus.read(events[-1].id, limit=5000, timeout=0)
            last_refresh = time.monotonic()
            after = events[-1].id
            convs: set[int] = set()
            chats: set[int] = set()
            whole: set[int] = set()
            for e in events:
                if isinstance(p := e.payload, catalogue.MessagesSynced):
                    chats.add(p.chat_id)
                    convs.update(p.conversation_ids)
                    if not p.conversation_ids:
                        whole.add(p.chat_id)
            if retry:
                convs |= retry[0]
                chats |= retry[1]
                whole |= retry[2]
            if chats:
                self.index.status.pending = len(convs) + len(whole)
                retry = await self._try_refresh(convs, chats, whole, after)

    async def _try_refresh(
        self, convs: set[int], chats: set[int], whole: set[int], after: int
    ) -> tuple[set[int], set[int], set[int]] | None:
        """Refresh; when the provider fails, log and hand back what is left to do."""
        try:
            await anyio.to_thread.run_sync(self._refresh, sorted(convs), chats, whole, after)
        except EmbeddingFailed as exc:
            logger.warning(
                "index_refresh_failed", error=exc.message, conversations=len(convs),
                retry_in_s=RETRY_REFRESH_S,
            )  # fmt: skip
            return convs, chats, whole
        return None

    async def _report_progress(self, bus: Any) -> None:
        """While a build runs: `index_progress` events (ids and counts only) every second."""
        while True:
            await anyio.sleep(1.0)
            if self.index.status.building:
                await bus.publish("global", catalogue.IndexProgress(**self.index.describe()))

    def _refresh(self, convs: list[int], chats: set[int], whole: set[int], event_id: int) -> None:
        conn = self._conn()
        start = time.perf_counter()
        try:
            embedded = self.index.refresh(conn, convs, sorted(chats))
            if whole:
                embedded += self.index.refresh_chats(conn, sorted(whole))
            logger.debug(
                "index_refreshed",
                conversations=len(convs),
                chats=len(whole),
                embedded=embedded,
                ms=round((time.perf_counter() - start) * 1000, 1),
            )
            self.index.event_id = event_id
            self.index.status.pending = 0
            # Saving writes the whole index, so live updates are saved at most every
            # SAVE_EVERY_S and only after QUIET_S without events (the follower's loop); after
            # a crash the events since the saved position are replayed (a refresh is
            # idempotent).
            self._dirty = True
        finally:
            conn.close()

    def _save(self) -> None:
        self.index.save()
        self._saved_at, self._dirty = time.monotonic(), False

    # -- querying (thread side) --

    def search(
        self,
        q: str,
        mode: str,
        *,
        chat_id: int | None = None,
        contact_id: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 50,
    ) -> list[tuple[Any, float, list[str]]]:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._reader()
        kept = False
        try:
            hits = ranked_search(
                conn,
                self.index,
                q,
                mode,
                chat_id=chat_id,
                contact_id=contact_id,
                since_ns=since_ns,
                until_ns=until_ns,
                limit=limit,
            )
            if self._readers.qsize() < READERS:
                self._readers.put(conn)
                kept = True
            return hits
        finally:
            if not kept:  # an error may leave a statement open: never pool that connection
                conn.close()

    def _reader(self) -> sqlite3.Connection:
        """A read connection for search, kept for the next query: opening one parses the
        app's whole schema on its first statement (~6 ms of a ~25 ms hybrid query on the
        300k library). Its page cache is bounded (READER_CACHE_KB), as it now lives on."""
        conn = self._conn()
        conn.execute(f"PRAGMA cache_size=-{READER_CACHE_KB}")
        return conn


async def _in_build_thread(fn: Callable[[int], None], arg: int) -> None:
    """Run a load or build in its own thread at a lower CPU priority (Linux: nice is per
    thread, and hnswlib's insert threads inherit it). On 2 busy cores the build otherwise
    takes the CPU that live sync needs: commit->SSE during a 100k build, p50/p95 59/120 and
    51/103 ms at nice 0 against 30/85 and 16/50 ms at nice 15 (bench_index_live.py, runs
    interleaved), build time no longer. Its own thread, so the priority never sticks to a
    pooled worker that later runs a live sync. Not cancellable, like anyio's threads: a stop
    waits for the build (a half-written index is never loaded anyway)."""
    token = anyio.lowlevel.current_token()
    done = anyio.Event()
    failed: list[BaseException] = []

    def body() -> None:
        if sys.platform == "linux":
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BUILD_NICE)
        try:
            fn(arg)
        except BaseException as exc:
            failed.append(exc)
        finally:
            with contextlib.suppress(Exception):  # the loop may be gone: nobody waits
                anyio.from_thread.run_sync(done.set, token=token)

    threading.Thread(target=body, name="chatstats-index-build", daemon=True).start()
    with anyio.CancelScope(shield=True):
        await done.wait()
    if failed:
        raise failed[0]


def catch_up(index: VectorIndex, conn: sqlite3.Connection, after_id: int) -> int:
    """Refresh (in memory) the chats of messages with ids above `after_id`, written since the
    index last followed them; returns the newest message id seen (`after_id` if none)."""
    rows = conn.execute(
        "SELECT chat_id, max(id) FROM messages WHERE id > :seen AND chat_id IS NOT NULL"
        " GROUP BY chat_id",
        {"seen": after_id},
    ).fetchall()
    if rows:
        index.refresh_chats(conn, [r[0] for r in rows])
    newest: int = max([after_id, *(r[1] for r in rows)])
    return newest


def ranked_search(
    conn: sqlite3.Connection,
    index: VectorIndex | None,
    q: str,
    mode: str,
    *,
    chat_id: int | None = None,
    contact_id: int | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    limit: int = 50,
) -> list[tuple[Any, float, list[str]]]:
    """Best first: (message, fused score, which lists matched it). `index` None (no vector
    index loaded, as for a reader without the daemon) leaves the word list alone in the
    fusion, so mode "hybrid" still ranks by bm25 and "semantic" is refused."""
    if mode not in ("semantic", "hybrid"):
        raise BadRequest("mode must be text, semantic or hybrid")
    if index is None and mode == "semantic":
        raise BadRequest("semantic search needs the vector index, which is not loaded")
    terms = search_terms(q)
    if chat_id is not None and not store.chat_exists(conn, chat_id):
        raise NotFound(f"no chat {chat_id}")
    filtered = any(x is not None for x in (chat_id, contact_id, since_ns, until_ns))
    k = 4 * CANDIDATES if filtered else CANDIDATES
    lists: list[list[int]] = []
    matched: dict[int, set[str]] = {}
    if index is not None:
        semantic = _rrf(_semantic(index, " ".join(terms), k), [1.0, WINDOW_WEIGHT])
        lists.append(sorted(semantic, key=lambda m: -semantic[m]))
        for mid in semantic:
            matched.setdefault(mid, set()).add("semantic")
    if mode == "hybrid":
        words = _fts_ranked(conn, q, k)
        lists.append(words)
        for mid in words:
            matched.setdefault(mid, set()).add("text")
    scores = _rrf(lists, head=HEAD)
    ordered = sorted(scores, key=lambda m: -scores[m])
    # Unfiltered, a few times the page is enough (only unsent or non-message rows drop out
    # here); filtered, every candidate is read and the filters pick.
    rows = store.messages_by_ids(conn, ordered if filtered else ordered[: 3 * limit + 10])
    keep = {
        r["id"]: r
        for r in rows
        if r["kind"] == "message"
        and not r["unsent"]
        and (chat_id is None or r["chat_id"] == chat_id)
        and (contact_id is None or r["contact_id"] == contact_id)
        and (since_ns is None or r["date_ns"] >= since_ns)
        and (until_ns is None or r["date_ns"] < until_ns)
    }
    chosen = [keep[m] for m in ordered if m in keep][:limit]
    built = {m.id: m for m in _build_messages(conn, chosen)}
    return [(built[r["id"]], round(scores[r["id"]], 6), sorted(matched[r["id"]])) for r in chosen]


def _rrf(
    lists: list[list[int]], weights: list[float] | None = None, head: int | None = None
) -> dict[int, float]:
    """Reciprocal rank fusion: sum of weight / (RRF_K + rank); with `head`, a rank past it
    counts TAIL of that (see HEAD)."""
    scores: dict[int, float] = {}
    for n, ids in enumerate(lists):
        w = 1.0 if weights is None else weights[n]
        for rank, mid in enumerate(dict.fromkeys(ids)):
            at = w if head is None or rank < head else w * TAIL
            scores[mid] = scores.get(mid, 0.0) + at / (RRF_K + rank + 1)
    return scores


def _semantic(index: VectorIndex, q: str, k: int) -> list[list[int]]:
    """The two vector lists: singles, and windows as their message nearest the query.
    Fused together first, so in hybrid the vectors and the words weigh the same."""
    with embed_calls.purpose("search"):  # accounted apart from the index's own calls
        qv = index.embedder.embed([q])[0]
    found = index.query(qv, k)
    return [[mid for mid, _s in found[key]] for key in ("single", "window")]
