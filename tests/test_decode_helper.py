"""The first import's decoding helper (chatstats/ingest/decode.py): a second process that
decodes message bodies ahead of the load. Whatever it does, the database must come out the
same as without it; these tests take each way it can go wrong."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from chatstats import cli
from chatstats import db as appdb
from chatstats.imessage import chatdb
from chatstats.ingest import bulk, decode, importer, plan
from chatstats.sample.writer import MessagesWriter
from tests.conftest import PROFILES
from tests.library_check import dump, plain_message, stats_tables
from tests.test_import import run_import

pytestmark = pytest.mark.skipif(not decode.Decoder.available(), reason="needs two cores")


class Spy(decode.Decoder):
    """The real helper, with what it handed the import kept for the test to look at."""

    last: Spy | None = None

    def __init__(self, source: Path, after: int, **kw: bool) -> None:
        self.first_frame = threading.Event()
        self.handed: decode.Decoded | None = None
        self.walked: plan.Walked | None = None
        Spy.last = self
        super().__init__(source, after, **kw)

    def _started(self, who: str) -> None:
        super()._started(who)
        if who == "helper":
            self.first_frame.set()

    def wait(self, timeout: float) -> decode.Decoded:
        self.handed = super().wait(timeout)
        return self.handed

    def planned(self, timeout: float) -> plan.Walked | None:
        self.walked = super().planned(timeout)
        return self.walked


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> type[Spy]:
    monkeypatch.setattr(importer, "Decoder", Spy)
    Spy.last = None
    return Spy


def without_helper(capsys, lib: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    with monkeypatch.context() as m:
        m.setattr(importer, "DECODE_AHEAD", False)
        run_import(capsys, lib, data)
    return dump(data)


@pytest.mark.parametrize("profile", ["sequoia", "sonoma"])
def test_the_helper_changes_nothing_but_speed(
    profile, libraries, tmp_path, capsys, spy, monkeypatch
):
    lib, _ = libraries[profile]
    run_import(capsys, lib, tmp_path / "helped")
    handed = spy.last.handed
    assert handed is not None and handed.crcs is None, "expected the same-snapshot path"
    assert len(handed.texts) > 1000 and handed.marks is not None
    # The conversations were planned by the second helper, and are what the import's own
    # walk makes (the import without helpers, compared below, walks the rows itself).
    assert spy.last.walked is not None and spy.last.plan_error is None
    assert len(spy.last.walked.conversations) > 10
    # Its word counts are the statistics' own (db.word_count), None where it has no text.
    assert handed.words == {
        r: None if t is None else appdb.word_count(t) for r, t in handed.texts.items()
    }
    assert dump(tmp_path / "helped") == without_helper(capsys, lib, tmp_path / "alone", monkeypatch)


def test_texts_are_checked_by_crc_when_the_snapshots_may_differ(
    libraries, tmp_path, capsys, spy, monkeypatch
):
    """data_version moved: every text must match its blob's CRC, corrupt ones included."""
    lib, _ = libraries["sequoia"]
    versions = iter(range(1000))
    monkeypatch.setattr(Spy, "_data_version", lambda self: next(versions))
    run_import(capsys, lib, tmp_path / "helped")
    handed = spy.last.handed
    assert handed is not None and handed.crcs is not None and handed.marks is None
    assert handed.words is None  # counts of texts the import may not use
    assert dump(tmp_path / "helped") == without_helper(capsys, lib, tmp_path / "alone", monkeypatch)


def test_a_message_edited_after_the_helper_read_it_is_imported_as_edited(
    libraries, tmp_path, capsys, spy, monkeypatch
):
    """Messages.app edits a message after the helper's snapshot and before the import's:
    the helper's text is stale, and the import must notice and store the edit."""
    src, _ = libraries["sequoia"]
    lib = tmp_path / "lib"
    shutil.copytree(src, lib)
    rowid = plain_message(lib / "chat.db")
    real_attach = bulk.attach

    def edit_between_snapshots(conn, source):  # the import's snapshot is taken at BEGIN, next
        assert spy.last is not None and spy.last.first_frame.wait(30)
        w = MessagesWriter(lib / "chat.db", create=False)
        w.edit(rowid, "edited while the helper was reading", time.time_ns())
        w.close()
        real_attach(conn, source)

    monkeypatch.setattr(bulk, "attach", edit_between_snapshots)
    run_import(capsys, lib, tmp_path / "data")
    handed = spy.last.handed
    assert handed is not None and handed.crcs is not None  # it saw the commit
    assert spy.last.walked is None and spy.last.plan_error == "chat.db changed"
    conn = sqlite3.connect(tmp_path / "data" / "chatstats.db")
    text, edited = conn.execute(
        "SELECT text, edited FROM messages WHERE source_rowid = ?", (rowid,)
    ).fetchone()
    assert (text, edited) == ("edited while the helper was reading", 1)


@pytest.mark.parametrize("helper", ["exits", "garbage"])
def test_a_broken_helper_costs_time_not_data(helper, libraries, tmp_path, capsys, spy, monkeypatch):
    lib, _ = libraries["sonoma"]
    expected = without_helper(capsys, lib, tmp_path / "alone", monkeypatch)
    fake = tmp_path / "fake-python"
    if helper == "exits":
        fake.write_text("#!/bin/sh\nexit 3\n")
    else:  # a frame header promising more than follows, then noise
        fake.write_text("#!/bin/sh\nprintf '\\377\\377\\0\\0'\nhead -c 4000 /dev/urandom\n")
    fake.chmod(0o700)
    monkeypatch.setattr(sys, "executable", str(fake))
    code = cli.main(
        ["import", "--source", str(lib / "chat.db"), "--addressbook", str(lib / "AddressBook"),
         "--data-dir", str(tmp_path / "helped"), "--json"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert spy.last.error is not None
    assert spy.last.handed is not None and not spy.last.handed.texts
    assert dump(tmp_path / "helped") == expected
    # Said, with a reason and a count, and nothing the helper printed.
    warning = next(json.loads(line) for line in err.splitlines() if "import_decoder_failed" in line)
    assert warning["reason"] == spy.last.error and warning["decoded"] == 0
    planner = next(json.loads(line) for line in err.splitlines() if "import_planner_unused" in line)
    assert spy.last.plan_error is not None and planner["reason"] == spy.last.plan_error


# A planning helper that dies without a word, dies (kill -9) halfway through its answer,
# or answers noise: the import walks the rows itself, says why, and loses nothing.
_BAD_PLANNERS = {
    "exits": "import sys; sys.exit(3)",
    "killed": (
        "import os, signal, sys; sys.stdin.buffer.read();"
        " sys.stdout.buffer.write(b'\\x00\\x10\\x00\\x00' + b'\\x93' * 100);"
        " sys.stdout.flush(); os.kill(os.getpid(), signal.SIGKILL)"
    ),
    "garbage": (
        "import sys; sys.stdin.buffer.read();"
        " sys.stdout.buffer.write(b'\\x08\\x00\\x00\\x00' + b'\\x93\\x01' * 4)"
    ),
}


@pytest.mark.parametrize("planner", sorted(_BAD_PLANNERS))
def test_a_broken_planner_costs_time_not_data(
    planner, libraries, tmp_path, capsys, spy, monkeypatch
):
    lib, _ = libraries["sequoia"]
    expected = without_helper(capsys, lib, tmp_path / "alone", monkeypatch)
    monkeypatch.setattr(
        decode,
        "planner_command",
        lambda _src, _after: [sys.executable, "-c", _BAD_PLANNERS[planner]],
    )
    code = cli.main(
        ["import", "--source", str(lib / "chat.db"), "--addressbook", str(lib / "AddressBook"),
         "--data-dir", str(tmp_path / "helped"), "--json"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert spy.last.walked is None and spy.last.plan_error is not None
    assert spy.last.handed is not None and spy.last.handed.crcs is None  # the decoder was fine
    assert dump(tmp_path / "helped") == expected
    warning = next(json.loads(line) for line in err.splitlines() if "import_planner_unused" in line)
    assert warning["reason"] == spy.last.plan_error
    conn = sqlite3.connect(tmp_path / "helped" / "chatstats.db")
    assert conn.execute("SELECT count(*) FROM stats_conversations").fetchone()[0] > 10
    conn.close()


def test_a_planner_that_read_another_range_is_not_used(
    libraries, tmp_path, capsys, spy, monkeypatch
):
    """The planner reads each message's chat before the import says which rows it loads; if
    its range is not the import's (another snapshot), it refuses and the import walks."""
    lib, _ = libraries["sequoia"]
    expected = without_helper(capsys, lib, tmp_path / "alone", monkeypatch)
    real = decode.planner_command
    monkeypatch.setattr(decode, "planner_command", lambda src, after: real(src, after + 1))
    run_import(capsys, lib, tmp_path / "helped")
    assert spy.last.walked is None and spy.last.plan_error == "exited with 4"
    assert dump(tmp_path / "helped") == expected


def _paced_helper(tmp: Path, *, pause: float, die_after: int | None) -> Path:
    """A python that runs the real decoding helper in chunks of 50 rows, pausing after each
    frame and, with `die_after`, killing itself (SIGKILL) after that many frames. The
    planner (`-m … --plan`) runs unchanged."""
    code = (
        "import os, signal, sys, time\n"
        "import chatstats.ingest.decode as d\n"
        "d._CHUNK = 50\n"
        "real = d._write\n"
        "sent = [0]\n"
        "def paced(out, payload):\n"
        "    real(out, payload); out.flush(); sent[0] += 1\n"
        f"    time.sleep({pause})\n"
        f"    if {die_after!r} is not None and sent[0] >= {die_after!r}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "d._write = paced\n"
        "d._serve(sys.argv[1], int(sys.argv[2]))\n"
    )
    (tmp / "paced.py").write_text(code)
    fake = tmp / "paced-python"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$3" = "--plan" ]; then exec {sys.executable} "$@"; fi\n'
        f'shift 2; exec {sys.executable} {tmp / "paced.py"} "$@"\n'
    )
    fake.chmod(0o700)
    return fake


class Waits(Spy):
    """Counts the rows the load had to wait for (not yet sent when it reached them)."""

    awaited = 0

    def until(self, rowid: int) -> None:
        if self._upto < rowid and not self._over:
            Waits.awaited += 1
        super().until(rowid)


@pytest.mark.parametrize("die_after", [None, 4])
def test_the_load_reads_the_texts_as_they_come(die_after, libraries, tmp_path, capsys, monkeypatch):
    """The INSERT starts before the helper has sent every text: rows it reaches first are
    awaited, the rest read from the live dict. Whether the helper keeps pace, lags or is
    killed midway, the rows, the index and every statistic are those of an import without
    it; killed, it is said, and its texts that came are still the ones used."""
    lib, _ = libraries["sequoia"]
    expected = without_helper(capsys, lib, tmp_path / "alone", monkeypatch)
    expected_stats = stats_tables(tmp_path / "alone" / "chatstats.db")
    monkeypatch.setattr(importer, "Decoder", Waits)
    Waits.awaited = 0
    monkeypatch.setattr(
        sys, "executable", str(_paced_helper(tmp_path, pause=0.05, die_after=die_after))
    )
    run_import(capsys, lib, tmp_path / "helped")
    helper = Waits.last
    assert helper is not None and helper.handed is not None
    if die_after is None:  # 1.4 s of frames: the load starts long before the last one
        assert Waits.awaited > 0, "the load should have caught up with the helper"
    assert dump(tmp_path / "helped") == expected
    assert stats_tables(tmp_path / "helped" / "chatstats.db") == expected_stats
    if die_after is None:
        assert helper.error is None and helper.handed.words is not None
    else:
        assert helper.error is not None and helper.handed.words is None
        assert 0 < len(helper.handed.texts) < len(expected["messages"])


@pytest.mark.parametrize("profile", PROFILES)
def test_the_helper_s_marks_and_unsent_candidates_come_from_one_scan(profile, libraries):
    """The change marks the helper hands over are `Reader.change_marks`' and the rows it
    may have to write empty are every row with a date_retracted or a summary plist, on
    every schema (older ones lack the columns: no candidates, zero marks)."""
    lib, _ = libraries[profile]
    conn = sqlite3.connect(f"file:{lib / 'chat.db'}?mode=ro", uri=True)
    try:
        marks, candidates = decode._marks(conn, 10)
        assert marks == chatdb.Reader(conn).change_marks(conn)
        have = chatdb.columns(conn, "message")
        expected = []
        if {"date_retracted", "message_summary_info"} <= have:
            expected = [
                r
                for (r,) in conn.execute(
                    "SELECT ROWID FROM message WHERE ROWID > 10 AND"
                    " (COALESCE(date_retracted, 0) <> 0 OR message_summary_info IS NOT NULL)"
                    " ORDER BY ROWID"
                )
            ]
        assert sorted(candidates) == expected
        assert expected or profile == "legacy", "the library should have unsent rows"
    finally:
        conn.close()
