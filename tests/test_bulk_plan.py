"""The first import's conversation plan (chatstats/ingest/plan.py) against the general one
(Ingest._plan_conversations), which live sync and re-imports use: same conversations, ids,
seal state and timers, event placement and chat counts, from the same chat.db."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from chatstats.ingest import plan
from chatstats.sample.writer import MessagesWriter
from tests.conftest import PROFILES
from tests.library_check import dump
from tests.test_import import run_import


def timers(data: Path) -> list[tuple]:
    conn = sqlite3.connect(data / "chatstats.db")
    rows = conn.execute("SELECT * FROM seal_timers ORDER BY 1").fetchall()
    conn.close()
    return rows


def both(capsys, lib: Path, tmp_path: Path, monkeypatch) -> tuple[Path, Path, list[int]]:
    calls: list[int] = []
    real = plan.write  # the walk's result, from the planning helper or walked here

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(plan, "write", counted)
    run_import(capsys, lib, tmp_path / "walk")
    walked = len(calls)
    monkeypatch.setattr(plan, "usable", lambda conn: False)
    run_import(capsys, lib, tmp_path / "general")
    return tmp_path / "walk", tmp_path / "general", [walked, len(calls)]


@pytest.mark.parametrize("profile", PROFILES)
def test_the_walk_plans_what_the_general_plan_does(
    profile, libraries, tmp_path, capsys, monkeypatch
):
    lib, _truth = libraries[profile]
    walk, general, calls = both(capsys, lib, tmp_path, monkeypatch)
    assert calls == [1, 1], "the first import must take the walk, the forced one not"
    assert dump(walk) == dump(general)
    assert timers(walk) == timers(general)


def test_open_conversations_get_the_same_timers_and_events_the_same_spans(
    tmp_path, capsys, monkeypatch
):
    """Recent messages (open conversations, seal timers) and system events at a span's
    edges, inside it, in a gap and before a chat's first message."""
    lib = tmp_path / "lib"
    lib.mkdir()
    w = MessagesWriter(lib / "chat.db", seed=3)
    now = time.time_ns()
    minute = 60 * 1_000_000_000
    alice, bob = w.handle("+15550001111"), w.handle("+15550002222")
    group = w.chat([alice, bob], display_name="")
    solo = w.chat([bob])
    w.rename_group(group, "before everything", from_me=True, date=now - 900 * minute)
    for k, t in enumerate([-800, -780, -600, -200, -120, -30, -5]):
        w.message(solo, f"s{k}", from_me=k % 2 == 0, sender=bob, date=now + t * minute)
        w.message(group, f"g{k}", from_me=False, sender=alice, date=now + t * minute + 1)
    w.rename_group(group, "at a start", from_me=True, date=now - 800 * minute + 1)
    w.rename_group(group, "inside", from_me=True, date=now - 790 * minute)
    w.rename_group(group, "in a gap", from_me=True, date=now - 400 * minute)
    w.rename_group(group, "at an end", from_me=True, date=now - 5 * minute + 1)
    w.rename_group(group, "after the end", from_me=True, date=now)
    w.close()
    walk, general, calls = both(capsys, lib, tmp_path, monkeypatch)
    assert calls == [1, 1]
    assert dump(walk) == dump(general)
    assert timers(walk) == timers(general) and len(timers(walk)) == 2
    conn = sqlite3.connect(walk / "chatstats.db")
    placed = conn.execute(
        "SELECT count(*), count(conversation_id) FROM messages WHERE kind <> 'message'"
    ).fetchone()
    assert placed == (6, 3)


@pytest.mark.parametrize("profile", PROFILES)
def test_the_walk_counts_what_the_rows_say(profile, libraries, tmp_path, capsys, monkeypatch):
    """The first import's counters come from the walk and the load's own decoding, not from
    a scan of the rows written: they must say what the rows say, as the general path's do."""
    lib, _truth = libraries[profile]
    walked = run_import(capsys, lib, tmp_path / "walk")
    monkeypatch.setattr(plan, "usable", lambda conn: False)
    general = run_import(capsys, lib, tmp_path / "general")
    conn = sqlite3.connect(tmp_path / "walk" / "chatstats.db")
    rows = conn.execute(
        "SELECT sum(kind = 'message'), sum(kind <> 'message'), sum(chat_id IS NULL),"
        " sum(body_status = 'corrupt'), sum(body_status = 'none') FROM messages"
    ).fetchone()
    conn.close()
    names = ("messages_added", "system_events_added", "orphans", "bodies_corrupt", "bodies_empty")
    assert tuple(walked[n] for n in names) == tuple(r or 0 for r in rows)
    assert tuple(general[n] for n in names) == tuple(walked[n] for n in names)
