"""Message bodies: attributedBody → text, and a helper process that decodes ahead of the import.

`decode_body` is the one rule for a row's text, used by every path (live sync, re-imports,
the first import): the decoded attributedBody first, the `text` column when the blob is
unreadable (counted as 'corrupt'), nothing when both are missing.

The first import of a whole history spends most of its Python time decoding blobs, in SQL
functions called by one `INSERT … SELECT`, on one core. `Decoder` runs
`python -m chatstats.ingest.decode` beside it: the helper reads chat.db itself, in one
read transaction, and streams back per row the CRC-32 of the blob it decoded, the text
and its word count (the statistics' buckets need it; counting it here is off the writer's core).

What the import writes never depends on the helper. If no commit reached chat.db between
a moment before the helper started and a moment after both it and the import had taken
their snapshots (`PRAGMA data_version` on a connection of our own did not move), the two
snapshots are the same database and the helper's texts are used as they are. Otherwise
each text is used only when the blob in the import's snapshot has the same CRC-32, and
anything else is decoded in the import, as it would be without a helper. A helper that is
slow, dies or saw other rows costs time, never correctness. It writes nothing and prints
no message content anywhere but its stdout pipe. Under the same-snapshot rule the load does
not wait for the last text: its INSERT starts once the conversations are planned and reads
each text as its frame arrives (`Decoder.streaming`, `until`), so the decoding overlaps the
writing; a row the helper has not sent yet is awaited, and one it never sends (it died, or
ran past the deadline and was killed) is decoded in the import.

A second helper, `python -m chatstats.ingest.decode --plan`, started at the same moment,
runs the conversation walk of ingest/plan.py (`plan.walk`) over the same rows: it reads
each message's chat while the import reads contacts, then takes the import's handle and
chat maps on stdin (`PlanRequest`) and answers one `plan.Walked`, with each row's chat and
conversation id. The import uses it only under the same snapshot rule (and only for the
range it asked for); otherwise, or when the planner dies, times out or answers noise, it
walks the rows itself (`plan.build`) and logs `import_planner_unused` with the reason.
Why: the walk was over a third of the importing thread's Python time, and the second core
sat idle once the bodies were decoded.

The decoding helper then builds the full-text index too, while the import writes the rows
(`Decoder.build_fts`, sent as soon as the plan says which rows load, in which id order): it
keeps the texts it sent, works out the few it did not (rows with no blob or an unreadable
one, through `decode_body` as the import does) and which rows the load writes empty
(unsent), and inserts every row into an FTS5 table declared as `messages_fts` in a scratch
file (chatstats/scratch.py). Before it commits, the import, its rows written, sends what it
actually wrote for those rows (`Decoder.check_fts`); anything different and the helper
commits nothing. The import then copies the shadow tables in whole: they come out byte for
byte as its own 'rebuild' writes them (same texts, same rowid order, same tokenizer; a test
compares). Why: the rebuild was 0.45 s of the writer's 5 s, and the helper's core sat idle
during the load's INSERT. Used only when the helper's texts were used as they are (its
snapshot was the import's, which it keeps open until then); whenever the helper fails, is
slow or disagrees, the import rebuilds the index itself.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple, TypeVar

import msgspec

from chatstats import scratch
from chatstats.imessage import chatdb
from chatstats.imessage.chatdb import text_value
from chatstats.imessage.typedstream import TypedStreamError, extract_text

if TYPE_CHECKING:  # imported where used: the decoding helper needs neither it nor NumPy
    from chatstats.ingest import plan

_FFFC, _FFFD = "\ufffc", "\ufffd"
_T = TypeVar("_T")
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


def count_words(text: str) -> int:
    """`db.word_count` of a str (the statistics' words); here so the helper need not import
    chatstats.db, whose logging setup cost 0.27 s of its start. A test holds them equal."""
    return len(text.split())


def decode_blob(blob: bytes) -> str | None:
    """The text of a non-empty attributedBody, or None when it cannot be read."""
    try:
        return clean(extract_text(blob))
    except TypedStreamError:
        return None


def decode_body(blob: bytes | None, column: str | None) -> Body:
    """Decoded attributedBody first, the `text` column as fallback; never raises."""
    column = text_value(column)
    if blob:
        text = decode_blob(blob)
        if text is None:
            return Body(clean(column or ""), "corrupt")
        return Body(text, "ok")
    if column is not None:
        return Body(clean(column), "ok")
    return Body("", "none")


# ------------------------------------------------------------------------------ the helper


class Decoded(NamedTuple):
    texts: dict[int, str | None]  # ROWID → text of its blob (None: unreadable)
    # ROWID → CRC-32 of the blob decoded, to check each text against; None when the helper
    # read the import's own snapshot, so every text can be used as it is.
    crcs: dict[int, int] | None
    marks: dict[str, int] | None = None  # chat.db's change marks, when crcs is None
    # ROWID → words of its text (`count_words`; None where the text is None), when crcs is
    # None: the statistics' buckets then need no second pass over 300k texts in the import.
    words: dict[int, int | None] | None = None


class _Rows(msgspec.Struct, array_like=True, tag=1):
    rowids: list[int]
    crcs: list[int]
    texts: list[str | None]
    words: list[int | None]
    upto: int = 0  # the last ROWID this chunk read: rows up to it that are not here, it left


class _Marks(msgspec.Struct, array_like=True, tag=2):
    marks: dict[str, int]


class FtsRequest(msgspec.Struct, array_like=True, tag=5):
    """Which rows the load writes, in id order, and where to index them; and, when
    `stats_path` is set, what the statistics' summaries need beside the texts' words
    (stats/precompute.compute: the walk's buckets and rows), to write them there."""

    path: str  # the scratch file, holding an empty table declared as messages_fts
    first: int  # the message id of rowids[0]; the k-th gets first + k
    rowids: list[int]  # every loaded ROWID, ascending
    stats_path: str = ""
    stats_indexes: dict[str, list[str]] = {}  # table → its CREATE INDEX statements
    bucket_keys: bytes = b""  # int64 (n, 4), as `Walked.bucket_keys`
    bucket_of: bytes = b""  # int64 per row walked
    order: bytes = b""  # int64 ROWIDs in walk order
    conversations: list[tuple[int, ...]] = []  # the walk's stats_conversations rows
    replies: list[tuple[int, ...]] = []  # and stats_replies rows


class FtsCheck(msgspec.Struct, array_like=True, tag=7):
    """What the load wrote where the helper had to work it out: which rows it wrote empty
    (unsent), and the text of every other row whose text it read itself."""

    unsent: list[int]
    texts: dict[int, str]


class _Built(msgspec.Struct, array_like=True, tag=6):
    rows: int  # -1: not built (whatever the file holds is not to be used)
    tables: list[str] = []  # the summary tables written (FtsRequest.stats_path)


class PlanRequest(msgspec.Struct, array_like=True, tag=4):
    """What the planning helper needs to walk the rows as `plan.build` would in the import."""

    handles: dict[int, int]  # chat.db handle ROWID → app handle id
    chats: dict[int, int]  # chat.db chat ROWID → app chat id
    after: int
    upto: int
    select_rows: str  # plan.build's `select_rows`, over src.message and the lookup tables
    first: int
    next_cid: int
    now_ns: int
    seal_expired: bool
    # Where to write the walk's summary rows (stats_conversations, stats_conv_senders,
    # stats_replies: `Walked.stats`, with these columns) and build their indexes, once the
    # Walked is sent: a scratch file (chatstats/scratch.py) the import copies in. "": don't.
    walk_path: str = ""
    walk_tables: list[tuple[str, list[str]]] = []
    walk_indexes: list[str] = []
    stats: bool = True  # False: the database has no statistics (`plan.walk_arrays`)


def planner_command(source: Path, after: int) -> list[str]:
    """The planning helper's command line (a function, so a test can make it misbehave)."""
    return [sys.executable, "-m", "chatstats.ingest.decode", "--plan", str(source), str(after)]


class Decoder:
    """The import's side of the helper processes; every failure degrades to 'not decoded'
    (or 'not planned': the import then walks the rows itself)."""

    def __init__(self, source: Path, after: int, *, words: bool = True) -> None:
        """`words`: whether the helper counts each text's words (only the statistics need
        them; without their tables it sends None for every count)."""
        # Compact while collecting (arrays, not 300k tuples); made into dicts by `wait`. The
        # texts go into `live` at once: the load reads them while they come.
        self._rowids = array("q")
        self._crcs = array("L")
        self._words: list[int | None] = []
        self.marks: dict[str, int] | None = None
        self.error: str | None = None
        # The texts as the frames come (`streaming`, `until`): the INSERT starts once the
        # plan is there and reads each text as it arrives, rather than after the last one.
        self.live: dict[int, str | None] = {}
        self._upto = -1  # every ROWID up to this one is in a frame that came
        self._arrived = threading.Condition()
        self._over = False  # no frame will come any more (the helper ended or was killed)
        self._first = threading.Event()  # the first frame came, or none will
        self._deadline = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._source = source
        self._planner: subprocess.Popen[bytes] | None = None
        self._plan_thread: threading.Thread | None = None
        self._walked: plan.Walked | None = None
        self.plan_error: str | None = None
        self._plan_ready = threading.Event()  # set once the Walked came (or cannot come)
        self._walk_rows: int | None = None
        self._walk_expected = -1
        self.walk_error: str | None = None
        self._fts_thread: threading.Thread | None = None
        self._sending: threading.Thread | None = None
        self._fts_rows: int | None = None
        self._fts_expected = -1
        self._stats_tables: frozenset[str] = frozenset()
        self.stats_asked = False
        self.fts_error: str | None = None
        # Snapshot check: data_version read before the helper starts, and again once both
        # the helper (its first frame) and the import (`import_snapshot_taken`) have theirs.
        self._lock = threading.Lock()
        self._helper_started = self._import_started = False
        self._same: bool | None = None
        try:
            self._watch = sqlite3.connect(
                chatdb.readonly_uri(source), uri=True, isolation_level=None, check_same_thread=False
            )
            self._version = self._data_version()
        except sqlite3.Error as exc:
            self.error = f"cannot watch the source: {exc}"
            return
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chatstats.ingest.decode",
                    str(source),
                    str(after),
                    *([] if words else ["--no-words"]),
                ],
                stdin=subprocess.PIPE,  # the full-text request (`build_fts`), or EOF: exit
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # a traceback could quote a message
            )
        except OSError as exc:
            self.error = f"could not start: {exc.strerror}"
            return
        self._thread = threading.Thread(target=self._collect, name="decode-results", daemon=True)
        self._thread.start()
        # The planner too, now: it starts Python and reads each message's chat while the
        # import reads contacts, then waits for the request (`start_planner`).
        try:
            self._planner = subprocess.Popen(
                planner_command(source, after),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # a traceback could quote a name
            )
        except OSError as exc:
            self.plan_error = f"could not start: {exc.strerror}"

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
                self._first.set()
                if isinstance(frame, _Marks):
                    self.marks = frame.marks
                    return  # its last frame: the helper now waits for `build_fts`
                n = len(frame.rowids)
                if not len(frame.crcs) == len(frame.texts) == len(frame.words) == n:
                    raise ValueError("a frame's columns differ in length")
                self._rowids.extend(frame.rowids)
                self._crcs.extend(frame.crcs)
                self._words.extend(frame.words)
                self.live.update(zip(frame.rowids, frame.texts, strict=True))
                with self._arrived:
                    self._upto = max(self._upto, frame.upto)
                    self._arrived.notify_all()
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            self.error = type(exc).__name__
        finally:
            with self._arrived:
                self._over = True
                self._arrived.notify_all()
            self._first.set()
        code = self._proc.wait()
        self.error = self.error or (f"exited with {code}" if code != 0 else "no marks")

    def streaming(self, timeout: float) -> bool:
        """Whether the load may read the texts as they come (`live`, `until`) rather than
        after the last one (`wait`): only when the helper's snapshot is the import's (its
        texts are then used as they are), known from its first frame, which this awaits.
        `timeout` bounds the whole stream, as it bounds `wait`."""
        if self._thread is None:
            return False
        self._deadline = time.monotonic() + timeout
        self._first.wait(timeout)
        with self._lock:
            return bool(self._same) and self.error is None

    def until(self, rowid: int) -> None:
        """Return once the frames cover `rowid` or none will come any more. Past the
        deadline the helper is killed (said in `error`): the load decodes the rest itself."""
        with self._arrived:
            while not self._over and self._upto < rowid:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
            late = not self._over and self._upto < rowid
        if late:
            self.error = "timed out"
            self.close()
            with self._arrived:
                self._over = True  # its thread ends at the closed pipe; stop waiting now

    def release(self) -> None:
        """No full-text request will come: the decoding helper may exit."""
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def build_fts(self, request: FtsRequest) -> None:
        """Ask the decoding helper (done decoding, its texts kept) to index the loaded rows
        into the scratch file, on its core while this one writes them; `check_fts` then
        tells it what was written, and `fts_built` says whether it committed. Only for
        texts used as the helper sent them (`Decoded.crcs` None)."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.closed or self.error is not None:
            self.fts_error = self.error or "not running"
            return
        payload = msgspec.msgpack.encode(request)
        stdin = proc.stdin

        def send() -> None:  # the helper reads it once it has decoded every row
            try:
                _write(stdin, payload)
                stdin.flush()
            except (OSError, ValueError) as exc:  # it died: the answer thread says so too
                self.fts_error = self.fts_error or type(exc).__name__

        self._fts_expected = len(request.rowids)
        self.stats_asked = bool(request.stats_path)
        self._sending = threading.Thread(target=send, name="fts-request", daemon=True)
        self._sending.start()
        self._fts_thread = threading.Thread(
            target=self._collect_fts, name="fts-results", daemon=True
        )
        self._fts_thread.start()

    def check_fts(self, check: FtsCheck | None) -> None:
        """What the load wrote, for the helper to compare before it commits (None: nothing
        to compare, it commits nothing). Sent from a thread, after the request: the helper
        reads it only once it has indexed the rows (and computed the summaries), and a frame
        larger than the pipe would block the import till then."""
        proc = self._proc
        if self._fts_thread is None or proc is None or proc.stdin is None:
            return
        payload = None if check is None else msgspec.msgpack.encode(check)
        stdin, request = proc.stdin, self._sending

        def send() -> None:
            if request is not None:
                request.join()
            try:
                with stdin:
                    if payload is not None:
                        _write(stdin, payload)
            except (OSError, ValueError) as exc:  # it died: the answer thread says so too
                self.fts_error = self.fts_error or type(exc).__name__

        threading.Thread(target=send, name="fts-check", daemon=True).start()

    def _collect_fts(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        if self._thread is not None:  # the texts' frames come first, read by that thread
            self._thread.join()
        try:
            built = _read(proc.stdout, _Built)
            if built is not None:
                self._fts_rows = built.rows
                self._stats_tables = frozenset(built.tables)
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            self.fts_error = type(exc).__name__
        code = proc.wait()
        if code != 0:
            self.fts_error = self.fts_error or f"exited with {code}"
            self._fts_rows = None
            self._stats_tables = frozenset()

    @property
    def fts_asked(self) -> bool:
        return self._fts_thread is not None

    def stats_built(self, timeout: float) -> frozenset[str]:
        """The summary tables the helper wrote into the summaries' scratch file (none unless
        it also indexed every row: both rest on the import's `FtsCheck`)."""
        return self._stats_tables if self.fts_built(timeout) else frozenset()

    def fts_built(self, timeout: float) -> bool:
        """Whether the helper indexed every row asked into the scratch file (its
        transaction committed); False (with `fts_error`) for anything else."""
        if self._fts_thread is None:
            self.fts_error = self.fts_error or "not asked"
            return False
        if not self._ended(self._fts_thread, self._proc, timeout):
            self.fts_error = "timed out"
            return False
        if self._fts_rows != self._fts_expected:
            self.fts_error = self.fts_error or (
                "texts differ" if self._fts_rows == -1 else "no answer"
            )
            return False
        return True

    def start_planner(self, request: PlanRequest) -> None:
        """Start the second helper: the conversation walk (`plan.walk`) of the import's rows,
        on the other core while this one builds its lookup tables and the first helper
        decodes. Called once the import's snapshot of chat.db is taken."""
        if self._planner is None:
            self.plan_error = self.plan_error or self.error or "not started"
            return
        self._walk_expected = len(request.walk_tables) if request.walk_path else -1
        self._plan_thread = threading.Thread(
            target=self._collect_plan,
            args=(msgspec.msgpack.encode(request),),
            name="plan-results",
            daemon=True,
        )
        self._plan_thread.start()

    def _collect_plan(self, request: bytes) -> None:
        proc = self._planner
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            with proc.stdin:
                _write(proc.stdin, request)
            head = proc.stdout.read(_FRAME.size)
            if len(head) == _FRAME.size:
                payload = proc.stdout.read(_FRAME.unpack(head)[0])
                from chatstats.ingest import plan

                self._walked = msgspec.msgpack.decode(payload, type=plan.Walked)
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            self.plan_error = type(exc).__name__
            self._walked = None
        if self._walked is None:
            code = proc.wait()
            self.plan_error = self.plan_error or (f"exited with {code}" if code else "no plan")
            self._plan_ready.set()
            return
        # A whole, well-formed Walked: usable now, whatever the helper does next.
        self._plan_ready.set()
        try:
            built = _read(proc.stdout, _Built)
            if built is not None:
                self._walk_rows = built.rows
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            self.walk_error = type(exc).__name__
        code = proc.wait()
        if code != 0:
            self.walk_error = self.walk_error or f"exited with {code}"
            self._walk_rows = None

    @property
    def walk_asked(self) -> bool:
        return self._walk_expected >= 0

    def walk_built(self, timeout: float) -> bool:
        """Whether the planner wrote the walk's summary tables into its scratch file (as
        `PlanRequest.walk_path` asked) and committed; False for anything else."""
        if self._plan_thread is None or self._walk_expected < 0:
            return False
        if not self._ended(self._plan_thread, self._planner, timeout):
            self.walk_error = "timed out"
            return False
        if self._walk_rows != self._walk_expected:
            self.walk_error = self.walk_error or "not written"
            return False
        return True

    def planned(self, timeout: float) -> plan.Walked | None:
        """The planning helper's walk, if it came whole and from the import's own snapshot
        (no commit reached chat.db since before the first helper started); else None."""
        if self._plan_thread is None:
            return None
        if not self._plan_ready.wait(timeout):
            self.plan_error = "timed out"
            self._kill(self._planner)
            self._plan_thread.join(5)
            return None
        walked, self._walked = self._walked, None
        if walked is None:
            return None
        with self._lock:
            try:
                same = self._data_version() == self._version
            except sqlite3.Error:
                same = False
        if not same:
            self.plan_error = "chat.db changed"
            return None
        return walked

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
        n = len(self._rowids)
        if len(self.live) != n or len(self._crcs) != n or len(self._words) != n:
            return Decoded({}, {})  # a frame cut short: use nothing
        texts, self.live = self.live, {}
        crcs = None if same else dict(zip(self._rowids, self._crcs, strict=True))
        words = dict(zip(self._rowids, self._words, strict=True)) if same else None
        self._rowids, self._crcs, self._words = array("q"), array("L"), []
        return Decoded(texts, crcs, self.marks if same else None, words)

    def _ended(
        self, thread: threading.Thread, proc: subprocess.Popen[bytes] | None, timeout: float
    ) -> bool:
        """Wait for a helper's answer thread; past `timeout`, kill the helper (its thread
        then ends at the closed pipe) and say False."""
        thread.join(timeout)
        if not thread.is_alive():
            return True
        self._kill(proc)
        thread.join(5)
        return False

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(OSError):
                proc.wait(5)

    def close(self) -> None:
        self.release()
        self._kill(self._proc)
        self._kill(self._planner)
        with self._lock, contextlib.suppress(AttributeError, sqlite3.Error):
            self._watch.close()


def _serve(source: str, after: int, count: bool = True) -> None:
    """Read every blob after `after`, in chunks within one snapshot, and write frames
    (each text's words counted only if `count`)."""
    conn = sqlite3.connect(chatdb.readonly_uri(source), uri=True, isolation_level=None)
    conn.execute("PRAGMA query_only=1")
    conn.execute("PRAGMA busy_timeout=10000")
    encode = msgspec.msgpack.Encoder().encode
    out = sys.stdout.buffer
    crc32 = zlib.crc32
    last = after
    kept: dict[int, str] = {}  # ROWID → the text sent, for the full-text index
    counted: dict[int, int | None] = {}  # ROWID → its words (None: no text), for the summaries
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
        texts: list[str | None] = []
        words: list[int | None] = []
        for rowid, blob in rows:
            if type(blob) is not bytes or not blob:
                continue  # the import treats these itself
            try:
                text = decode_blob(blob)
            except Exception:  # a decoder bug: leave the row to the import
                continue
            rowids.append(rowid)
            crcs.append(crc32(blob))
            texts.append(text)
            n = None if text is None or not count else count_words(text)
            words.append(n)
            counted[rowid] = n
            if text is not None:
                kept[rowid] = text
        _write(out, encode(_Rows(rowids, crcs, texts, words, last)))
    # The marks of this same snapshot: the import can skip its own scan for them.
    marks, candidates = _marks(conn, after)
    _write(out, encode(_Marks(marks)))
    out.flush()
    request = _read(sys.stdin.buffer, FtsRequest)
    if request is not None:  # the snapshot stays open: the texts it lacks come from it
        try:
            built = _index(conn, request, kept, counted, after, candidates)
        except Exception:  # a text it cannot work out, an unusable file: the import rebuilds
            built = _Built(-1)
        _write(out, encode(built))
        out.flush()
    conn.execute("COMMIT")


def _read(stream: IO[bytes], kind: type[_T]) -> _T | None:
    """One frame of `kind` from `stream` (the import's requests, a helper's answers), or None
    at its end."""
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    return msgspec.msgpack.decode(stream.read(_FRAME.unpack(head)[0]), type=kind)


def _marks(conn: sqlite3.Connection, after: int) -> tuple[dict[str, int], list[int]]:
    """`Reader.change_marks` of this snapshot and, in the same scan of the messages, the
    ROWIDs after `after` that may be unsent (a date_retracted or a summary plist), which
    `_index` then reads by ROWID: one pass over chat.db's rows instead of two."""
    have = chatdb.columns(conn, "message")

    def col(name: str) -> str:
        return name if name in have else "NULL"

    present = [c for c in chatdb.CHANGE_COLUMNS if c in have]
    maybe = (
        f"COALESCE({col('date_retracted')}, 0) <> 0 OR {col('message_summary_info')} IS NOT NULL"
    )
    # Column names are constants of chatdb, kept only if chat.db has them.
    highest = "".join(f"COALESCE(MAX({c}), 0), " for c in present)
    row = conn.execute(
        f"SELECT {highest}group_concat(CASE WHEN ROWID > :a AND ({maybe}) THEN ROWID END)"
        " FROM message",
        {"a": after},
    ).fetchone()
    marks = dict.fromkeys(chatdb.CHANGE_COLUMNS, 0)
    marks.update(zip(present, row[:-1], strict=True))
    return marks, [int(r) for r in row[-1].split(",")] if row[-1] else []


def _unsent(date_retracted: object, info: bytes | None) -> bool:
    """`edit_state`'s unsent rule (chatdb.is_unsent) on a row's columns."""
    return chatdb.is_unsent(date_retracted, chatdb.summary_flags(info) if info else None)


def _index(
    conn: sqlite3.Connection,
    request: FtsRequest,
    kept: dict[int, str],
    counted: dict[int, int | None],
    after: int,
    candidates: list[int],
) -> _Built:
    """Each loaded row's text, as the import writes it, into the scratch file's
    messages_fts: empty if unsent, else the text this helper sent, else `decode_body` of
    the row (from this same snapshot). Committed only if the import's `FtsCheck` agrees.
    The rows indexed, or -1: the import then rebuilds and removes the file unread (with no
    journal, a rollback here does not promise to undo what was written). With
    `stats_path`, the summaries are computed meanwhile from the same words (`_summaries`)
    and written once the check agreed; `tables` names them."""
    have = chatdb.columns(conn, "message")

    def col(name: str) -> str:
        return name if name in have else "NULL"

    rowids = request.rowids
    upto = rowids[-1] if rowids else after
    bounds = {"a": after, "u": upto}
    loaded = set(rowids)
    unsent = {
        rowid
        for rowid, retracted, info in conn.execute(
            f"SELECT ROWID, {col('date_retracted')}, {col('message_summary_info')}"
            " FROM message WHERE ROWID IN (SELECT value FROM json_each(:ids))"
            " AND ROWID > :a AND ROWID <= :u",
            {**bounds, "ids": msgspec.json.encode(candidates).decode()},
        )
        if rowid in loaded and _unsent(retracted, info)
    }
    missing = [r for r in rowids if r not in kept and r not in unsent]
    mine: dict[int, str] = {}
    for rowid, blob, text in conn.execute(
        f"SELECT ROWID, {col('attributedBody')}, CAST({col('text')} AS BLOB) FROM message"
        " WHERE ROWID IN (SELECT value FROM json_each(:ids))",
        {"ids": msgspec.json.encode(missing).decode()},
    ):
        mine[rowid] = decode_body(blob, text).text

    def rows() -> Iterator[tuple[int, str]]:
        for k, rowid in enumerate(rowids, request.first):
            if rowid in unsent:
                yield k, ""
            else:
                text = kept.get(rowid)
                yield k, mine[rowid] if text is None else text

    build = sqlite3.connect(request.path, isolation_level=None)
    try:
        build.execute("PRAGMA journal_mode=OFF")  # used only if this returns its rows
        build.execute("PRAGMA synchronous=OFF")
        build.execute("BEGIN")
        try:
            build.executemany("INSERT INTO messages_fts (rowid, text) VALUES (?, ?)", rows())
        except KeyError:  # a row chat.db no longer has in this snapshot: cannot be
            build.execute("ROLLBACK")
            return _Built(-1)
        tables = _summaries(request, counted, mine, unsent) if request.stats_path else None
        check = _read(sys.stdin.buffer, FtsCheck)
        if check is None or set(check.unsent) != unsent or check.texts != mine:
            build.execute("ROLLBACK")
            return _Built(-1)
        build.execute("COMMIT")
    finally:
        build.close()
    written: list[str] = []
    if tables:
        from chatstats.stats import precompute

        try:
            scratch.write(
                Path(request.stats_path),
                {t: (columns, precompute.rows(values)) for t, (columns, values) in tables.items()},
                [sql for t in tables for sql in request.stats_indexes.get(t, [])],
            )
            written = list(tables)
        except (sqlite3.Error, OSError):  # the import computes them itself
            written = []
    return _Built(len(rowids), written)


def _summaries(
    request: FtsRequest, counted: dict[int, int | None], mine: dict[int, str], unsent: set[int]
) -> Any:
    """stats/precompute.compute, here: the words are this helper's counts, the texts it
    worked out and its unsent rows, which the import's check then confirms. None (the
    import computes them) if compute declines or fails."""
    import numpy as np

    from chatstats.stats import precompute

    try:
        return precompute.compute(
            np.frombuffer(request.bucket_keys, dtype=np.int64).reshape(-1, 4),
            np.frombuffer(request.bucket_of, dtype=np.int64),
            np.frombuffer(request.order, dtype=np.int64),
            counted,
            dict(mine),
            unsent,
            request.conversations,
            request.replies,
        )
    except Exception:  # any: the import's own thread can still do it
        return None


def _serve_plan(source: str, after: int) -> int:
    """Walk the rows of one snapshot as a PlanRequest on stdin asks, write the Walked.
    Each message's chat is read before the request comes (it needs only the range)."""
    from chatstats.ingest import plan

    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("ATTACH DATABASE :uri AS src", {"uri": chatdb.readonly_uri(source)})
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("BEGIN")  # one snapshot; the import checks it is its own
    (upto,) = conn.execute("SELECT COALESCE(MAX(ROWID), 0) FROM src.message").fetchone()
    plan.join_table(conn, after, upto)
    head = sys.stdin.buffer.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return 0  # not needed after all
    request = msgspec.msgpack.decode(
        sys.stdin.buffer.read(_FRAME.unpack(head)[0]), type=PlanRequest
    )
    if (request.after, request.upto) != (after, upto):
        return 4  # not the import's snapshot: the import walks the rows itself
    plan.map_tables(conn, request.handles, request.chats)
    walked = plan.walk_query(
        conn,
        request.select_rows,
        {"a": request.after, "u": request.upto},
        first=request.first,
        next_cid=request.next_cid,
        now_ns=request.now_ns,
        seal_expired=request.seal_expired,
        stats=request.stats,
    )
    conn.execute("COMMIT")
    out = sys.stdout.buffer
    _write(out, msgspec.msgpack.encode(walked))
    out.flush()
    if request.walk_path:  # on this core, while the import writes the messages
        try:
            tables: dict[str, tuple[tuple[str, ...], Iterable[tuple[Any, ...]]]] = {
                table: (tuple(columns), rows)
                for (table, columns), rows in zip(request.walk_tables, walked.stats, strict=True)
            }
            scratch.write(Path(request.walk_path), tables, request.walk_indexes)
            written = len(tables)
        except (sqlite3.Error, OSError, ValueError):  # the import inserts the rows itself
            written = -1
        _write(out, msgspec.msgpack.encode(_Built(written)))
        out.flush()
    return 0


def _write(out: IO[bytes], payload: bytes) -> None:
    out.write(_FRAME.pack(len(payload)))
    out.write(payload)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):  # the import ended (or was killed) first
        if sys.argv[1] == "--plan":
            sys.exit(_serve_plan(sys.argv[2], int(sys.argv[3])))
        else:
            _serve(sys.argv[1], int(sys.argv[2]), count="--no-words" not in sys.argv[3:])
