"""Every statistics figure against a plain reimplementation from the sample library's truth."""

from __future__ import annotations

import sqlite3
import time
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from chatstats.api.app import create_app
from chatstats.api.state import AppState
from chatstats.config import Settings
from chatstats.db import Database
from chatstats.stats import service
from tests import stats_truth
from tests.conftest import PROFILES
from tests.test_import import run_import

ZONES = ["America/New_York", "UTC", "Asia/Kolkata"]  # DST, none, a half-hour offset
LO, HI = service.MIN_NS, service.MAX_NS
TOKEN = "stats-token-0123456789"


def _check_all(conn: sqlite3.Connection, truth, zone: ZoneInfo, since: int, until: int) -> None:
    today = datetime.now(zone).date()
    assert service.overview(conn, zone, since, until) == stats_truth.overview(
        truth, conn, zone, since, until
    )
    chats, _, _ = stats_truth.ids(conn)
    for guid, cid in chats.items():
        want = stats_truth.figures(
            truth, conn, zone, stats_truth.chat_messages(truth, guid, since, until), today
        )
        assert service.chat_stats(conn, zone, cid, since, until, today) == want, cid
    for (kid,) in conn.execute("SELECT id FROM contacts WHERE is_me = 0"):
        ms = stats_truth.contact_messages(truth, conn, kid, since, until)
        want = stats_truth.figures(truth, conn, zone, ms, today)
        assert service.contact_stats(conn, zone, kid, since, until, today) == want, kid


def _open(data: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(data / "chatstats.db")
    conn.row_factory = sqlite3.Row
    return conn


@pytest.mark.parametrize("profile", PROFILES)
def test_every_figure_matches_the_truth_after_import(profile, libraries, tmp_path, capsys):
    lib, truth = libraries[profile]
    run_import(capsys, lib, tmp_path)
    conn = _open(tmp_path)
    times = sorted(m.date_ns for m in truth.messages)
    # A window whose edges fall inside 15-minute buckets, to exercise the exact edges.
    since, until = (
        times[len(times) // 4] + 7 * 60 * 10**9 + 1,
        times[3 * len(times) // 4] - 61 * 10**9,
    )
    for name in ZONES:
        zone = ZoneInfo(name)
        _check_all(conn, truth, zone, LO, HI)
        _check_all(conn, truth, zone, since, until)


def test_buckets_follow_dst_changes():
    """A message just before and just after a DST switch land in the right local hours."""
    zone = ZoneInfo("America/New_York")
    # 2024-03-10 01:59 EST = 06:59Z; 03:00 EDT = 07:00Z
    a = int(datetime.fromisoformat("2024-03-10T06:59:00+00:00").timestamp()) * 10**9
    b = a + 60 * 10**9
    assert (service.local(a, zone).hour, service.local(b, zone).hour) == (1, 3)
    assert service.local_year_start_ns(2024, zone) % (900 * 10**9) == 0
    assert service.streaks(
        [date(2024, 3, 9), date(2024, 3, 10), date(2024, 3, 11)], date(2024, 3, 12)
    ) == {"longest_days": 3, "longest_start": "2024-03-09", "current_days": 3}


@pytest.fixture
def imported(libraries, tmp_path, capsys) -> Path:
    lib, _ = libraries["sequoia"]
    run_import(capsys, lib, tmp_path)
    return tmp_path


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/stats/overview?since=yesterday", 400),
        ("/api/stats/overview?until=2024-13-01", 400),
        ("/api/stats/overview?since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z", 400),
        ("/api/stats/chats/abc", 400),
        ("/api/stats/chats/0", 400),
        ("/api/stats/chats/999999", 404),
        ("/api/stats/contacts/999999", 404),
        ("/api/stats/wrapped?year=20x4", 400),
        ("/api/stats/wrapped?year=1800", 400),
    ],
)
async def test_bad_input_is_a_clear_4xx(imported, url, status):
    async with _client(imported, "UTC") as c:
        r = await c.get(url)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]


@pytest.mark.anyio
async def test_unknown_zone_is_a_400(imported):
    async with _client(imported, "Mars/Olympus_Mons") as c:
        r = await c.get("/api/stats/overview")
    assert r.status_code == 400
    assert "Mars/Olympus_Mons" in r.json()["error"]["message"]


@pytest.mark.anyio
async def test_routes_answer_over_http(imported, libraries):
    _, truth = libraries["sequoia"]
    async with _client(imported, "Europe/Paris") as c:
        over = (await c.get("/api/stats/overview")).json()
        chat_id = over["top_chats"][0]["chat_id"]
        chat = (await c.get(f"/api/stats/chats/{chat_id}?since=2000-01-01T00:00:00")).json()
        year = over["by_year"][-1]["year"]
        wrapped = (await c.get(f"/api/stats/wrapped?year={year}")).json()
        listed = (await c.get("/api/chats?limit=200")).json()
    named = {c["id"]: c["title"] for c in listed}
    assert over["top_chats"] and all(t["title"] == named[t["chat_id"]] for t in over["top_chats"])
    conn = _open(imported)
    zone = ZoneInfo("Europe/Paris")
    assert over == stats_truth.overview(truth, conn, zone, LO, HI)
    assert chat["messages"] == over["top_chats"][0]["messages"]
    assert wrapped["timezone"] == "Europe/Paris" and wrapped["year"] == year
    assert wrapped["messages"] == over["by_year"][-1]["sent"] + over["by_year"][-1]["received"]


class _client:
    def __init__(self, data: Path, zone: str) -> None:
        self.data, self.zone = data, zone

    async def __aenter__(self) -> httpx.AsyncClient:
        self.db = Database(self.data / "chatstats.db")
        await self.db.open()
        st = AppState(
            settings=Settings(data_dir=str(self.data), timezone=self.zone),
            db=self.db,
            token=TOKEN,
            started_ns=time.time_ns(),
        )
        self.c = httpx.AsyncClient(
            transport=httpx.ASGITransport(create_app(st)),
            base_url="http://127.0.0.1:8765",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        return self.c

    async def __aexit__(self, *exc: object) -> None:
        await self.c.aclose()
        self.db.close()


@pytest.mark.anyio
async def test_wrapped_matches_the_truth(imported, libraries):
    _, truth = libraries["sequoia"]
    zone = ZoneInfo("America/New_York")
    conn = _open(imported)
    _, contact, _ = stats_truth.ids(conn)
    for year in sorted({stats_truth._local(m.date_ns, zone).year for m in truth.messages})[-3:]:
        async with _client(imported, zone.key) as c:
            got = (await c.get(f"/api/stats/wrapped?year={year}")).json()
        ms = [
            m
            for m in stats_truth.messages(truth, LO, HI)
            if stats_truth._local(m.date_ns, zone).year == year
        ]
        days: dict[str, int] = {}
        hours = [0] * 24
        people: dict[int, int] = {}
        for m in ms:
            t = stats_truth._local(m.date_ns, zone)
            days[t.date().isoformat()] = days.get(t.date().isoformat(), 0) + 1
            hours[t.hour] += 1
            k = contact.get(m.sender or "")
            if not m.is_from_me and k is not None:
                people[k] = people.get(k, 0) + 1
        assert got["messages"] == len(ms)
        if ms:
            best = max(days.items(), key=lambda kv: (kv[1], kv[0]))
            b = got["busiest_day"]
            assert (b["date"], b["sent"] + b["received"]) == best
            assert got["top_hour"] == max(range(24), key=lambda h: (hours[h], -h))
        want = sorted(people.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        assert [(p["contact_id"], p["messages"]) for p in got["top_people"]] == want
        prev = [
            m
            for m in stats_truth.messages(truth, LO, HI)
            if stats_truth._local(m.date_ns, zone).year == year - 1
        ]
        assert got["previous_year"]["messages"] == len(prev)


def test_cli_report_and_wrapped(imported, capsys):
    import json as _json

    from chatstats import cli

    conn = _open(imported)
    chat_id = conn.execute(
        "SELECT chat_id FROM stats_buckets GROUP BY chat_id ORDER BY SUM(messages) DESC LIMIT 1"
    ).fetchone()[0]
    d = ["--data-dir", str(imported)]
    assert cli.main(["report", "--chat-id", str(chat_id), "--json", *d]) == 0
    fig = _json.loads(capsys.readouterr().out)
    assert (
        fig["messages"]
        == conn.execute(
            "SELECT COUNT(*) FROM messages WHERE chat_id = ? AND kind = 'message'", (chat_id,)
        ).fetchone()[0]
    )
    assert cli.main(["report", "--chat-id", str(chat_id), *d]) == 0
    text = capsys.readouterr().out
    assert "Week by hour" in text and "Mon" in text and str(fig["messages"]) in text
    assert cli.main(["wrapped", "--year", "2024", *d]) == 0
    assert "2024 in messages" in capsys.readouterr().out
    assert cli.main(["report", "--chat-id", "999999", *d]) == 1
    assert "no chat with id 999999" in capsys.readouterr().err
    assert cli.main(["wrapped", "--year", "1800", *d]) == 1
    assert cli.main(["report", "--contact-id", "999999", *d]) == 1


def test_any_window_of_the_overview_matches_the_truth(libraries, tmp_path, capsys):
    """Windows cut anywhere (months read as rollup minus the buckets outside when those are
    fewer, years around their UTC new year): every overview equals the truth's."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    lib, truth = libraries["sequoia"]
    run_import(capsys, lib, tmp_path)
    conn = _open(tmp_path)
    times = sorted(m.date_ns for m in truth.messages)
    lo, hi = times[0] - 40 * 86400 * 10**9, times[-1] + 40 * 86400 * 10**9

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(lo, hi), st.integers(0, 3 * 365 * 86400 * 10**9), st.sampled_from(ZONES))
    def check(since: int, length: int, name: str) -> None:
        zone = ZoneInfo(name)
        until = since + length
        assert service.overview(conn, zone, since, until) == stats_truth.overview(
            truth, conn, zone, since, until
        )

    check()
