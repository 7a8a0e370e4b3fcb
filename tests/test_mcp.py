"""`chatstats mcp` as a real subprocess, driven by the MCP SDK's own stdio client."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from chatstats import cli
from chatstats.context.embed import bundled
from chatstats.context.index import VectorIndex
from chatstats.db import connect
from chatstats.sample.generate import make_library
from chatstats.sample.truth import Truth
from tests.test_chatbot_tools import import_library, seed_analyses

pytestmark = pytest.mark.anyio

TOOLS = {"search_messages", "get_conversation", "list_commitments", "get_analyses", "get_stats"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth, int]:
    """An imported library with a saved index and one analysed conversation."""
    root = tmp_path_factory.mktemp("mcp")
    truth = make_library(root / "lib", messages=1500, seed=7)
    db = import_library(root / "lib", root / "data")
    conn = connect(db, write=False)
    VectorIndex(root / "data", bundled()).rebuild(conn)
    cid = conn.execute("SELECT id FROM conversations ORDER BY message_count DESC").fetchone()[0]
    conn.close()
    seed_analyses(db, [cid])
    return root / "data", truth, cid


def _params(data_dir: Path) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSTATS_")}
    env["CHATSTATS_TIMEZONE"] = "UTC"
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "chatstats", "mcp", "--data-dir", str(data_dir)],
        env=env,
    )


async def _session(data_dir: Path, work: Any) -> Any:
    with anyio.fail_after(120):
        async with (
            stdio_client(_params(data_dir)) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await work(session)


def _text(result: Any) -> str:
    assert len(result.content) == 1 and result.content[0].type == "text"
    return result.content[0].text


async def test_lists_the_tools_and_answers_each_from_the_data(data):
    data_dir, truth, cid = data
    before = (data_dir / "chatstats.db").read_bytes()
    db = sqlite3.connect(data_dir / "chatstats.db")
    guids = {r[0] for r in db.execute("SELECT guid FROM messages")}
    db.close()

    async def work(s: ClientSession) -> dict[str, Any]:
        listed = await s.list_tools()
        out: dict[str, Any] = {"tools": {t.name: t for t in listed.tools}}
        fact = truth.facts[0]
        out["search"] = await s.call_tool("search_messages", {"query": fact.question})
        out["conversation"] = await s.call_tool("get_conversation", {"conversation_id": cid})
        out["commitments"] = await s.call_tool("list_commitments", {})
        out["analyses"] = await s.call_tool("get_analyses", {"conversation_id": cid})
        out["stats"] = await s.call_tool("get_stats", {})
        return out

    got = await _session(data_dir, work)
    tools = got["tools"]
    assert set(tools) == TOOLS
    for t in tools.values():
        assert t.input_schema["type"] == "object" and t.description
        assert t.annotations.read_only_hint is True
    assert tools["search_messages"].input_schema["required"] == ["query"]
    for key in ("search", "conversation", "commitments", "analyses", "stats"):
        assert not got[key].is_error, key
    hits = json.loads(_text(got["search"]))
    assert hits["mode"] == "hybrid" and len(hits["hits"]) == 10
    assert {h["guid"] for h in hits["hits"]} <= guids
    conv = json.loads(_text(got["conversation"]))
    assert conv["conversation_id"] == cid and conv["messages"]
    assert {m["guid"] for m in conv["messages"]} <= guids
    assert json.loads(_text(got["commitments"]))["commitments"][0]["conversation_id"] == cid
    assert json.loads(_text(got["analyses"]))["analyses"]
    assert json.loads(_text(got["stats"]))["stats"][0]["messages"] > 0
    assert (data_dir / "chatstats.db").read_bytes() == before  # never writes


async def test_bad_arguments_are_error_results_and_the_server_keeps_serving(data):
    data_dir, _, cid = data

    async def work(s: ClientSession) -> list[Any]:
        return [
            await s.call_tool("get_conversation", {"conversation_id": "seven"}),
            await s.call_tool("get_conversation", {"conversation_id": 999_999}),
            await s.call_tool("search_messages", {"query": "x", "limit": 500}),
            await s.call_tool("no_such_tool", {}),
            await s.call_tool("get_analyses", {"conversation_id": cid}),
        ]

    bad_type, missing, too_many, unknown, fine = await _session(data_dir, work)
    assert bad_type.is_error and "must be an integer" in _text(bad_type)
    assert missing.is_error and "no conversation 999999" in _text(missing)
    assert too_many.is_error and "limit must be from 1 to 50" in _text(too_many)
    assert unknown.is_error and "unknown tool" in _text(unknown)
    assert not fine.is_error


async def test_without_a_saved_index_search_says_it_matched_words(data, tmp_path):
    data_dir, truth, _ = data
    copy = tmp_path / "noindex"
    copy.mkdir()
    src = sqlite3.connect(data_dir / "chatstats.db")
    dst = sqlite3.connect(copy / "chatstats.db")
    src.backup(dst)
    src.close()
    dst.close()
    word = max(truth.facts[0].answer.split(), key=len).strip(",.!?")

    async def work(s: ClientSession) -> Any:
        return await s.call_tool("search_messages", {"query": word})

    result = await _session(copy, work)
    body = json.loads(_text(result))
    assert not result.is_error and body["mode"] == "text" and "index" in body["note"]


def test_a_missing_database_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["mcp", "--data-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "no database" in err and err.count("\n") == 1


def test_a_database_needing_migration_is_refused_not_migrated(data, tmp_path, capsys):
    data_dir, _, _ = data
    copy = tmp_path / "old"
    copy.mkdir()
    src = sqlite3.connect(data_dir / "chatstats.db")
    dst = sqlite3.connect(copy / "chatstats.db")
    src.backup(dst)
    src.close()
    newest = dst.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
    dst.execute("DELETE FROM schema_migrations WHERE version = ?", (newest,))
    dst.commit()
    dst.close()
    assert cli.main(["mcp", "--data-dir", str(copy)]) == 1
    assert "migrate" in capsys.readouterr().err
    check = sqlite3.connect(copy / "chatstats.db")
    assert check.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] < newest
    check.close()


async def test_serves_beside_a_running_daemon_and_sees_its_commits(tmp_path):
    """The daemon imports, builds and saves its index; the MCP server, started beside it,
    loads that index and reads a message the daemon synced after the server started."""
    import shutil

    import httpx

    from chatstats.sample.correspondent import Correspondent
    from tests.test_live import daemon, settings_for

    lib = tmp_path / "lib"
    make_library(lib, messages=400, seed=31)
    data = tmp_path / "data"
    fact = "the spare key is under the blue heron planter"
    async with daemon(settings_for(lib, data)) as client:
        with anyio.fail_after(60):
            while not (data / "index.json").exists():
                await anyio.sleep(0.1)

        async def work(s: ClientSession) -> tuple[Any, Any, Any]:
            before = await s.call_tool("search_messages", {"query": "heron planter key"})
            who = Correspondent(lib / "chat.db", seed=3, out=open(os.devnull, "w"))  # noqa: SIM115
            _rowid, guid = who.writer.message(
                who.chat, fact, from_me=False, sender=who.sender, date=time.time_ns()
            )

            async def synced(c: httpx.AsyncClient) -> bool:
                r = await c.get("/api/search", params={"q": "heron planter"})
                return any(m["guid"] == guid for m in r.json())

            with anyio.fail_after(30):
                while not await synced(client):
                    await anyio.sleep(0.1)
            after = await s.call_tool("search_messages", {"query": "heron planter key"})
            hits = json.loads(_text(after))["hits"]
            mine = next(h for h in hits if h["guid"] == guid)
            # Embedded into the server's copy of the index as soon as it was synced.
            assert mine["matched"] == ["semantic", "text"]
            conv = await s.call_tool(
                "get_conversation", {"conversation_id": mine["conversation_id"]}
            )
            return before, after, (guid, conv)

        before, after, (guid, conv) = await _session(data, work)
    assert json.loads(_text(before))["mode"] == "hybrid"  # the daemon's saved index
    assert guid not in _text(before)
    assert not after.is_error
    assert guid in [m["guid"] for m in json.loads(_text(conv))["messages"]]
    shutil.rmtree(lib)
