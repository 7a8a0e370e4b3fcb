"""Conversation sealing: timers, the 90-minute boundary, events, the Sealer task, the CLI."""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from pathlib import Path

import anyio
import pytest
import structlog

from chatstats.cli import main
from chatstats.db import Database, connect, migrate
from chatstats.errors import NotFound
from chatstats.ingest import sealer as sealing
from chatstats.ingest.conversations import GAP_NS

S = 1_000_000_000
MIN = 60 * S
T0 = 1_700_000_000 * S

_guids = itertools.count(1)


@pytest.fixture(autouse=True)
def logs():
    """Capture every level, whatever another test configured, and restore the configuration
    afterwards (the CLI tests reconfigure logging onto capsys's short-lived stderr)."""
    config = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(0))
    try:
        with structlog.testing.capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(
            wrapper_class=config["wrapper_class"], logger_factory=config["logger_factory"]
        )


# ---------------------------------------------------------------------------------------------
# Helpers: conversations built with plain SQL, as ingest would leave them.


def open_db(path: Path) -> sqlite3.Connection:
    conn = connect(path, write=True)
    migrate(conn)
    return conn


@pytest.fixture
def conn(tmp_path):
    c = open_db(tmp_path / "chatstats.db")
    yield c
    c.close()


def tx(conn: sqlite3.Connection, fn, *args):
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def add_chat(conn: sqlite3.Connection, chat_id: int) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO chats (id, guid, is_group) VALUES (?, ?, 0)",
        (chat_id, f"chat-guid-{chat_id}"),
    )


def add_messages(conn: sqlite3.Connection, chat_id: int, cid: int, dates: list[int]) -> None:
    conn.executemany(
        "INSERT INTO messages (guid, chat_id, conversation_id, is_from_me, date_ns)"
        " VALUES (?, ?, ?, 0, ?)",
        [(f"msg-{next(_guids)}", chat_id, cid, d) for d in dates],
    )


def add_conversation(
    conn: sqlite3.Connection,
    chat_id: int,
    dates: list[int],
    *,
    sealed: bool = False,
    timer: bool = True,
    gap_ns: int = GAP_NS,
) -> int:
    """A chat (if new), one conversation over `dates`, its messages, and its timer."""

    def build(c: sqlite3.Connection) -> int:
        add_chat(c, chat_id)
        cid = c.execute(
            "INSERT INTO conversations (chat_id, start_ns, end_ns, message_count, sealed,"
            " sealed_at_ns) VALUES (?, ?, ?, ?, ?, ?)",
            (chat_id, min(dates), max(dates), len(dates), int(sealed), T0 if sealed else None),
        ).lastrowid
        add_messages(c, chat_id, cid, dates)
        if timer and not sealed:
            sealing.schedule(c, cid, chat_id, max(dates), gap_ns=gap_ns)
        return cid

    return tx(conn, build)


def conversation(conn: sqlite3.Connection, cid: int) -> sqlite3.Row:
    return conn.execute("SELECT * FROM conversations WHERE id = ?", (cid,)).fetchone()


def timer(conn: sqlite3.Connection, cid: int) -> int | None:
    row = conn.execute(
        "SELECT due_ns FROM seal_timers WHERE conversation_id = ?", (cid,)
    ).fetchone()
    return None if row is None else row[0]


def events(conn: sqlite3.Connection) -> list[tuple[str, str, dict]]:
    rows = conn.execute("SELECT type, scope, data FROM events ORDER BY id").fetchall()
    return [(t, s, json.loads(d)) for t, s, d in rows]


# ---------------------------------------------------------------------------------------------
# schedule / seal_due


def test_schedule_sets_due_from_last_message_time_and_moves_with_it(conn):
    cid = add_conversation(conn, 1, [T0, T0 + 10 * MIN])
    assert timer(conn, cid) == T0 + 10 * MIN + GAP_NS
    tx(conn, lambda c: sealing.schedule(c, cid, 1, T0 + 20 * MIN))
    assert timer(conn, cid) == T0 + 20 * MIN + GAP_NS
    assert conn.execute("SELECT count(*) FROM seal_timers").fetchone()[0] == 1


def test_exactly_90_minutes_after_the_last_message_is_not_yet_due_one_ns_more_is(conn):
    """Same boundary as the splitter: a message exactly 90 minutes later still joins."""
    cid = add_conversation(conn, 1, [T0])
    assert tx(conn, sealing.seal_due, T0 + GAP_NS) == []
    assert not conversation(conn, cid)["sealed"]
    sealed = tx(conn, sealing.seal_due, T0 + GAP_NS + 1)
    assert [s.conversation_id for s in sealed] == [cid]
    row = conversation(conn, cid)
    assert row["sealed"] == 1 and row["sealed_at_ns"] == T0 + GAP_NS + 1
    assert timer(conn, cid) is None


def test_a_message_89_minutes_later_keeps_the_conversation_open(conn):
    """The timer still points at the first message; the re-check finds the later one."""
    cid = add_conversation(conn, 1, [T0])
    tx(conn, add_messages, 1, cid, [T0 + 89 * MIN])  # ingest forgot to reschedule
    assert tx(conn, sealing.seal_due, T0 + GAP_NS + 1) == []
    assert not conversation(conn, cid)["sealed"]
    assert timer(conn, cid) == T0 + 89 * MIN + GAP_NS
    assert events(conn) == []
    assert len(tx(conn, sealing.seal_due, T0 + 89 * MIN + GAP_NS + 1)) == 1


def test_sealing_appends_sealed_then_ready_on_the_chat_scope(conn):
    cid = add_conversation(conn, 7, [T0, T0 + MIN, T0 + 2 * MIN])
    [sealed] = tx(conn, sealing.seal_due, T0 + 3 * GAP_NS)
    assert sealed.sealed_event_id < sealed.ready_event_id
    assert events(conn) == [
        (
            "conversation_sealed",
            "chat:7",
            {
                "chat_id": 7,
                "conversation_id": cid,
                "last_message_time": sealing.iso_time(T0 + 2 * MIN),
                "message_count": 3,
            },
        ),
        (
            "conversation_ready_for_analysis",
            "chat:7",
            {
                "chat_id": 7,
                "conversation_id": cid,
                "start_time": sealing.iso_time(T0),
                "end_time": sealing.iso_time(T0 + 2 * MIN),
                "message_count": 3,
            },
        ),
    ]
    assert sealing.iso_time(T0) == "2023-11-14T22:13:20.000000Z"


def test_sealing_finalises_stale_stats_from_the_messages(conn):
    cid = add_conversation(conn, 1, [T0, T0 + MIN])
    conn.execute(
        "UPDATE conversations SET start_ns = 5, end_ns = 6, message_count = 99 WHERE id = ?",
        (cid,),
    )
    [sealed] = tx(conn, sealing.seal_due, T0 + MIN + GAP_NS + 1)
    row = conversation(conn, cid)
    assert (row["start_ns"], row["end_ns"], row["message_count"]) == (T0, T0 + MIN, 2)
    assert (sealed.start_ns, sealed.end_ns, sealed.message_count) == (T0, T0 + MIN, 2)


def test_a_rolled_back_seal_leaves_no_events_and_the_conversation_open(conn):
    cid = add_conversation(conn, 1, [T0])

    def seal_then_fail(c):
        assert len(sealing.seal_due(c, T0 + 2 * GAP_NS)) == 1
        raise RuntimeError("crash after sealing")

    with pytest.raises(RuntimeError):
        tx(conn, seal_then_fail)
    assert events(conn) == []
    assert not conversation(conn, cid)["sealed"]
    assert timer(conn, cid) == T0 + GAP_NS


def test_a_conversation_is_sealed_once(conn):
    cid = add_conversation(conn, 1, [T0])
    assert len(tx(conn, sealing.seal_due, T0 + 2 * GAP_NS)) == 1
    assert tx(conn, sealing.seal_due, T0 + 3 * GAP_NS) == []
    # A stray schedule for a sealed conversation makes no timer, and a stale timer is dropped.
    tx(conn, lambda c: sealing.schedule(c, cid, 1, T0))
    assert timer(conn, cid) is None
    conn.execute("INSERT INTO seal_timers VALUES (?, 1, ?)", (cid, T0))
    assert tx(conn, sealing.seal_due, T0 + 3 * GAP_NS) == []
    assert timer(conn, cid) is None
    assert len(events(conn)) == 2


def test_a_timer_whose_conversation_was_re_split_away_is_dropped(conn):
    add_chat(conn, 1)
    conn.execute("INSERT INTO seal_timers VALUES (424242, 1, ?)", (T0,))
    assert tx(conn, sealing.seal_due, T0 + 1) == []
    assert timer(conn, 424242) is None


def test_due_conversations_seal_oldest_first_and_limit_bounds_a_round(conn):
    a = add_conversation(conn, 1, [T0 + 2 * MIN])
    b = add_conversation(conn, 2, [T0])
    c = add_conversation(conn, 3, [T0 + MIN])
    later = add_conversation(conn, 4, [T0 + 10 * GAP_NS])
    now = T0 + 2 * GAP_NS
    first = tx(conn, lambda x: sealing.seal_due(x, now, limit=2))
    assert [s.conversation_id for s in first] == [b, c]
    assert [s.conversation_id for s in tx(conn, sealing.seal_due, now)] == [a]
    assert sealing.next_due(conn) == T0 + 10 * GAP_NS + GAP_NS
    assert not conversation(conn, later)["sealed"]


def test_ensure_timers_backfills_open_conversations_without_one(conn):
    cid = add_conversation(conn, 1, [T0], timer=False)
    add_conversation(conn, 2, [T0], sealed=True)
    assert tx(conn, sealing.ensure_timers) == 1
    assert timer(conn, cid) == T0 + GAP_NS
    assert tx(conn, sealing.ensure_timers) == 0


# ---------------------------------------------------------------------------------------------
# force_seal / status


def test_force_seal_seals_the_newest_open_conversation_now(conn):
    old = add_conversation(conn, 1, [T0], sealed=True)
    cid = add_conversation(conn, 1, [T0 + 5 * GAP_NS])
    sealed = tx(conn, sealing.force_seal, 1, T0 + 5 * GAP_NS + 1)
    assert sealed is not None and sealed.conversation_id == cid
    assert conversation(conn, cid)["sealed"] == 1 and timer(conn, cid) is None
    assert conversation(conn, old)["sealed_at_ns"] == T0  # untouched
    assert [e[0] for e in events(conn)] == [sealing.SEALED, sealing.READY]
    assert tx(conn, sealing.force_seal, 1, T0 + 6 * GAP_NS) is None


def test_force_seal_of_an_unknown_chat_is_not_found(conn):
    with pytest.raises(NotFound):
        tx(conn, sealing.force_seal, 999, T0)


def test_status_lists_open_conversations_soonest_first(conn):
    later = add_conversation(conn, 1, [T0, T0 + 30 * MIN])
    sooner = add_conversation(conn, 2, [T0])
    unscheduled = add_conversation(conn, 3, [T0 + 60 * MIN], timer=False)
    add_conversation(conn, 4, [T0], sealed=True)
    now = T0 + 60 * MIN
    items = tx(conn, sealing.status, now)
    assert [i.conversation_id for i in items] == [sooner, later, unscheduled]
    first = items[0]
    assert (first.chat_id, first.last_message_ns, first.due_ns) == (2, T0, T0 + GAP_NS)
    assert first.seconds_left == 30 * 60
    assert items[1].message_count == 2 and items[1].start_ns == T0
    assert items[2].scheduled is False and items[2].due_ns == T0 + 60 * MIN + GAP_NS
    overdue = tx(conn, sealing.status, T0 + GAP_NS + 10 * S)
    assert overdue[0].seconds_left == -10


# ---------------------------------------------------------------------------------------------
# The Sealer task, with a gap of a fraction of a second.


class FakeBus:
    def __init__(self) -> None:
        self.notified = 0

    def notify(self) -> None:
        self.notified += 1


GAP = 300_000_000  # 0.3 s


@pytest.fixture
async def db(tmp_path):
    database = Database(tmp_path / "chatstats.db", readers=1)
    await database.open()
    yield database
    database.close()


async def add(db: Database, chat_id: int, dates: list[int], **kw) -> int:
    kw.setdefault("gap_ns", GAP)

    def build(c: sqlite3.Connection) -> int:
        add_chat(c, chat_id)
        cid = c.execute(
            "INSERT INTO conversations (chat_id, start_ns, end_ns, message_count)"
            " VALUES (?, ?, ?, ?)",
            (chat_id, min(dates), max(dates), len(dates)),
        ).lastrowid
        add_messages(c, chat_id, cid, dates)
        if kw.get("timer", True):
            sealing.schedule(c, cid, chat_id, max(dates), gap_ns=kw["gap_ns"])
        return cid

    return await db.write(build)


async def is_sealed(db: Database, cid: int) -> bool:
    row = await db.fetch_one("SELECT sealed FROM conversations WHERE id = :id", {"id": cid})
    return bool(row[0])


async def wait_sealed(db: Database, cid: int, limit: float = 3.0) -> float:
    began = time.monotonic()
    with anyio.fail_after(limit):
        while not await is_sealed(db, cid):
            await anyio.sleep(0.01)
    return time.monotonic() - began


@pytest.mark.anyio
async def test_sealer_sleeps_until_the_due_time_then_seals_and_notifies(db):
    bus = FakeBus()
    sealer = sealing.Sealer(db, bus, gap_ns=GAP)
    now = time.time_ns()
    cid = await add(db, 1, [now])
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sealer.run, stop)
        await anyio.sleep(0.15)
        assert not await is_sealed(db, cid)
        assert sealer.next_due_ns == now + GAP
        await wait_sealed(db, cid)
        assert time.time_ns() > now + GAP
        stop.set()
    assert bus.notified == 1
    assert sealer.sealed_total == 1
    # One round at start, one when the timer fell due (a third only if the loop's timer
    # fired a hair before the wall clock reached it): no polling.
    assert sealer.rounds in (2, 3)


@pytest.mark.anyio
async def test_wake_shortens_the_sleep_for_an_earlier_timer(db):
    sealer = sealing.Sealer(db, FakeBus(), gap_ns=GAP)
    now = time.time_ns()
    far = await add(db, 1, [now + 20 * S])  # due in ~20 s
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sealer.run, stop)
        await anyio.sleep(0.05)
        near = await add(db, 2, [time.time_ns()])
        sealer.wake()
        took = await wait_sealed(db, near, limit=2.0)
        assert took < 1.0
        assert not await is_sealed(db, far)
        assert sealer.next_due_ns == now + 20 * S + GAP
        stop.set()


@pytest.mark.anyio
async def test_wake_threadsafe_from_a_worker_thread(db):
    sealer = sealing.Sealer(db, FakeBus(), gap_ns=GAP)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sealer.run, stop)
        await anyio.sleep(0.05)
        assert sealer.next_due_ns is None  # idle: no timers
        cid = await add(db, 1, [time.time_ns() - GAP])
        threading.Thread(target=sealer.wake_threadsafe).start()
        await wait_sealed(db, cid, limit=2.0)
        sealer.wake_threadsafe()  # from the loop's own thread too
        stop.set()


@pytest.mark.anyio
async def test_conversations_that_expired_while_off_are_sealed_at_startup(db):
    bus = FakeBus()
    now = time.time_ns()
    with_timer = await add(db, 1, [now - 10 * S])
    without_timer = await add(db, 2, [now - 10 * S], timer=False)
    still_open = await add(db, 3, [now + 60 * S])
    sealer = sealing.Sealer(db, bus, gap_ns=GAP)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sealer.run, stop)
        await wait_sealed(db, with_timer, limit=1.0)
        await wait_sealed(db, without_timer, limit=1.0)
        assert not await is_sealed(db, still_open)
        stop.set()
    assert bus.notified == 1  # both in the first round, one commit
    rows = await db.fetch_all("SELECT type FROM events ORDER BY id")
    assert [r[0] for r in rows].count(sealing.READY) == 2


@pytest.mark.anyio
async def test_with_no_timers_the_sealer_sleeps_until_woken(db):
    sealer = sealing.Sealer(db, FakeBus(), gap_ns=GAP)
    stop = anyio.Event()
    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sealer.run, stop)
            await anyio.sleep(0.3)
            assert sealer.rounds == 1
            sealer.wake()
            await anyio.sleep(0.05)
            assert sealer.rounds == 2
            stop.set()


class FlakyDb:
    """Fails the first `failures` writes, then behaves."""

    def __init__(self, db: Database, failures: int) -> None:
        self.db = db
        self.failures = failures

    async def write(self, fn, *args):
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return await self.db.write(fn, *args)


@pytest.mark.anyio
async def test_a_failed_round_is_retried_with_backoff_not_fatal(db, logs):
    cid = await add(db, 1, [time.time_ns() - S])
    flaky = FlakyDb(db, failures=2)
    sealer = sealing.Sealer(flaky, FakeBus(), gap_ns=GAP, backoff=(0.05, 0.1))
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sealer.run, stop)
        await wait_sealed(db, cid, limit=2.0)
        stop.set()
    assert flaky.failures == 0
    failed = [e for e in logs if e["event"] == "seal_round_failed"]
    assert [e["retry_in"] for e in failed] == [0.05, 0.1]
    assert failed[0]["error_type"] == "OperationalError"
    sealed = [e for e in logs if e["event"] == "conversation_sealed"]
    assert sealed == [
        {
            "event": "conversation_sealed",
            "log_level": "info",
            "chat_id": 1,
            "conversation_id": cid,
            "message_count": 1,
            "forced": False,
        }
    ]


@pytest.mark.anyio
async def test_shutdown_stops_the_sealer_promptly(db):
    await add(db, 1, [time.time_ns() + 3600 * S])
    sealer = sealing.Sealer(db, FakeBus(), gap_ns=GAP)
    stop = anyio.Event()
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sealer.run, stop)
            await anyio.sleep(0.05)
            stop.set()


@pytest.mark.anyio
async def test_the_sleep_is_capped_while_timers_exist(db):
    """The loop's monotonic clock stops while a laptop sleeps; re-read wall time now and then."""
    await add(db, 1, [time.time_ns() + 3600 * S])
    sealer = sealing.Sealer(db, FakeBus(), gap_ns=GAP, max_sleep=0.05)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sealer.run, stop)
        await anyio.sleep(0.3)
        stop.set()
    assert sealer.rounds >= 3


# ---------------------------------------------------------------------------------------------
# The command line


@pytest.fixture
def data_dir(tmp_path):
    c = open_db(tmp_path / "chatstats.db")
    now = time.time_ns()
    add_conversation(c, 1, [now - 100 * MIN, now - 95 * MIN])  # overdue
    add_conversation(c, 2, [now - 10 * MIN])  # seals in ~80 minutes
    add_conversation(c, 3, [now - 5 * GAP_NS], sealed=True)
    c.close()
    return tmp_path


def test_cli_without_a_database_says_to_import_first(tmp_path, capsys):
    for argv in (["tracker-status"], ["check-sealing"], ["force-seal", "1"]):
        assert main([*argv, "--data-dir", str(tmp_path / "none")]) == 1
        err = capsys.readouterr().err
        assert "no database at" in err and "run chatstats import first" in err
        assert err.count("\n") == 1


def test_cli_tracker_status_summary_and_verbose(data_dir, capsys):
    assert main(["tracker-status", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "2 open conversations in 2 chats; 1 overdue" in out
    assert "next seal: conversation 2 in chat 2 in 1h 19m" in out
    assert main(["tracker-status", "-v", "--data-dir", str(data_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["chat", "conversation"])
    rows = [ln.split() for ln in lines[header + 1 :]]
    assert [r[:3] for r in rows] == [["1", "1", "2"], ["2", "2", "1"]]
    assert "overdue" in " ".join(rows[0])


def test_cli_check_sealing_seals_what_is_due(data_dir, capsys):
    assert main(["check-sealing", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "sealed conversation 1 in chat 1: 2 messages" in out
    assert out.strip().endswith("sealed 1 conversation")
    assert main(["check-sealing", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.strip() == "sealed 0 conversations"
    c = open_db(data_dir / "chatstats.db")
    assert [e[0] for e in events(c)] == [sealing.SEALED, sealing.READY]
    c.close()


def test_cli_force_seal(data_dir, capsys):
    assert main(["force-seal", "2", "--data-dir", str(data_dir)]) == 0
    assert "sealed conversation 2 in chat 2" in capsys.readouterr().out
    assert main(["force-seal", "2", "--data-dir", str(data_dir)]) == 1
    assert capsys.readouterr().err == "chatstats: chat 2 has no open conversation\n"
    assert main(["force-seal", "99", "--data-dir", str(data_dir)]) == 1
    assert capsys.readouterr().err == "chatstats: chat 99 does not exist\n"


def test_cli_force_seal_rejects_a_non_numeric_chat_id(data_dir):
    with pytest.raises(SystemExit) as exc:
        main(["force-seal", "x", "--data-dir", str(data_dir)])
    assert exc.value.code == 2
