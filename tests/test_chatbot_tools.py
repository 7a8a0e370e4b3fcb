"""The chatbot's read-only tools on a real imported sample library (chat.db -> CLI import),
with a real vector index and analyses stored through the analysis store."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from chatstats import cli
from chatstats.analysis import store as analysis_store
from chatstats.chatbot import tools
from chatstats.chatbot.tools import READ_TOOLS, Scope, ToolError, run_read_tool
from chatstats.config import Settings
from chatstats.context.embed import bundled
from chatstats.context.index import VectorIndex
from chatstats.db import connect, transaction
from chatstats.llm import tokens
from chatstats.sample.generate import make_library
from chatstats.sample.truth import Truth

PROMISE = {"kind": "promise", "who": "me", "what": "bring the tent", "status": "open"}


def _job(conn: sqlite3.Connection, cid: int, pass_name: str) -> analysis_store.Job:
    chat = analysis_store.conversation_chat(conn, cid)
    assert chat is not None
    now = time.time_ns()
    return analysis_store.Job(
        0, None, cid, chat, pass_name, 1, 0, "done", 1, 3, now, None, now, now, False
    )


def seed_analyses(db: Path, conversation_ids: list[int]) -> None:
    """A basic and a commitments result on each conversation, as the engine stores them."""
    conn = connect(db, write=True)
    with transaction(conn):
        for n, cid in enumerate(conversation_ids):
            basic = _job(conn, cid, "basic")
            result = {"summary": f"summary {n}", "topics": ["camping"], "tone": "warm"}
            analysis_store.upsert_analysis(
                conn, basic, json.dumps(result), model="fake", llm_call_id=None, now_ns=1
            )
            job = _job(conn, cid, "commitments")
            items = [{**PROMISE, "what": f"{PROMISE['what']} {n}"}]
            aid = analysis_store.upsert_analysis(
                conn, job, json.dumps({"items": items}), model="fake", llm_call_id=None, now_ns=1
            )
            analysis_store.replace_commitments(conn, aid, job, items, now_ns=1)
    conn.close()


def import_library(lib: Path, data: Path) -> Path:
    code = cli.main(
        [
            "import",
            "--source",
            str(lib / "chat.db"),
            "--addressbook",
            str(lib / "AddressBook"),
            "--data-dir",
            str(data),
        ]
    )
    assert code == 0
    return data / "chatstats.db"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth, list[int]]:
    """An imported sample library with planted facts, a saved vector index, and analyses on
    three conversations of the busiest chat."""
    root = tmp_path_factory.mktemp("chatbot-tools")
    truth = make_library(root / "lib", messages=3000, seed=7)
    assert len(truth.facts) >= 10
    db = import_library(root / "lib", root / "data")
    conn = connect(db, write=False)
    VectorIndex(root / "data", bundled()).rebuild(conn)
    chat = conn.execute(
        "SELECT chat_id FROM conversations GROUP BY chat_id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()[0]
    cids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM conversations WHERE chat_id = :c ORDER BY id LIMIT 3", {"c": chat}
        )
    ]
    conn.close()
    seed_analyses(db, cids)
    return root / "data", truth, cids


@pytest.fixture
def ro(library: tuple[Path, Truth, list[int]]) -> Any:
    conn = connect(library[0] / "chatstats.db", write=False)
    yield conn
    conn.close()


@pytest.fixture
def settings(library: tuple[Path, Truth, list[int]]) -> Settings:
    return Settings(data_dir=str(library[0]), timezone="UTC")


def _guids(conn: sqlite3.Connection) -> dict[str, sqlite3.Row]:
    return {
        r["guid"]: r
        for r in conn.execute("SELECT guid, id, chat_id, conversation_id, kind FROM messages")
    }


def test_every_tool_has_a_description_file_and_an_object_schema():
    assert set(READ_TOOLS) == {
        "search_messages",
        "get_conversation",
        "list_commitments",
        "get_analyses",
        "get_stats",
    }
    for name, tool in READ_TOOLS.items():
        assert tool.name == name
        assert tool.description == (tools.tools_dir() / f"{name}.md").read_text().strip()
        assert len(tool.description) > 100
        assert tool.parameters["type"] == "object"
        assert tool.parameters["additionalProperties"] is False


def test_search_finds_planted_facts_and_cites_real_messages(library, ro, settings):
    _, truth, _ = library
    index = tools.saved_index(settings)
    assert index is not None
    guids = _guids(ro)
    found = 0
    for fact in truth.facts:
        out = run_read_tool(
            ro, "search_messages", {"query": fact.question}, settings=settings, index=index
        )
        body = json.loads(out.content)
        assert body["mode"] == "hybrid" and "note" not in body
        assert out.count == len(body["hits"]) == len(out.citations) == 10
        for cite, hit in zip(out.citations, body["hits"], strict=True):
            assert cite == {"message_guid": hit["guid"], "chat_id": hit["chat_id"]}
            row = guids[hit["guid"]]
            assert row["kind"] == "message"
            assert (row["chat_id"], row["conversation_id"]) == (
                hit["chat_id"],
                hit["conversation_id"],
            )
        found += fact.guid in [c["message_guid"] for c in out.citations]
    assert found >= len(truth.facts) // 5, found


def test_search_without_an_index_falls_back_to_words_and_says_so(library, ro, settings):
    _, truth, _ = library
    fact = truth.facts[0]
    word = max(fact.answer.split(), key=len).strip(",.!?")
    out = run_read_tool(ro, "search_messages", {"query": word, "limit": 50}, settings=settings)
    body = json.loads(out.content)
    assert body["mode"] == "text" and "index" in body["note"]
    assert out.count > 0
    assert all(h["matched"] == ["text"] for h in body["hits"])
    assert fact.guid in [c["message_guid"] for c in out.citations]


def test_search_filters_by_arguments_and_by_scope(library, ro, settings):
    index = tools.saved_index(settings)
    chat, other = (
        r[0] for r in ro.execute("SELECT id FROM chats ORDER BY message_count DESC LIMIT 2")
    )
    for args, scope in (({"chat_id": chat}, None), ({}, Scope(chat_ids=(chat,)))):
        out = run_read_tool(
            ro,
            "search_messages",
            {"query": "dinner plans", **args},
            settings=settings,
            scope=scope,
            index=index,
        )
        hits = json.loads(out.content)["hits"]
        assert hits and {h["chat_id"] for h in hits} == {chat}
    # An argument beats the scope.
    out = run_read_tool(
        ro,
        "search_messages",
        {"query": "dinner", "chat_id": other},
        settings=settings,
        scope=Scope(chat_ids=(chat,)),
        index=index,
    )
    assert {h["chat_id"] for h in json.loads(out.content)["hits"]} == {other}
    # Two chats in scope: hits from those two only.
    out = run_read_tool(
        ro,
        "search_messages",
        {"query": "dinner", "limit": 50},
        settings=settings,
        scope=Scope(chat_ids=(chat, other)),
        index=index,
    )
    assert {h["chat_id"] for h in json.loads(out.content)["hits"]} <= {chat, other}
    contact = ro.execute(
        "SELECT h.contact_id FROM messages m JOIN handles h ON h.id = m.handle_id"
        " WHERE m.is_from_me = 0 AND h.contact_id IS NOT NULL AND m.kind = 'message'"
        " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()[0]
    out = run_read_tool(
        ro,
        "search_messages",
        {"query": "later", "limit": 50},
        settings=settings,
        scope=Scope(contact_ids=(contact,)),
        index=index,
    )
    hits = json.loads(out.content)["hits"]
    assert hits and {h.get("contact_id") for h in hits} == {contact}
    out = run_read_tool(
        ro,
        "search_messages",
        {
            "query": "later",
            "since": "2024-01-01T00:00:00Z",
            "until": "2025-01-01T00:00:00Z",
            "limit": 50,
        },
        settings=settings,
        index=index,
    )
    hits = json.loads(out.content)["hits"]
    assert hits and all(h["time"].startswith("2024-") for h in hits)


def test_get_conversation_reads_real_messages_within_the_budget(library, ro, settings):
    big = ro.execute(
        "SELECT id, chat_id, message_count FROM conversations ORDER BY message_count DESC LIMIT 1"
    ).fetchone()
    guids = _guids(ro)
    whole = run_read_tool(
        ro, "get_conversation", {"conversation_id": big["id"]}, settings=settings, max_tokens=50_000
    )
    body = json.loads(whole.content)
    assert whole.citations == [{"conversation_id": big["id"], "chat_id": big["chat_id"]}]
    assert body["message_count"] == big["message_count"]
    assert "omitted" not in body and whole.count == len(body["messages"]) > 5
    assert all(guids[m["guid"]]["conversation_id"] == big["id"] for m in body["messages"])
    times = [m["time"] for m in body["messages"]]
    assert times == sorted(times)
    small = run_read_tool(
        ro, "get_conversation", {"conversation_id": big["id"]}, settings=settings, max_tokens=300
    )
    cut = json.loads(small.content)
    assert tokens.count(small.content) <= 300
    assert cut["omitted"] == whole.count - small.count > 0
    # Beginning and end are kept, the middle goes.
    kept = [m["guid"] for m in cut["messages"]]
    all_guids = [m["guid"] for m in body["messages"]]
    assert kept[0] == all_guids[0] and kept[-1] == all_guids[-1]


def test_commitments_and_analyses_come_from_the_store(library, ro, settings):
    _, _, cids = library
    out = run_read_tool(ro, "list_commitments", {}, settings=settings)
    items = json.loads(out.content)["commitments"]
    assert out.count == len(items) == 3
    assert [i["conversation_id"] for i in items] == cids[::-1]  # newest first
    assert {c["conversation_id"] for c in out.citations} == set(cids)
    assert all(i["status"] == "open" and i["kind"] == "promise" for i in items)
    chat = items[0]["chat_id"]
    assert run_read_tool(ro, "list_commitments", {"status": "done"}, settings=settings).count == 0
    assert run_read_tool(ro, "list_commitments", {"limit": 2}, settings=settings).count == 2
    other = ro.execute("SELECT id FROM chats WHERE id != :c LIMIT 1", {"c": chat}).fetchone()[0]
    assert (
        run_read_tool(
            ro, "list_commitments", {}, settings=settings, scope=Scope(chat_ids=(other,))
        ).count
        == 0
    )
    assert (
        run_read_tool(
            ro, "list_commitments", {}, settings=settings, scope=Scope(chat_ids=(chat,))
        ).count
        == 3
    )
    out = run_read_tool(ro, "get_analyses", {"conversation_id": cids[0]}, settings=settings)
    body = json.loads(out.content)
    assert {a["pass"] for a in body["analyses"]} == {"basic", "commitments"}
    assert body["analyses"][0]["result"]["summary"] == "summary 0"
    assert out.citations == [{"conversation_id": cids[0]}]
    empty = ro.execute(
        "SELECT id FROM conversations WHERE id NOT IN (SELECT conversation_id FROM analyses) LIMIT 1"
    ).fetchone()[0]
    out = run_read_tool(ro, "get_analyses", {"conversation_id": empty}, settings=settings)
    assert out.count == 0 and json.loads(out.content)["analyses"] == []


def test_stats_match_the_statistics_service(library, ro, settings):
    from zoneinfo import ZoneInfo

    from chatstats.stats import service

    zone = ZoneInfo("UTC")
    overview = service.overview(ro, zone, service.MIN_NS, service.MAX_NS)
    out = run_read_tool(ro, "get_stats", {}, settings=settings, max_tokens=8000)
    body = json.loads(out.content)
    assert body["timezone"] == "UTC" and out.count == 1
    assert body["stats"][0]["of"] == "everything"
    assert body["stats"][0]["messages"] == overview["messages"] > 0
    chat = overview["top_chats"][0]["chat_id"]
    out = run_read_tool(ro, "get_stats", {"chat_id": chat}, settings=settings, max_tokens=8000)
    fig = json.loads(out.content)["stats"][0]
    assert fig["of"] == {"chat_id": chat}
    assert fig["messages"] == overview["top_chats"][0]["messages"]
    assert "by_day" not in fig and len(fig["busiest_days"]) == 3
    scoped = run_read_tool(
        ro, "get_stats", {}, settings=settings, scope=Scope(chat_ids=(chat,)), max_tokens=8000
    )
    assert json.loads(scoped.content)["stats"][0] == fig
    contact = next(s["contact_id"] for s in fig["by_sender"] if s["contact_id"] is not None)
    out = run_read_tool(
        ro, "get_stats", {"contact_id": contact}, settings=settings, max_tokens=8000
    )
    assert json.loads(out.content)["stats"][0]["of"] == {"contact_id": contact}


@pytest.mark.parametrize(
    ("name", "args", "says"),
    [
        ("drop_tables", {}, "unknown tool"),
        ("search_messages", {}, "query is required"),
        ("search_messages", {"query": ""}, "characters"),
        ("search_messages", {"query": "   "}, "at least one word"),
        ("search_messages", {"query": "x" * 1001}, "characters"),
        ("search_messages", {"query": 5}, "must be a string"),
        ("search_messages", {"query": "a", "limit": 0}, "limit must be from 1 to 50"),
        ("search_messages", {"query": "a", "limit": 51}, "limit must be from 1 to 50"),
        ("search_messages", {"query": "a", "limit": "10"}, "must be an integer"),
        ("search_messages", {"query": "a", "limit": True}, "must be an integer"),
        ("search_messages", {"query": "a", "chat_id": 999_999}, "no chat 999999"),
        ("search_messages", {"query": "a", "contact_id": 999_999}, "no contact 999999"),
        ("search_messages", {"query": "a", "since": "yesterday"}, "ISO 8601"),
        ("search_messages", {"query": "a", "since": "2025-01-01", "until": "2024-01-01"}, "before"),
        ("search_messages", {"query": "a", "colour": "red"}, "unknown argument 'colour'"),
        ("get_conversation", {}, "conversation_id is required"),
        ("get_conversation", {"conversation_id": 0}, "conversation_id must be from 1"),
        ("get_conversation", {"conversation_id": 999_999}, "no conversation 999999"),
        ("get_conversation", {"conversation_id": 1.5}, "must be an integer"),
        ("list_commitments", {"status": "late"}, "status must be one of"),
        ("list_commitments", {"chat_id": 999_999}, "no chat 999999"),
        ("get_analyses", {"conversation_id": 999_999}, "no conversation 999999"),
        ("get_stats", {"chat_id": 999_999}, "no chat"),
        ("get_stats", {"contact_id": 999_999}, "no contact"),
        ("get_stats", {"chat_id": -1}, "chat_id must be from 1"),
    ],
)
def test_bad_arguments_are_tool_errors(ro, settings, name, args, says):
    with pytest.raises(ToolError, match=says):
        run_read_tool(ro, name, args, settings=settings)
    assert not ro.in_transaction


def test_arguments_that_are_not_an_object_are_refused(ro, settings):
    with pytest.raises(ToolError, match="JSON object"):
        run_read_tool(ro, "get_stats", ["chat_id", 1], settings=settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("budget", [100, 250, 800, 2000])
def test_every_output_stays_within_its_budget(library, ro, settings, budget):
    _, truth, cids = library
    index = tools.saved_index(settings)
    big = ro.execute("SELECT id FROM conversations ORDER BY message_count DESC LIMIT 1").fetchone()[
        0
    ]
    calls = [
        ("search_messages", {"query": truth.facts[1].question, "limit": 50}),
        ("get_conversation", {"conversation_id": big}),
        ("list_commitments", {"limit": 50}),
        ("get_analyses", {"conversation_id": cids[0]}),
        ("get_stats", {}),
    ]
    for name, args in calls:
        out = run_read_tool(ro, name, args, settings=settings, max_tokens=budget, index=index)
        assert tokens.count(out.content) <= budget, (name, budget)
        json.loads(out.content)  # whole items only: always valid JSON


def test_a_budget_too_small_for_anything_is_a_programming_error(ro, settings):
    with pytest.raises(ValueError, match="max_tokens"):
        run_read_tool(ro, "get_stats", {}, settings=settings, max_tokens=10)


def test_tools_never_write(library, settings):
    """The connection is read-only (mode=ro, query_only) and the tools work on it; the file
    is unchanged after every tool ran."""
    db = library[0] / "chatstats.db"
    before = db.read_bytes()
    conn = connect(db, write=False)
    for name, args in (
        ("get_stats", {}),
        ("list_commitments", {}),
        ("search_messages", {"query": "ok"}),
    ):
        run_read_tool(conn, name, args, settings=settings)
    conn.close()
    assert db.read_bytes() == before


def test_token_count_is_a_real_tokenizer():
    assert tokens.count("hello world") == 2
    assert tokens.count("") == 0
    assert tokens.count("<|endoftext|>") > 1  # user text, not a special token


def test_chat_and_contact_together_narrow_one_search(library, ro, settings):
    index = tools.saved_index(settings)
    row = ro.execute(
        "SELECT m.chat_id, h.contact_id FROM messages m JOIN handles h ON h.id = m.handle_id"
        " JOIN chats c ON c.id = m.chat_id WHERE c.is_group = 1 AND m.kind = 'message'"
        " AND h.contact_id IS NOT NULL GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    args = {"query": "later tonight", "chat_id": row[0], "contact_id": row[1], "limit": 50}
    hits = json.loads(
        run_read_tool(ro, "search_messages", args, settings=settings, index=index).content
    )["hits"]
    assert hits
    assert {(h["chat_id"], h.get("contact_id")) for h in hits} == {(row[0], row[1])}
    with pytest.raises(ToolError, match="not both"):
        run_read_tool(ro, "get_stats", {"chat_id": row[0], "contact_id": row[1]}, settings=settings)


def test_the_daemons_search_index_is_used_once_ready(library, ro, settings):
    """What the chatbot passes inside the daemon: its SearchIndex, used only once ready."""
    import threading
    from types import SimpleNamespace

    daemon_index = SimpleNamespace(ready=threading.Event(), index=tools.saved_index(settings))
    query = {"query": library[1].facts[0].question}
    early = run_read_tool(ro, "search_messages", query, settings=settings, index=daemon_index)
    assert json.loads(early.content)["mode"] == "text"
    daemon_index.ready.set()
    ready = run_read_tool(ro, "search_messages", query, settings=settings, index=daemon_index)
    assert json.loads(ready.content)["mode"] == "hybrid"
    with pytest.raises(TypeError):
        run_read_tool(ro, "search_messages", query, settings=settings, index=object())


def test_phone_numbers_and_addresses_of_senders_never_reach_the_model(library, ro, settings):
    """Senders are named (or "them") as in analysis transcripts, never by their handle."""
    identifiers = [r[0] for r in ro.execute("SELECT identifier FROM handles")]
    assert identifiers
    index = tools.saved_index(settings)
    big = ro.execute(
        "SELECT conversation_id FROM messages m JOIN handles h ON h.id = m.handle_id"
        " JOIN contacts k ON k.id = h.contact_id WHERE k.name IS NULL"
        " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    outputs = [
        run_read_tool(
            ro,
            "search_messages",
            {"query": f.question, "limit": 50},
            settings=settings,
            index=index,
        ).content
        for f in library[1].facts[:5]
    ]
    assert big is not None  # the sample has senders the address book doesn't name
    outputs.append(
        run_read_tool(
            ro, "get_conversation", {"conversation_id": big[0]}, settings=settings
        ).content
    )
    for text in outputs:
        assert not [i for i in identifiers if i in text]
