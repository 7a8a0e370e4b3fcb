"""Message bodies: attributedBody → text, and a helper process that decodes ahead of the import.

`decode_body` is the one rule for a row's text, used by every path (live sync, re-imports,
the first import): the decoded attributedBody first, the `text` column when the blob is
unreadable (counted as 'corrupt'), nothing when both are missing.

The first import of a whole history spends most of its Python time decoding blobs, in SQL
functions called by one `INSERT … SELECT`, on one core. `Decoder` runs
`python -m chatstats.ingest.decode` beside it: the helper reads chat.db itself, in one
read transaction, and streams back per row the CRC-32 of the blob it decoded and the text.

What the import writes never depends on the helper. If no commit reached chat.db between
a moment before the helper started and a moment after both it and the import had taken
their snapshots (`PRAGMA data_version` on a connection of our own did not move), the two
snapshots are the same database and the helper's texts are used as they are. Otherwise
each text is used only when the blob in the import's snapshot has the same CRC-32, and
anything else is decoded in the import, as it would be without a helper. A helper that is
slow, dies or saw other rows costs time, never correctness. It writes nothing and prints
no message content anywhere but its stdout pipe.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import subprocess
import sys
import threading
import zlib
from array import array
from bisect import bisect_left
from pathlib import Path
from typing import BinaryIO, NamedTuple

import msgspec

from chatstats.imessage import chatdb
from chatstats.imessage.typedstream import TypedStreamError, extract_text

_FFFC, _FFFD = "\ufffc", "\ufffd"
_FRAME = struct.Struct("<I")
_CHUNK = 5000


class Body(NamedTuple):
    text: str
    status: str  # ok | none | corrupt


def clean(text: str) -> str:
    """Drop attachment (U+FFFC) and balloon (U+FFFD) placeholders; `in` is far cheaper than
    `translate`, and most texts have neither."""
    if _FFFC in text:
        text = text.replace(_FFFC, "")
    if _FFFD in text:
        text = text.replace(_FFFD, "")
    return text


def decode_blob(blob: bytes) -> str | None:
    """The text of a non-empty attributedBody, or None when it cannot be read."""
    try:
        return clean(extract_text(blob))
    except TypedStreamError:
        return None


def decode_body(blob: bytes | None, column: str | None) -> Body:
    """Decoded attributedBody first, the `text` column as fallback; never raises."""
    if blob:
        text = decode_blob(blob)
        if text is None:
            return Body(clean(column or ""), "corrupt")
        return Body(text, "ok")
    if column is not None:
        return Body(clean(column), "ok")
    return Body("", "none")


# ------------------------------------------------------------------------------ the helper


class _Rows(msgspec.Struct, array_like=True, tag=1):
    rowids: list[int]
    crcs: list[int]
    lengths: list[int]  # of each text in UTF-8; -1: the blob could not be decoded
    texts: bytes  # the texts, UTF-8, one after another


class _Marks(msgspec.Struct, array_like=True, tag=2):
    marks: dict[str, int]


class RowidIndex:
    """Positions in an ascending array of ROWIDs, for lookups that mostly come in ROWID
    order (a load's scan): a moving cursor finds those in a step or two; anything else
    falls back to a binary search. 8 bytes a row, where a dict costs over 100."""

    def __init__(self, rowids: array[int]) -> None:
        self.rowids = rowids
        self._at = 0

    def index(self, rowid: int) -> int:
        """Position of `rowid`, or -1."""
        rowids, i = self.rowids, self._at
        n = len(rowids)
        if i < n and rowids[i] != rowid:
            i += 1
            if i >= n or rowids[i] != rowid:
                i = bisect_left(rowids, rowid)
        if i < n and rowids[i] == rowid:
            self._at = i
            return i
        return -1


class Texts:
    """The helper's texts by ROWID, compact enough for a million rows: ROWIDs in an array,
    the texts as UTF-8 one after another in one buffer, their ends in another array."""

    def __init__(self) -> None:
        self.rowids = array("q")
        self.crcs = array("L")  # CRC-32 of the blob each text was decoded from
        self.ends = array("q")  # the text of row i is data[ends[i-1]:ends[i]]
        self.data = bytearray()
        self.unreadable: set[int] = set()  # indexes whose blob could not be decoded
        self.index = RowidIndex(self.rowids).index

    def __len__(self) -> int:
        return len(self.rowids)

    def add(self, frame: _Rows) -> None:
        n = len(frame.rowids)
        if len(frame.crcs) != n or len(frame.lengths) != n:
            raise ValueError("frame columns differ in length")
        if sum(x for x in frame.lengths if x > 0) != len(frame.texts):
            raise ValueError("frame texts do not add up")
        if frame.rowids and self.rowids and frame.rowids[0] <= self.rowids[-1]:
            raise ValueError("frame out of order")
        base = len(self.rowids)
        end = self.ends[-1] if self.ends else 0
        for i, n in enumerate(frame.lengths):
            if n < 0:
                self.unreadable.add(base + i)
                n = 0
            end += n
            self.ends.append(end)
        self.rowids.extend(frame.rowids)
        self.crcs.extend(frame.crcs)
        self.data += frame.texts

    def text(self, i: int) -> str | None:
        """The text, or None when the import should decode the row itself."""
        if i in self.unreadable:
            return None
        try:
            return self.data[self.ends[i - 1] if i else 0 : self.ends[i]].decode()
        except UnicodeDecodeError:
            return None


class Decoded(NamedTuple):
    texts: Texts
    # True when the helper read the import's own snapshot, so every text can be used as it
    # is; otherwise each one only for a blob with the same CRC-32.
    same_snapshot: bool
    marks: dict[str, int] | None = None  # chat.db's change marks, when same_snapshot


class Decoder:
    """The import's side of the helper process; every failure degrades to 'not decoded'."""

    def __init__(self, source: Path, after: int) -> None:
        self._texts = Texts()
        self.marks: dict[str, int] | None = None
        self.error: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        # Snapshot check: data_version read before the helper starts, and again once both
        # the helper (its first frame) and the import (`import_snapshot_taken`) have theirs.
        self._lock = threading.Lock()
        self._helper_started = self._import_started = False
        self._same: bool | None = None
        try:
            self._watch = sqlite3.connect(
                f"file:{source}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
            self._version = self._data_version()
        except sqlite3.Error as exc:
            self.error = f"cannot watch the source: {exc}"
            return
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "chatstats.ingest.decode", str(source), str(after)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # a traceback could quote a message
            )
        except OSError as exc:
            self.error = f"could not start: {exc.strerror}"
            return
        self._thread = threading.Thread(target=self._collect, name="decode-results", daemon=True)
        self._thread.start()

    @staticmethod
    def available() -> bool:
        """Worth it only with a second core, and possible only with a Python to run."""
        return (os.cpu_count() or 1) > 1 and not getattr(sys, "frozen", False)

    def _data_version(self) -> int:
        return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

    def _started(self, who: str) -> None:
        with self._lock:
            if who == "helper":
                self._helper_started = True
            else:
                self._import_started = True
            if self._helper_started and self._import_started and self._same is None:
                try:
                    self._same = self._data_version() == self._version
                except sqlite3.Error:
                    self._same = False

    def import_snapshot_taken(self) -> None:
        """Called by the import once its own read of chat.db has begun."""
        self._started("import")

    def _collect(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        out = self._proc.stdout
        decoder = msgspec.msgpack.Decoder(_Rows | _Marks)
        try:
            while True:
                head = out.read(_FRAME.size)
                if len(head) < _FRAME.size:
                    break
                payload = out.read(_FRAME.unpack(head)[0])
                frame = decoder.decode(payload)
                self._started("helper")  # its snapshot dates from before its first frame
                if isinstance(frame, _Marks):
                    self.marks = frame.marks
                    continue
                self._texts.add(frame)
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            self.error = type(exc).__name__
        code = self._proc.wait()
        if code != 0 and self.error is None:
            self.error = f"exited with {code}"

    def wait(self, timeout: float) -> Decoded:
        """What the helper decoded (everything, unless it failed or timed out)."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.error = "timed out"
                self.close()
                self._thread.join(5)
        with self._lock:
            same = bool(self._same) and self.error is None and self.marks is not None
        texts, self._texts = self._texts, Texts()
        return Decoded(texts, same, self.marks if same else None)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            with contextlib.suppress(OSError):
                self._proc.wait(5)
        with self._lock, contextlib.suppress(AttributeError, sqlite3.Error):
            self._watch.close()


def _serve(source: str, after: int) -> None:
    """Read every blob after `after`, in chunks within one snapshot, and write frames."""
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA query_only=1")
    conn.execute("PRAGMA busy_timeout=10000")
    encode = msgspec.msgpack.Encoder().encode
    out = sys.stdout.buffer
    crc32 = zlib.crc32
    last = after
    conn.execute("BEGIN")  # one snapshot for every chunk: the import checks it is its own
    while True:
        rows = conn.execute(
            "SELECT ROWID, attributedBody FROM message WHERE ROWID > :after"
            " AND attributedBody IS NOT NULL ORDER BY ROWID LIMIT :n",
            {"after": last, "n": _CHUNK},
        ).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        rowids: list[int] = []
        crcs: list[int] = []
        lengths: list[int] = []
        texts: list[bytes] = []
        for rowid, blob in rows:
            if type(blob) is not bytes or not blob:
                continue  # the import treats these itself
            try:
                text = decode_blob(blob)
            except Exception:  # a decoder bug: leave the row to the import
                continue
            rowids.append(rowid)
            crcs.append(crc32(blob))
            if text is None:
                lengths.append(-1)
            else:
                encoded = text.encode()
                lengths.append(len(encoded))
                texts.append(encoded)
        _write(out, encode(_Rows(rowids, crcs, lengths, b"".join(texts))))
    # The marks of this same snapshot: the import can skip its own scan for them.
    _write(out, encode(_Marks(chatdb.Reader(conn).change_marks(conn))))
    conn.execute("COMMIT")
    out.flush()


def _write(out: BinaryIO, payload: bytes) -> None:
    out.write(_FRAME.pack(len(payload)))
    out.write(payload)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):  # the import ended (or was killed) first
        _serve(sys.argv[1], int(sys.argv[2]))
