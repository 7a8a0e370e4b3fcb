"""The vector index and search modes on the real daemon: real chat.db, loopback HTTP.

Facts are written into chat.db while the daemon tails it, so the index must pick them up
from the event log; edits and unsends must change or empty the results.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from chatstats.context.embed import bundled
from chatstats.context.index import META_NAME, VectorIndex
from chatstats.sample.correspondent import Correspondent
from chatstats.sample.generate import make_library
from tests.test_live import daemon, settings_for

pytestmark = pytest.mark.anyio

FACT = "we touch down in Lisbon at six on Friday, gate 14"
QUESTION = "when does the plane land in Lisbon"
EDITED = "my grandmother's birthday party moved to the harbour restaurant"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("search-lib")
    make_library(root, messages=400, seed=31)
    return root


@pytest.fixture
def lib(sample: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "lib"
    shutil.copytree(sample, dst)
    return dst


async def wait_until(client: httpx.AsyncClient, check: Any, what: str) -> Any:
    with anyio.fail_after(30, shield=False):
        while True:
            got = await check(client)
            if got:
                return got
            await anyio.sleep(0.1)
    raise AssertionError(what)  # pragma: no cover


async def status(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/api/index/status")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


async def search(client: httpx.AsyncClient, q: str, mode: str, **extra: Any) -> list[Any]:
    r = await client.get("/api/search", params={"q": q, "mode": mode, "limit": 10, **extra})
    assert r.status_code == 200, r.text
    hits: list[Any] = r.json()
    return hits


async def test_semantic_and_hybrid_follow_new_edited_and_unsent_messages(lib: Path, tmp_path: Path):
    data = tmp_path / "data"
    async with daemon(settings_for(lib, data)) as client:
        first = await wait_until(client, lambda c: _ready(c), "index never built")
        assert (
            first["model"] == bundled().name
            and first["dim"] == bundled().dim
            and first["items"] > 0
        )

        async def announced(_c: httpx.AsyncClient) -> list[Any]:
            with sqlite3.connect(data / "chatstats.db") as events:
                return events.execute(
                    "SELECT data FROM events WHERE type = 'index_ready'"
                ).fetchall()

        ready_event = json.loads((await wait_until(client, announced, "no index_ready"))[0][0])
        assert ready_event["items"] > 0 and ready_event["model"] == first["model"]
        meta = data / META_NAME
        assert meta.stat().st_mode & 0o777 == 0o600
        for name in json.loads(meta.read_text())["files"].values():
            assert (data / name).stat().st_mode & 0o777 == 0o600, name

        who = Correspondent(lib / "chat.db", seed=3, out=open(os.devnull, "w"))  # noqa: SIM115
        _rowid, guid = who.writer.message(
            who.chat, FACT, from_me=False, sender=who.sender, date=time.time_ns()
        )

        async def found(c: httpx.AsyncClient) -> list[Any]:
            hits = await search(c, QUESTION, "semantic")
            return [h for h in hits if h["guid"] == guid]

        hit = (await wait_until(client, found, "new fact never searchable"))[0]
        assert hit["matched"] == ["semantic"] and hit["score"] > 0
        hybrid = await search(client, QUESTION, "hybrid")
        top = [h for h in hybrid if h["guid"] == guid]
        assert top and top[0]["matched"] == ["semantic", "text"]
        # Filters: another chat's id leaves it out; a time window before it too.
        chat_id = top[0]["chat_id"]
        assert any(
            h["guid"] == guid for h in await search(client, QUESTION, "hybrid", chat_id=chat_id)
        )
        early = await search(client, QUESTION, "hybrid", until="2001-01-01T00:00:00Z")
        assert all(h["guid"] != guid for h in early)

        # Mine, edited: the new words are found, then unsent: gone from every mode.
        mine, mine_guid = who.writer.message(
            who.chat, "see you soon", from_me=True, date=time.time_ns()
        )
        who.writer.edit(mine, EDITED, time.time_ns())

        async def edited(c: httpx.AsyncClient) -> bool:
            hits = await search(c, "grandma birthday moved to the harbour place", "semantic")
            return any(h["guid"] == mine_guid for h in hits)

        await wait_until(client, edited, "edit never reached the index")
        who.writer.unsend(mine, time.time_ns())

        async def vanished(c: httpx.AsyncClient) -> bool:
            for mode in ("semantic", "hybrid"):
                hits = await search(c, "grandmother birthday party harbour restaurant", mode)
                if any(h["guid"] == mine_guid for h in hits):
                    return False
            return True

        await wait_until(client, vanished, "unsent message still found")
    # The stop saved what live sync added (the periodic save had not come round yet).
    saved = VectorIndex(data, bundled())
    assert saved.load() and saved.max_message_id >= hit["id"]
    assert saved.event_id > 0


async def _ready(c: httpx.AsyncClient) -> dict[str, Any] | None:
    s = await status(c)
    return s if s["items"] > 0 and not s["building"] else None


async def test_search_errors_are_400s(lib: Path, tmp_path: Path):
    async with daemon(settings_for(lib, tmp_path / "data")) as client:
        await wait_until(client, _ready, "index never built")
        for params in (
            {"q": "x", "mode": "fuzzy"},
            {"q": "", "mode": "semantic"},
            {"q": "x", "mode": "hybrid", "since": "yesterday"},
            {"q": "x", "mode": "hybrid", "before_id": "5"},
        ):
            r = await client.get("/api/search", params=params)
            assert r.status_code == 400, params
            assert r.json()["error"]["code"] == "bad_request"
        r = await client.get(
            "/api/search", params={"q": "x", "mode": "semantic", "chat_id": 999999}
        )
        assert r.status_code == 404


def _app_db(lib: Path, tmp_path: Path) -> Path:
    """An imported app database (through the real CLI import path)."""
    from chatstats.cli import main

    data = tmp_path / "imp"
    code = main(
        [
            "import",
            "--data-dir",
            str(data),
            "--source",
            str(lib / "chat.db"),
            "--addressbook",
            str(lib / "AddressBook"),
        ]
    )
    assert code == 0
    return next(data.glob("*.db"))


class OtherModel:
    """The bundled model under another name: a saved index must not be reused for it."""

    def __init__(self) -> None:
        self._inner = bundled()
        self.name, self.dim = "other/model", self._inner.dim

    def embed(self, texts: list[str]) -> Any:
        return self._inner.embed(texts)


def test_rebuild_on_model_change_corruption_and_half_written_files(lib: Path, tmp_path: Path):
    db = _app_db(lib, tmp_path)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    store = tmp_path / "index"
    store.mkdir()
    built = VectorIndex(store, bundled())
    built.rebuild(conn)
    items = built.describe()["items"]
    assert items > 0
    assert VectorIndex(store, bundled()).load()
    assert not VectorIndex(store, OtherModel()).load()  # another model: rebuild needed
    # A kill -9 mid-save leaves a temp file beside the complete pair: still loadable.
    (store / ".vectors-9.bin.123.tmp").write_bytes(b"half")
    again = VectorIndex(store, bundled())
    assert again.load() and again.describe()["items"] == items
    # A corrupted vectors file (truncated) is refused, never loaded.
    vec = store / json.loads((store / META_NAME).read_text())["files"]["singles"]
    vec.write_bytes(vec.read_bytes()[: vec.stat().st_size // 2])
    assert not VectorIndex(store, bundled()).load()
    (store / META_NAME).write_text("{not json")
    assert not VectorIndex(store, bundled()).load()


def test_planted_facts_are_found_by_meaning(tmp_path: Path):
    """Questions in other words than their answers: semantic and hybrid must find a share
    of them in the top 10 that word search (every word, as mode=text) cannot."""
    from chatstats.context.search import SearchIndex
    from chatstats.library import store
    from chatstats.library.service import search_terms
    from chatstats.sample.generate import make_library as make

    lib = tmp_path / "facts-lib"
    truth = make(lib, messages=3000, seed=7)
    assert len(truth.facts) >= 10
    db = _app_db(lib, tmp_path)
    state = type("S", (), {})()
    state.settings = type("X", (), {"data_dir": str(tmp_path / "idx")})()
    state.db = type("D", (), {"path": db})()
    (tmp_path / "idx").mkdir()
    index = SearchIndex(state, bundled())
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    index.index.rebuild(conn)
    ids = dict(conn.execute("SELECT guid, id FROM messages").fetchall())
    found = {"semantic": 0, "hybrid": 0, "text": 0}
    for fact in truth.facts:
        want = ids[fact.guid]
        for mode in ("semantic", "hybrid"):
            found[mode] += want in [
                m.id for m, _s, _w in index.search(fact.question, mode, limit=10)
            ]
        words = store.match_expression(search_terms(fact.question))
        found["text"] += want in [
            r["id"] for r in store.search_messages(conn, words, None, 10, None)
        ]
    assert found["semantic"] >= len(truth.facts) // 5, found
    assert found["hybrid"] >= len(truth.facts) // 5, found
    assert found["text"] < found["hybrid"], found


def test_refresh_re_embeds_only_the_changed_units(lib: Path, tmp_path: Path):
    """An edit changes one single and the windows holding it: only those are embedded
    again (counted by `last_embedded`), and a refresh with nothing changed embeds none."""
    from chatstats.context.index import WINDOW, window_starts

    db = _app_db(lib, tmp_path)
    conn = sqlite3.connect(db)
    store = tmp_path / "index"
    store.mkdir()
    index = VectorIndex(store, bundled())
    index.rebuild(conn)
    total = index.embedded_total
    assert index.last_embedded == total == index.describe()["items"] > 0
    conv, n = conn.execute(
        "SELECT conversation_id, count(*) AS n FROM messages WHERE kind = 'message'"
        " AND unsent = 0 AND text IS NOT NULL AND conversation_id IS NOT NULL"
        " GROUP BY conversation_id ORDER BY n DESC LIMIT 1"
    ).fetchone()
    assert n > WINDOW  # several windows, so some must be left alone
    assert index.refresh(conn, [conv]) == 0 and index.last_embedded == 0
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM messages WHERE conversation_id = :c AND kind = 'message'"
            " AND unsent = 0 AND text IS NOT NULL ORDER BY date_ns, id",
            {"c": conv},
        )
    ]
    pos = len(ids) // 2
    conn.execute("UPDATE messages SET text = 'changed words here' WHERE id = :i", {"i": ids[pos]})
    holding = sum(1 for p in window_starts(len(ids)) if p <= pos < p + WINDOW)
    assert index.refresh(conn, [conv]) == 1 + holding == index.last_embedded
    assert index.embedded_total == total + 1 + holding
    assert index.describe()["items"] == total  # replaced, not added


def test_status_says_building_until_search_accepts_queries(tmp_path: Path):
    from chatstats.context.search import SearchIndex

    state = type("S", (), {})()
    state.settings = type("X", (), {"data_dir": str(tmp_path)})()
    index = SearchIndex(state, bundled())
    index.index.status.building = False  # items counted, the save still running
    assert index.describe()["building"] is True
    index.ready.set()
    assert index.describe()["building"] is False


def test_word_leg_matches_inflections_and_keeps_fts_syntax_out():
    """The hybrid's word leg has no stemmer in the index (unicode61), so each word also
    matches its stem as a prefix: "researching" finds "researched"; an exact form still
    ranks first; stopwords and short stems add nothing; operators typed are just text."""
    from chatstats.context.search import _fts_ranked, words_match

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE messages_fts USING fts5(text)")
    rows = {
        1: "I researched adoption agencies all week",
        2: "the research on adoption agencies",
        3: "researching agencies is tiring",
        4: "nothing to see here",
    }
    conn.executemany("INSERT INTO messages_fts (rowid, text) VALUES (?, ?)", rows.items())
    got = _fts_ranked(conn, "what is she researching?", 10)
    assert got[0] == 3 and set(got) == {1, 2, 3}
    assert words_match("what is it") is None  # stopwords only
    assert words_match("goes") == '"goes"'  # "go" is too short a stem
    match = words_match('NEAR(a b) "quoted" col:word*')
    assert match is not None
    assert set(_fts_ranked(conn, 'NEAR(research "quoted") col:agencies*', 10)) <= set(rows)
    assert _fts_ranked(conn, "the and of", 10) == []


def test_word_leg_leaves_out_the_commonest_words_past_its_budget(monkeypatch):
    """bm25 costs per matching row, so the word leg takes the query's words rarest first
    while their rows fit WORDS_BUDGET: a common word's rows drop out, the rarest matching
    word always stays (alone it may pass the budget), and a word that matches nothing
    does not use up the choice."""
    from chatstats.context import search

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE messages_fts USING fts5(text)")
    rows = {n: "see you there" for n in range(1, 9)} | {20: "the dentist said see you"}
    rows[21] = "dentist at noon"
    conn.executemany("INSERT INTO messages_fts (rowid, text) VALUES (?, ?)", rows.items())
    monkeypatch.setattr(search, "WORDS_BUDGET", 4)
    assert set(search._fts_ranked(conn, "dentist see", 50)) == {20, 21}
    assert set(search._fts_ranked(conn, "see zebra", 50)) == set(range(1, 9)) | {20}
    monkeypatch.setattr(search, "WORDS_BUDGET", 100)
    assert set(search._fts_ranked(conn, "dentist see", 50)) == set(rows)


def test_a_full_build_runs_in_a_child_process_and_the_daemon_loads_it(lib: Path, tmp_path: Path):
    """The bundled model's full build runs in `python -m chatstats.context.build` (its freed
    heap stays out of the daemon); the daemon loads the files it saved, with the event
    position it was given. A child that fails (here: no database) is reported, writes no
    index, and the daemon builds in-process instead."""
    import subprocess
    import sys

    from chatstats.context.build import run_child
    from chatstats.context.search import SearchIndex

    db = _app_db(lib, tmp_path)
    out = tmp_path / "built"
    out.mkdir()
    seen: list[float] = []
    assert run_child(out, db, 7, seen.append)
    loaded = VectorIndex(out, bundled())
    assert loaded.load() and loaded.event_id == 7 and loaded.describe()["items"] > 0
    assert all(0.0 <= p <= 1.0 for p in seen)
    for name in json.loads((out / META_NAME).read_text())["files"].values():
        assert (out / name).stat().st_mode & 0o777 == 0o600

    empty = tmp_path / "failed"
    empty.mkdir()
    assert not run_child(empty, tmp_path / "missing.db", 0, seen.append)
    assert not (empty / META_NAME).exists()
    usage = subprocess.run(
        [sys.executable, "-m", "chatstats.context.build"], capture_output=True, text=True
    )
    assert usage.returncode == 2 and "usage" in usage.stderr

    state = type("S", (), {})()
    state.settings = type("X", (), {"data_dir": str(tmp_path / "daemon")})()
    state.db = type("D", (), {"path": db})()
    (tmp_path / "daemon").mkdir()
    daemon_index = SearchIndex(state, bundled())
    daemon_index._prepare(3)
    assert daemon_index.ready.is_set() and daemon_index.index.event_id == 3
    assert daemon_index.describe()["items"] == loaded.describe()["items"]
    assert daemon_index.describe()["progress"] == 1.0


def test_a_build_child_whose_daemon_dies_exits_and_leaves_a_loadable_state(
    lib: Path, tmp_path: Path
):
    """A daemon killed with -9 mid-build must not leave its builder running (its successor
    starts its own): the child sees its parent gone and exits without writing an index (the
    parent dies here while the child is still importing, before its first batch)."""
    import signal
    import subprocess
    import sys

    db = _app_db(lib, tmp_path)
    out = tmp_path / "orphaned"
    out.mkdir()
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "import os\n"
            "c = subprocess.Popen([sys.executable, '-m', 'chatstats.context.build',"
            f" {str(out)!r}, {str(db)!r}, '0', str(os.getpid())], stdout=subprocess.PIPE)\n"
            "print(c.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child}/stat") as f:  # an exited child not yet reaped is a zombie
            if f.read().split(") ")[1].startswith("Z"):
                break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the build child outlived its daemon")
    assert not (out / META_NAME).exists() and not VectorIndex(out, bundled()).load()
    assert not list(out.glob("*.bin"))


def test_search_reuses_its_read_connections_and_closes_them(lib: Path, tmp_path: Path):
    """Opening a connection parses the whole schema (~6 ms at 300k), so search keeps a few;
    a failed query's connection is not kept (it may hold a statement open)."""
    from chatstats.context.search import READERS, SearchIndex
    from chatstats.errors import BadRequest

    db = _app_db(lib, tmp_path)
    state = type("S", (), {})()
    state.settings = type("X", (), {"data_dir": str(tmp_path / "idx")})()
    state.db = type("D", (), {"path": db})()
    (tmp_path / "idx").mkdir()
    index = SearchIndex(state, bundled())
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    index.index.rebuild(conn)
    first = index.search("dinner tonight", "hybrid", limit=5)
    assert index._readers.qsize() == 1
    assert index.search("dinner tonight", "hybrid", limit=5) == first
    assert index._readers.qsize() == 1  # the same one, taken and given back
    with pytest.raises(BadRequest):
        index.search("dinner", "nonsense", limit=5)
    assert index._readers.qsize() == 0 < READERS
    index.search("dinner", "semantic", limit=5)
    index.close_readers()
    assert index._readers.qsize() == 0


def test_fusion_lets_a_first_hit_beat_two_weak_ranks():
    """Plain RRF (k = 60) ranks a message both legs put 40th above either leg's first hit
    (2/101 > 1/61); with the head rule only the first HEAD ranks count fully, and the tail
    still orders what no head holds."""
    from chatstats.context.search import HEAD, _rrf

    words = [1, *range(100, 139), 7]  # 7 is 40th
    semantic = [2, *range(200, 239), 7]
    plain = _rrf([words, semantic])
    assert plain[7] > plain[1]
    fused = _rrf([words, semantic], head=HEAD)
    assert fused[1] > fused[7] and fused[2] > fused[7]
    assert fused[7] > fused[138]  # found twice in the tail beats once in the tail
