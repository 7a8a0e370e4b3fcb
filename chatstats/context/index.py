"""The vector index: one unit per message, embedded into hnswlib.

Units. A unit is one message's speaker-labelled line ("me: ...", "Sam: ..."), optionally
mixed with its CONTEXT neighbours (see the figures by CONTEXT_WEIGHT: windows of four
messages and context mixing both lost recall on the planted questions against a message
alone, because averaging static word vectors dilutes the one line that holds the answer).
Tapbacks, system rows, unsent messages and attachment-only rows are not units, and a hit
is its message. Each unit's key is its message ids and a digest of its text.

Updates. A chat's units are recomputed from the database whenever the daemon says the chat
changed (`messages_synced` events: new, edited, unsent messages); a unit whose text is
unchanged keeps its vector, others are re-embedded or marked deleted. So an edit
re-embeds one message and an unsent message leaves the index at once.

Files. `vectors-<gen>.bin` (hnswlib) and `index.json` (model, unit scheme, units, the
event position) in the data directory, mode 0600, each written to a temporary file and
renamed into place, the metadata last: a kill -9 at any point leaves the previous complete
pair (or none). Anything unreadable or made by another model or unit scheme is rebuilt.
"""

from __future__ import annotations

import hashlib
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

from chatstats.context.embed import Vectors

# Neighbours on each side mixed into a message's vector, and their weight. Measured on the
# planted questions (5k library, recall@10 semantic): weight 0 -> 0.35, 0.15 -> 0.15,
# 0.35 -> 0.15, 0.7 -> 0.08; so context stays available but off by default.
CONTEXT = 0
CONTEXT_WEIGHT = 0.0
_LINE = 600  # characters of one message that count (a pasted essay is not a better match)
SCHEME = f"message-ctx{CONTEXT}-w{CONTEXT_WEIGHT}-speaker-v2"
META_NAME = "index.json"
_M, _EF_CONSTRUCTION, _EF = 16, 64, 96
_EMBED_BATCH = 4096

_ELIGIBLE = (
    "SELECT m.id, m.is_from_me, m.text, coalesce(k.name, h.identifier) AS who"
    " FROM messages m LEFT JOIN handles h ON h.id = m.handle_id"
    " LEFT JOIN contacts k ON k.id = h.contact_id"
    " WHERE m.chat_id = :chat_id AND m.kind = 'message' AND m.unsent = 0"
    " AND m.text IS NOT NULL AND trim(replace(m.text, char(65532), '')) != ''"
    " ORDER BY m.date_ns, m.id"
)


@dataclass(frozen=True)
class Unit:
    """One message in its context: `message_ids` is (the message, its neighbours...)."""

    chat_id: int
    message_ids: tuple[int, ...]
    digest: str

    @property
    def message_id(self) -> int:
        return self.message_ids[0]


def chat_units(conn: sqlite3.Connection, chat_id: int) -> list[tuple[Unit, list[str]]]:
    """One unit per eligible message: its own speaker-labelled line first, then the lines of
    its CONTEXT neighbours on each side (texts are never stored or logged)."""
    rows = conn.execute(_ELIGIBLE, {"chat_id": chat_id}).fetchall()
    lines = [
        ("me" if r[1] else (r[3] or "them")) + ": " + r[2].replace("\ufffc", "").strip()[:_LINE]
        for r in rows
    ]
    out: list[tuple[Unit, list[str]]] = []
    for i, r in enumerate(rows):
        around = [j for j in range(i - CONTEXT, i + CONTEXT + 1) if j != i and 0 <= j < len(rows)]
        texts = [lines[i]] + [lines[j] for j in around]
        digest = hashlib.blake2b("\n".join(texts).encode(), digest_size=8).hexdigest()
        ids = (r[0], *(rows[j][0] for j in around))
        out.append((Unit(chat_id, ids, digest), texts))
    return out


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


@dataclass
class VectorIndex:
    """hnswlib + unit table; every method is thread-safe (a read/write lock via one mutex:
    hnswlib's add_items and knn_query must not overlap)."""

    data_dir: Path
    embedder: Any
    status: Status = field(default_factory=Status)
    event_id: int = 0
    max_message_id: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._index: Any = None
        self._units: dict[int, Unit] = {}
        self._by_chat: dict[int, dict[tuple[int, ...], int]] = {}
        self._next_label = 0
        self._gen = 0

    # -- status --

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "model": self.embedder.name,
                "dim": int(self.embedder.dim),
                "items": len(self._units),
                "pending": self.status.pending,
                "building": self.status.building,
                "progress": round(self.status.progress, 4),
                "built_at": self.status.built_at,
            }

    # -- files --

    def load(self) -> bool:
        """Load the saved index if it is complete and made by this model and unit scheme."""
        import hnswlib  # type: ignore[import-untyped]  # ships no type hints

        meta_path = self.data_dir / META_NAME
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("model") != self.embedder.name or meta.get("scheme") != SCHEME:
                return False
            vec_path = self.data_dir / meta["file"]
            if vec_path.stat().st_size != meta["bytes"]:
                return False
            index = hnswlib.Index(space="ip", dim=int(meta["dim"]))
            index.load_index(str(vec_path), max_elements=int(meta["capacity"]))
            index.set_ef(_EF)
            units = {
                int(label): Unit(int(c), tuple(int(x) for x in mids), str(d))
                for label, (c, mids, d) in meta["units"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return False
        with self._lock:
            self._index, self._units = index, units
            self._by_chat = {}
            for label, u in units.items():
                self._by_chat.setdefault(u.chat_id, {})[u.message_ids] = label
            self._next_label = int(meta["next_label"])
            self._gen = int(meta["gen"])
            self.event_id = int(meta["event_id"])
            self.max_message_id = int(meta.get("max_message_id", 0))
            self.status.built_at = int(meta["built_at"])
            if not self.embedder.dim:
                self.embedder.dim = int(meta["dim"])
        return True

    def save(self) -> None:
        with self._lock:
            if self._index is None:
                return
            self._gen += 1
            name = f"vectors-{self._gen}.bin"
            vec_path = self.data_dir / name
            _write_private(vec_path, lambda p: self._index.save_index(str(p)))
            meta = {
                "model": self.embedder.name,
                "scheme": SCHEME,
                "dim": int(self._index.dim),
                "file": name,
                "bytes": vec_path.stat().st_size,
                "capacity": int(self._index.get_max_elements()),
                "next_label": self._next_label,
                "gen": self._gen,
                "event_id": self.event_id,
                "max_message_id": self.max_message_id,
                "built_at": self.status.built_at or int(time.time()),
                "units": {
                    str(k): [u.chat_id, list(u.message_ids), u.digest]
                    for k, u in self._units.items()
                },
            }
            payload = json.dumps(meta, separators=(",", ":"))
            _write_private(self.data_dir / META_NAME, lambda p: p.write_text(payload))
            for old in self.data_dir.glob("vectors-*.bin"):
                if old.name != name:
                    old.unlink(missing_ok=True)

    # -- building and updating --

    def rebuild(self, conn: sqlite3.Connection, event_id: int = 0) -> None:
        """Everything from scratch (off the event loop: this takes seconds to a minute)."""
        chats = [r[0] for r in conn.execute("SELECT id FROM chats ORDER BY id")]
        with self._lock:
            self._index, self._units, self._by_chat, self._next_label = None, {}, {}, 0
            self.status.building, self.status.progress = True, 0.0
        try:
            self.refresh(conn, chats, progress=True)
            with self._lock:
                self.event_id = max(self.event_id, event_id)
                self.status.built_at = int(time.time())
        finally:
            with self._lock:
                self.status.building, self.status.progress = False, 1.0
        self.save()

    def refresh(
        self, conn: sqlite3.Connection, chat_ids: Iterable[int], progress: bool = False
    ) -> int:
        """Recompute these chats' units; embed only windows that changed. Returns embedded."""
        chat_ids = list(dict.fromkeys(chat_ids))
        todo: list[tuple[Unit, list[str]]] = []
        dead: list[int] = []
        for n, chat_id in enumerate(chat_ids):
            fresh = chat_units(conn, chat_id)
            with self._lock:
                old = dict(self._by_chat.get(chat_id, {}))
            keep: set[int] = set()
            for unit, text in fresh:
                label = old.get(unit.message_ids)
                if label is not None and self._units[label].digest == unit.digest:
                    keep.add(label)
                else:
                    todo.append((unit, text))
            dead.extend(label for label in old.values() if label not in keep)
            if len(todo) >= _EMBED_BATCH:
                self._add(todo, dead)
                todo, dead = [], []
            if progress:
                self.status.progress = (n + 1) / max(1, len(chat_ids))
        embedded = len(todo)
        self._add(todo, dead)
        return embedded

    def _add(self, todo: list[tuple[Unit, list[str]]], dead: list[int]) -> None:
        vectors = self._vectors([t for _, t in todo]) if todo else np.zeros((0, 0))
        import hnswlib

        with self._lock:
            for label in dead:
                u = self._units.pop(label, None)
                if u is not None:
                    self._by_chat.get(u.chat_id, {}).pop(u.message_ids, None)
                    self._index.mark_deleted(label)
            if not todo:
                return
            if self._index is None:
                self._index = hnswlib.Index(space="ip", dim=int(vectors.shape[1]))
                self._index.init_index(
                    max_elements=max(1024, 2 * len(todo)),
                    M=_M,
                    ef_construction=_EF_CONSTRUCTION,
                    allow_replace_deleted=False,
                )
                self._index.set_ef(_EF)
            need = self._index.get_current_count() + len(todo)
            if need > self._index.get_max_elements():
                self._index.resize_index(max(need, 2 * self._index.get_max_elements()))
            labels = np.arange(self._next_label, self._next_label + len(todo), dtype=np.int64)
            self._next_label += len(todo)
            self._index.add_items(vectors, labels, num_threads=2)
            for label, (unit, _t) in zip(labels.tolist(), todo, strict=True):
                self.max_message_id = max(self.max_message_id, *unit.message_ids)
                self._units[label] = unit
                self._by_chat.setdefault(unit.chat_id, {})[unit.message_ids] = label

    def _vectors(self, groups: list[list[str]]) -> Vectors:
        """Own line + CONTEXT_WEIGHT x mean of the neighbours' lines; each distinct line is
        embedded once (every line is some message's own line and its neighbours' context)."""
        distinct: dict[str, int] = {}
        for g in groups:
            for t in g:
                distinct.setdefault(t, len(distinct))
        table = self.embedder.embed(list(distinct))
        out = np.empty((len(groups), table.shape[1]), dtype=np.float32)
        for n, g in enumerate(groups):
            v = table[distinct[g[0]]].copy()
            if len(g) > 1:
                v += CONTEXT_WEIGHT * table[[distinct[t] for t in g[1:]]].mean(axis=0)
            out[n] = v / (np.linalg.norm(v) or 1.0)
        return out

    # -- querying --

    def query(self, vector: Vectors, k: int) -> list[tuple[Unit, float]]:
        """The k nearest units, best first, with cosine similarity."""
        with self._lock:
            if self._index is None or not self._units:
                return []
            k = min(k, len(self._units))
            self._index.set_ef(max(_EF, k))
            labels, dists = self._index.knn_query(vector.reshape(1, -1), k=k)
            return [
                (self._units[int(lab)], 1.0 - float(d))
                for lab, d in zip(labels[0], dists[0], strict=True)
                if int(lab) in self._units
            ]
