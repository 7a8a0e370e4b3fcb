"""The vector index: single messages and windows of a conversation, embedded into hnswlib.

Units. Two kinds, both speaker-labelled lines ("me: ...", "Sam: ..."), never crossing a
conversation (the 90-minute split, so a window never mixes two sittings):
- a *single*: one message's line. A fact said once in one message is matched by its own
  words, undiluted by its neighbours;
- a *window*: WINDOW consecutive messages every STRIDE (each message sits in two windows).
  A reply leans on what it answers ("yes, Friday at 6" after "when do you land?"), so the
  window carries the topic its lines lack. A window hit is mapped back to its messages.
Singles and windows live in two hnswlib indexes so each gets its own candidate list (there
are four singles per window: in one index the windows would be crowded out). Tapbacks, system
rows, unsent messages and attachment-only rows are not units. Each unit is keyed by a digest
of its message ids and text.

Updates. A conversation's units are recomputed from the database when the daemon says it
changed (`messages_synced` events carry the conversation ids of new, edited and unsent
messages); a unit whose digest is unchanged keeps its vector, the others are re-embedded or
marked deleted. So an edit re-embeds its single and the two windows around it, an unsent
message leaves the index at once, and a live message costs one conversation's read (tens of
rows), not its whole chat's.

Memory. Everything per unit is a numpy column indexed by label (kind, conversation, message
id, position, length, digest): ~30 bytes a unit instead of ~300 as Python objects, which
matters at 350k units against the 500 MB budget; vectors are DIM floats (the bundled model's
first 128 of 256 dimensions, see embed.py).

Files. `vectors-<gen>.bin` and `windows-<gen>.bin` (hnswlib), `units-<gen>.npz` (the unit
columns) and `index.json` (model, unit scheme, file names and sizes, the event position) in
the data directory, mode 0600, each written to a temporary file and renamed into place, the
metadata last: a kill -9 at any point leaves the previous complete set (or none). Anything
unreadable or made by another model or unit scheme is rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

WINDOW, STRIDE = 8, 4
_LINE = 600  # characters of one message that count (a pasted essay is not a better match)
SCHEME = f"conv-single+w{WINDOW}s{STRIDE}-speaker-v4"
META_NAME = "index.json"
_M, _EF_CONSTRUCTION, _EF = 16, 64, 96
_EMBED_BATCH = 4096
SINGLE, WINDOWED = 1, 2  # unit kinds; 0 is a dead label

_ELIGIBLE = (
    "SELECT m.conversation_id, m.chat_id, m.id, m.is_from_me, m.text,"
    " coalesce(k.name, h.identifier) AS who"
    " FROM messages m LEFT JOIN handles h ON h.id = m.handle_id"
    " LEFT JOIN contacts k ON k.id = h.contact_id"
    " WHERE {where} AND m.kind = 'message' AND m.unsent = 0 AND m.conversation_id IS NOT NULL"
    " AND m.text IS NOT NULL AND trim(replace(m.text, char(65532), '')) != ''"
    " ORDER BY m.conversation_id, m.date_ns, m.id"
)
_ONE_CONVERSATION = _ELIGIBLE.format(where="m.conversation_id = :conversation_id")
_EVERYTHING = _ELIGIBLE.format(where="1")


@dataclass(frozen=True)
class Unit:
    """A unit to embed: its kind, conversation, first message and span, text and digest."""

    kind: int
    chat_id: int
    conversation_id: int
    message_id: int
    pos: int
    length: int
    digest: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _digest(ids: Iterable[int], lines: Iterable[str]) -> int:
    h = hashlib.blake2b(digest_size=8)
    h.update(",".join(map(str, ids)).encode())
    for line in lines:
        h.update(b"\n")
        h.update(line.encode())
    return int.from_bytes(h.digest(), "little", signed=True)


def window_starts(n: int) -> list[int]:
    """Window positions over n messages: every STRIDE, the last one flush with the end, so
    every message is in a window, a conversation of one message too (a window of one).
    Search fuses singles with windows, so a message in no window could only score half what
    a message found by both does: a fact sent alone after a gap (a new conversation of one)
    ranked 16th although its single was the nearest."""
    if n < 1:
        return []
    starts = list(range(0, max(n - WINDOW, 0) + 1, STRIDE))
    if starts[-1] + WINDOW < n:
        starts.append(n - WINDOW)
    return starts


def conversation_units(rows: list[Any]) -> list[Unit]:
    """Singles and windows of one conversation's eligible rows (conversation_id, chat_id,
    id, is_from_me, text, who), in date order. Texts are never stored or logged."""
    if not rows:
        return []
    conv, chat = int(rows[0][0]), int(rows[0][1])
    ids = [int(r[2]) for r in rows]
    lines = [
        ("me" if r[3] else (r[5] or "them")) + ": " + r[4].replace("\ufffc", "").strip()[:_LINE]
        for r in rows
    ]
    out = [
        Unit(SINGLE, chat, conv, mid, i, 1, _digest((mid,), (line,)), (line,))
        for i, (mid, line) in enumerate(zip(ids, lines, strict=True))
    ]
    for p in window_starts(len(rows)):
        span_ids, span_lines = ids[p : p + WINDOW], tuple(lines[p : p + WINDOW])
        digest = _digest(span_ids, span_lines)
        out.append(Unit(WINDOWED, chat, conv, ids[p], p, len(span_ids), digest, span_lines))
    return out


def _unit_rows(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def _save_hnsw(index: Any, path: Path) -> None:
    index.save_index(str(path))


def _write_private(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file in the same folder, 0600, fsync, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.chmod(tmp, 0o600)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class Status:
    building: bool = False
    progress: float = 0.0
    pending: int = 0
    built_at: int | None = None


_COLUMNS = {
    "kind": np.int8,
    "conv": np.int64,
    "mid": np.int64,
    "pos": np.int32,
    "length": np.int16,
    "digest": np.int64,
}


class _Columns:
    """Per-label unit columns, grown by doubling."""

    def __init__(self, capacity: int = 1024) -> None:
        self.arrays: dict[str, npt.NDArray[Any]] = {
            name: np.zeros(capacity, dtype=dt) for name, dt in _COLUMNS.items()
        }

    def ensure(self, size: int) -> None:
        cap = len(self.arrays["kind"])
        if size <= cap:
            return
        new = max(size, 2 * cap)
        for name, arr in self.arrays.items():
            grown = np.zeros(new, dtype=arr.dtype)
            grown[:cap] = arr
            self.arrays[name] = grown

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self.arrays[name]


@dataclass
class VectorIndex:
    """Two hnswlib indexes (singles, windows) and the unit columns; every method is
    thread-safe (one mutex: hnswlib's add_items and knn_query must not overlap)."""

    data_dir: Path
    embedder: Any
    status: Status = field(default_factory=Status)
    event_id: int = 0
    max_message_id: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._reset()
        self._gen = 0
        # Units embedded by the last refresh/rebuild: what tests and the status report count.
        self.last_embedded = 0
        self.embedded_total = 0

    def _reset(self) -> None:
        self._hnsw: dict[int, Any] = {SINGLE: None, WINDOWED: None}
        self._cols = _Columns()
        self._next_label = 0
        self._live = 0
        self._live_kind = {SINGLE: 0, WINDOWED: 0}
        self._by_conv: dict[int, npt.NDArray[np.int64]] = {}
        self._conv_chat: dict[int, int] = {}
        self._chat_convs: dict[int, set[int]] = {}
        self._center: dict[int, npt.NDArray[np.float32]] = {}
        self._expect: dict[int, int] = {}

    def _place(self, conv: int, chat: int | None) -> None:
        """Record (chat None: forget) which chat a conversation belongs to."""
        old = self._conv_chat.pop(conv, None)
        if old is not None:
            self._chat_convs.get(old, set()).discard(conv)
        if chat is not None:
            self._conv_chat[conv] = chat
            self._chat_convs.setdefault(chat, set()).add(conv)

    # -- status --

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "model": self.embedder.name,
                "dim": int(self.embedder.dim),
                "items": self._live,
                "pending": self.status.pending,
                "building": self.status.building,
                "progress": round(self.status.progress, 4),
                "built_at": self.status.built_at,
            }

    # -- files --

    def load(self) -> bool:
        """Load the saved index if it is complete and made by this model and unit scheme."""
        import hnswlib  # type: ignore[import-untyped]  # ships no type hints

        try:
            meta = json.loads((self.data_dir / META_NAME).read_text())
            if meta.get("model") != self.embedder.name or meta.get("scheme") != SCHEME:
                return False
            for name, size in meta["bytes"].items():
                if (self.data_dir / name).stat().st_size != size:
                    return False
            hnsw: dict[int, Any] = {SINGLE: None, WINDOWED: None}
            for kind, key in ((SINGLE, "singles"), (WINDOWED, "windows")):
                name = meta["files"].get(key)
                if name is None:
                    continue
                index = hnswlib.Index(space="ip", dim=int(meta["dim"]))
                # Room for what is in it and some growth, not the build's doubled capacity:
                # hnswlib touches a lock and a level per slot (~45 bytes) whatever is used.
                capacity = int(meta["capacity"][key])
                if key in meta.get("counts", {}):
                    count = int(meta["counts"][key])
                    capacity = min(capacity, count + max(1024, count // 16))
                index.load_index(str(self.data_dir / name), max_elements=capacity)
                index.set_ef(_EF)
                hnsw[kind] = index
            with np.load(self.data_dir / meta["files"]["units"]) as z:
                cols = _Columns(max(1024, int(meta["next_label"])))
                for name in _COLUMNS:
                    got = z[name]
                    cols[name][: len(got)] = got
                center = {
                    k: np.asarray(z[f"center{k}"], dtype=np.float32)
                    for k in (SINGLE, WINDOWED)
                    if f"center{k}" in z
                }
            conv_chat = {int(k): int(v) for k, v in meta["conversations"].items()}
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError):
            return False
        with self._lock:
            self._hnsw, self._cols, self._center = hnsw, cols, center
            self._next_label = int(meta["next_label"])
            alive = np.flatnonzero(cols["kind"][: self._next_label])
            self._live = len(alive)
            kinds = cols["kind"][alive]
            self._live_kind = {k: int((kinds == k).sum()) for k in (SINGLE, WINDOWED)}
            order = alive[np.argsort(cols["conv"][alive], kind="stable")]
            convs = cols["conv"][order]
            cuts = np.flatnonzero(np.diff(convs)) + 1
            self._by_conv = {
                int(convs[part[0]]): order[part]
                for part in np.split(np.arange(len(order)), cuts)
                if len(part)
            }
            self._conv_chat, self._chat_convs = {}, {}
            for conv, chat in conv_chat.items():
                self._place(conv, chat)
            self._gen = int(meta["gen"])
            self.event_id = int(meta["event_id"])
            self.max_message_id = int(meta.get("max_message_id", 0))
            self.status.built_at = int(meta["built_at"])
            if not self.embedder.dim:
                self.embedder.dim = int(meta["dim"])
        return True

    def save(self) -> None:
        with self._lock:
            if self._hnsw[SINGLE] is None and self._hnsw[WINDOWED] is None:
                return
            self._gen += 1
            gen = self._gen
            files: dict[str, str] = {}
            capacity: dict[str, int] = {}
            counts: dict[str, int] = {}
            dim = 0
            for kind, key in ((SINGLE, "singles"), (WINDOWED, "windows")):
                index = self._hnsw[kind]
                if index is None:
                    continue
                name = f"{key}-{gen}.bin"
                _write_private(self.data_dir / name, functools.partial(_save_hnsw, index))
                files[key], capacity[key], dim = name, int(index.get_max_elements()), index.dim
                counts[key] = int(index.get_current_count())
            buf = io.BytesIO()
            arrays: dict[str, Any] = {
                k: v[: self._next_label] for k, v in self._cols.arrays.items()
            }
            for k, c in self._center.items():
                arrays[f"center{k}"] = c
            np.savez(buf, **arrays)
            files["units"] = f"units-{gen}.npz"
            _write_private(self.data_dir / files["units"], lambda p: p.write_bytes(buf.getvalue()))
            meta = {
                "model": self.embedder.name,
                "scheme": SCHEME,
                "dim": int(dim),
                "files": files,
                "bytes": {n: (self.data_dir / n).stat().st_size for n in files.values()},
                "capacity": capacity,
                "counts": counts,
                "next_label": self._next_label,
                "gen": gen,
                "event_id": self.event_id,
                "max_message_id": self.max_message_id,
                "built_at": self.status.built_at or int(time.time()),
                "conversations": {str(k): v for k, v in self._conv_chat.items()},
            }
            payload = json.dumps(meta, separators=(",", ":"))
            _write_private(self.data_dir / META_NAME, lambda p: p.write_text(payload))
            keep = set(files.values())
        for pattern in ("singles-*.bin", "windows-*.bin", "units-*.npz", "vectors-*.bin"):
            for old in self.data_dir.glob(pattern):
                if old.name not in keep:
                    old.unlink(missing_ok=True)

    # -- building and updating --

    def rebuild(self, conn: sqlite3.Connection, event_id: int = 0) -> None:
        """Everything from scratch (off the event loop: this takes seconds to a minute).
        One ordered scan of every eligible message, cut into conversations as it goes."""
        total = conn.execute("SELECT count(*) FROM messages WHERE kind = 'message'").fetchone()[0]
        convs = conn.execute("SELECT count(*) FROM conversations").fetchone()[0]
        with self._lock:
            self._reset()
            # Sized once for what the scan can yield (a single per message, at most a window
            # per STRIDE messages plus two per conversation), so the graphs never grow by
            # doubling mid-build: each resize copies them and leaves the old heap behind.
            self._expect = {SINGLE: total + 1024, WINDOWED: total // STRIDE + 2 * convs + 1024}
            self.status.building, self.status.progress = True, 0.0
        embedded = 0
        try:
            todo: list[Unit] = []
            seen = 0
            conv_rows: list[Any] = []
            cursor = conn.execute(_EVERYTHING)
            while batch := cursor.fetchmany(2000):
                for r in batch:
                    if conv_rows and r[0] != conv_rows[0][0]:
                        todo.extend(self._note(conv_rows))
                        conv_rows = []
                    conv_rows.append(r)
                seen += len(batch)
                if len(todo) >= _EMBED_BATCH:
                    embedded += self._apply(todo, [])
                    todo = []
                    self.status.progress = min(0.99, seen / max(1, total))
            todo.extend(self._note(conv_rows))
            embedded += self._apply(todo, [])
            with self._lock:
                self.event_id = max(self.event_id, event_id)
                self.status.built_at = int(time.time())
        finally:
            with self._lock:
                self.status.building, self.status.progress = False, 1.0
        self.last_embedded = embedded
        self.save()

    def _note(self, rows: list[Any]) -> list[Unit]:
        if rows:
            self._place(int(rows[0][0]), int(rows[0][1]))
        return conversation_units(rows)

    def refresh_chats(self, conn: sqlite3.Connection, chat_ids: Iterable[int]) -> int:
        """Every conversation of these chats (a catch-up after the daemon was down, or an
        event that named no conversation)."""
        chat_ids = list(dict.fromkeys(chat_ids))
        convs = [
            r[0]
            for c in chat_ids
            for r in conn.execute("SELECT id FROM conversations WHERE chat_id = :c", {"c": c})
        ]
        return self.refresh(conn, convs, chat_ids)

    def refresh(
        self,
        conn: sqlite3.Connection,
        conversation_ids: Iterable[int],
        chat_ids: Iterable[int] = (),
    ) -> int:
        """Recompute these conversations' units and embed only the ones that changed; for
        `chat_ids`, also drop indexed conversations that no longer exist (a re-split merged
        or removed them). Returns how many units were embedded."""
        convs = set(dict.fromkeys(conversation_ids))
        for chat_id in dict.fromkeys(chat_ids):
            existing = {
                r[0]
                for r in conn.execute(
                    "SELECT id FROM conversations WHERE chat_id = :c", {"c": chat_id}
                )
            }
            with self._lock:
                convs |= self._chat_convs.get(chat_id, set()) - existing
        todo: list[Unit] = []
        dead: list[int] = []
        for conv in sorted(convs):
            rows = conn.execute(_ONE_CONVERSATION, {"conversation_id": conv}).fetchall()
            fresh = conversation_units(rows)
            with self._lock:
                old = self._by_conv.get(conv, np.zeros(0, dtype=np.int64))
                by_digest = {
                    (int(k), int(d)): int(label)
                    for label, k, d in zip(
                        old, self._cols["kind"][old], self._cols["digest"][old], strict=True
                    )
                }
                keep: list[int] = []
                for unit in fresh:
                    label = by_digest.pop((unit.kind, unit.digest), None)
                    if label is None:
                        todo.append(unit)
                    else:  # same messages, same text: an earlier insert may move it
                        self._cols["pos"][label] = unit.pos
                        keep.append(label)
                dead.extend(by_digest.values())
                self._place(conv, int(rows[0][1]) if rows else None)
                self._by_conv[conv] = np.asarray(keep, dtype=np.int64)
        embedded = self._apply(todo, dead)
        self.last_embedded = embedded
        return embedded

    def _apply(self, todo: list[Unit], dead: list[int]) -> int:
        """Embed `todo` (outside the lock: the slow part), then swap them in and `dead` out."""
        vectors = self._vectors(todo) if todo else None
        import hnswlib

        with self._lock:
            if vectors is not None:
                kinds_of = np.fromiter((u.kind for u in todo), dtype=np.int8, count=len(todo))
                for kind in (SINGLE, WINDOWED):
                    rows = kinds_of == kind
                    if rows.any():
                        if kind not in self._center:
                            self._center[kind] = vectors[rows].mean(axis=0)
                        vectors[rows] = self._centred(vectors[rows], kind)
            cols = self._cols
            for label in dead:
                kind = int(cols["kind"][label])
                if kind:
                    self._hnsw[kind].mark_deleted(label)
                    cols["kind"][label] = 0
                    self._live -= 1
                    self._live_kind[kind] -= 1
            for c in {int(cols["conv"][label]) for label in dead}:
                labels = self._by_conv.get(c)
                if labels is not None:
                    labels = labels[cols["kind"][labels] != 0]
                    if len(labels):
                        self._by_conv[c] = labels
                    else:
                        self._by_conv.pop(c, None)
            if not todo or vectors is None:
                return 0
            start = self._next_label
            labels = np.arange(start, start + len(todo), dtype=np.int64)
            self._next_label += len(todo)
            cols.ensure(self._next_label)
            kinds = np.fromiter((u.kind for u in todo), dtype=np.int8, count=len(todo))
            cols["kind"][labels] = kinds
            cols["conv"][labels] = [u.conversation_id for u in todo]
            cols["mid"][labels] = [u.message_id for u in todo]
            cols["pos"][labels] = [u.pos for u in todo]
            cols["length"][labels] = [u.length for u in todo]
            cols["digest"][labels] = [u.digest for u in todo]
            for kind in (SINGLE, WINDOWED):
                rows = np.flatnonzero(kinds == kind)
                if not len(rows):
                    continue
                index = self._hnsw[kind]
                if index is None:
                    index = hnswlib.Index(space="ip", dim=int(vectors.shape[1]))
                    index.init_index(
                        max_elements=max(1024, 2 * len(rows), self._expect.get(kind, 0)),
                        M=_M,
                        ef_construction=_EF_CONSTRUCTION,
                    )
                    index.set_ef(_EF)
                    self._hnsw[kind] = index
                need = index.get_current_count() + len(rows)
                if need > index.get_max_elements():
                    index.resize_index(max(need, 2 * index.get_max_elements()))
                index.add_items(vectors[rows], labels[rows], num_threads=2)
                self._live_kind[kind] += len(rows)
            self._live += len(todo)
            per_conv: dict[int, list[int]] = {}
            for label, unit in zip(labels.tolist(), todo, strict=True):
                per_conv.setdefault(unit.conversation_id, []).append(label)
            for c, new in per_conv.items():
                old = self._by_conv.get(c)
                extra = np.asarray(new, dtype=np.int64)
                self._by_conv[c] = extra if old is None else np.concatenate([old, extra])
            self.max_message_id = max(self.max_message_id, int(cols["mid"][labels].max()))
            self.embedded_total += len(todo)
        return len(todo)

    def _vectors(self, todo: list[Unit]) -> npt.NDArray[np.float32]:
        """One row per unit. With an embedder that gives token sums (the bundled one), each
        distinct line is tokenised once and a window is the sum of its lines' sums; any
        other embedder embeds each unit's text."""
        sums = getattr(self.embedder, "sums", None)
        if sums is None:
            return np.asarray(self.embedder.embed([u.text for u in todo]), dtype=np.float32)
        distinct: dict[str, int] = {}
        for u in todo:
            for line in u.lines:
                distinct.setdefault(line, len(distinct))
        table = sums(list(distinct))
        flat = np.fromiter((distinct[line] for u in todo for line in u.lines), dtype=np.int64)
        lengths = np.fromiter((len(u.lines) for u in todo), dtype=np.int64, count=len(todo))
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        out = np.add.reduceat(table[flat], starts, axis=0).astype(np.float32)
        return _unit_rows(out)

    def _centred(self, vectors: npt.NDArray[np.float32], kind: int) -> npt.NDArray[np.float32]:
        """Vectors minus the mean unit of their kind, renormalised. Static word vectors share
        a large common direction (norm ~0.37 of 1 here), so raw cosines mostly measure it:
        measured on the planted questions (20k library, singles recall@10) 0.03 raw ->
        0.19 centred, and hnswlib builds faster on the spread-out vectors. Each mean is
        taken from the first batch of its kind embedded and kept with the index (a window,
        a sum of eight lines, sits nearer the common direction than a single does)."""
        center = self._center.get(kind)
        return vectors if center is None else _unit_rows(vectors - center)

    # -- querying --

    # -- querying --

    def query(
        self, vector: npt.NDArray[np.float32], k: int, windows: int = 30
    ) -> dict[str, list[tuple[int, float]]]:
        """The k nearest singles and the `windows` nearest windows, each as (message id,
        cosine). A window stands for its message nearest the query (by that single's own
        vector): the window found the place, the single says which line answers. Windows
        are fewer than singles because each costs its members' vectors (one batched read)."""
        out: dict[str, list[tuple[int, float]]] = {"single": [], "window": []}
        with self._lock:
            raw = vector.reshape(1, -1).astype(np.float32)
            cols = self._cols
            for kind, key, want in ((SINGLE, "single", k), (WINDOWED, "window", windows)):
                index = self._hnsw[kind]
                kk = min(want, self._live_kind[kind])
                if index is None or kk <= 0:
                    continue
                q = self._centred(raw, kind)
                index.set_ef(max(_EF, kk))
                try:
                    labels, dists = index.knn_query(q, k=kk)
                except RuntimeError:  # fewer reachable live items than asked
                    labels, dists = index.knn_query(q, k=max(1, kk // 2))
                found = labels[0].astype(np.int64)
                sims = 1.0 - dists[0]
                alive = cols["kind"][found] == kind
                found, sims = found[alive], sims[alive]
                if kind == WINDOWED:
                    found = self._best_members(found, self._centred(raw, SINGLE)[0])
                out[key] = list(zip(cols["mid"][found].tolist(), sims.tolist(), strict=True))
        return out

    def _best_members(
        self, windows: npt.NDArray[np.int64], q: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.int64]:
        """For each window, its live single nearest `q` (the window itself when it has none
        left: its first message)."""
        cols, singles = self._cols, self._hnsw[SINGLE]
        if singles is None or not len(windows):
            return windows
        empty = np.zeros(0, dtype=np.int64)
        parts = [self._by_conv.get(int(c), empty) for c in cols["conv"][windows].tolist()]
        cand = np.concatenate(parts) if parts else empty
        owner = np.repeat(np.arange(len(windows)), [len(p) for p in parts])
        pos, start = cols["pos"][cand], cols["pos"][windows][owner]
        ok = (cols["kind"][cand] == SINGLE) & (pos >= start)
        ok &= pos < start + cols["length"][windows][owner]
        cand, owner = cand[ok], owner[ok]
        best = windows.copy()
        if len(cand):
            sims = np.asarray(singles.get_items(cand.tolist()), dtype=np.float32) @ q
            order = np.lexsort((-sims, owner))
            first = order[np.r_[True, owner[order][1:] != owner[order][:-1]]]
            best[owner[first]] = cand[first]
        return best
