"""The six context retrievers on a real imported sample library: every answer's text is at
most its budget in real (cl100k) tokens, and the content chosen is the best that fits."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from chatstats.analysis import transcript
from chatstats.context import definitions as defs
from chatstats.context import retrievers
from chatstats.context.retrievers import SEP, Context, Scope
from chatstats.db import connect, transaction
from chatstats.errors import BadRequest
from chatstats.llm import tokens
from tests import context_support

BUDGETS = [1, 7, 30, 120, 500, 3000]


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> context_support.Library:
    return context_support.build(tmp_path_factory.mktemp("context"))


@pytest.fixture
def conn(lib: context_support.Library):
    c = connect(lib.db, write=False)
    yield c
    c.close()


def chat_scope(lib: context_support.Library, query: str | None = None) -> Scope:
    return Scope(chat_id=lib.chat, chat_ids=(lib.chat,), query=query)


def run(conn: sqlite3.Connection, name: str, scope: Scope, budget: int, **params: Any):
    return retrievers.run(name, conn, scope, budget, params, Context())


@pytest.mark.parametrize("name", sorted(retrievers.RETRIEVERS))
@pytest.mark.parametrize("budget", BUDGETS)
def test_every_retriever_holds_its_text_to_the_budget_in_real_tokens(conn, lib, name, budget):
    got = run(conn, name, chat_scope(lib), budget)
    assert tokens.count(got.text) <= budget
    assert got.tokens == tokens.count(got.text)
    assert len(got.items) == len(got.parts)
    for item, part in zip(got.items, got.parts, strict=True):
        assert item["tokens"] == tokens.count(part)


@pytest.mark.parametrize("name", sorted(retrievers.RETRIEVERS))
def test_every_retriever_finds_content_in_the_sample_library(conn, lib, name):
    got = run(conn, name, chat_scope(lib), 4000)
    assert got.parts and got.tokens > 0, name


def test_convos_takes_the_newest_whole_conversations_that_fit_exactly(conn, lib):
    full = run(conn, "convos", chat_scope(lib), 100_000, max_conversations=5)
    assert [i["id"] for i in full.items] == lib.conversations[:5]
    assert not any(i["cut"] for i in full.items)
    for k in range(1, 5):
        exact = tokens.count(SEP.join([full.heading, *full.parts[:k]]))
        got = run(conn, "convos", chat_scope(lib), exact, max_conversations=5)
        assert [i["id"] for i in got.items] == lib.conversations[:k]  # the k newest, whole
        assert not any(i["cut"] for i in got.items)
        assert got.tokens == exact
        assert got.dropped_count == len(lib.conversations) - k


def test_convos_cuts_the_first_conversation_that_no_longer_fits_when_room_is_left(conn, lib):
    full = run(conn, "convos", chat_scope(lib), 100_000, max_conversations=3)
    assert full.items[1]["tokens"] > 100
    budget = tokens.count(full.heading) + 1 + full.items[0]["tokens"] + 1 + 80
    got = run(conn, "convos", chat_scope(lib), budget, max_conversations=3)
    assert got.tokens <= budget
    assert [(i["id"], i["cut"]) for i in got.items] == [
        (lib.conversations[0], False),
        (lib.conversations[1], True),  # its start and its end, the middle left out
    ]
    assert "left out" in got.parts[1]
    tight = run(conn, "convos", chat_scope(lib), budget - 40, max_conversations=3)
    assert [i["id"] for i in tight.items] == [lib.conversations[0]]  # too little room to cut


def test_convos_with_a_query_puts_the_conversation_holding_the_best_hit_first(conn, lib):
    row = conn.execute(
        "SELECT conversation_id, text FROM messages WHERE conversation_id IN"
        " (SELECT value FROM json_each(:old)) AND kind = 'message' AND text IS NOT NULL"
        " ORDER BY length(text) DESC LIMIT 1",
        {"old": str(lib.conversations[5:])},
    ).fetchone()
    got = run(conn, "convos", chat_scope(lib, query=row["text"]), 3000)
    assert got.items[0]["id"] == row["conversation_id"]
    assert got.heading.startswith("Conversations, most relevant first")
    plain = run(conn, "convos", chat_scope(lib), 3000)
    assert plain.items[0]["id"] == lib.conversations[0]


def test_analyses_shorten_a_long_result_to_its_summary_and_still_fit_smaller_ones(conn, lib):
    full = run(conn, "analyses", chat_scope(lib), 100_000)
    assert len(full.items) == len(lib.analysed)
    t = [i["tokens"] for i in full.items]
    assert t[2] > 3 * t[3]  # the third is the long one
    budget = tokens.count(full.heading) + 1 + (t[0] + 1) + (t[1] + 1) + 100
    got = run(conn, "analyses", chat_scope(lib), budget)
    assert got.tokens <= budget
    ids = [i["id"] for i in full.items]
    assert [(i["id"], i["cut"]) for i in got.items] == [
        (ids[0], False),
        (ids[1], False),
        (ids[2], True),  # the long one as its summary only,
        (ids[3], False),  # and a smaller one after it still gets in
    ]
    assert "- summary:" in got.parts[2] and "topic 1" not in got.parts[2]
    fields = run(conn, "analyses", chat_scope(lib), 100_000, fields=["tone"])
    assert "- tone: warm" in fields.text and "- summary:" not in fields.text


def test_analyses_of_one_conversation_and_an_unknown_pass(conn, lib):
    cid = lib.analysed[1]
    scope = Scope(conversation_id=cid, chat_ids=(lib.chat,))
    got = run(conn, "analyses", scope, 1000)
    assert [i["id"] for i in got.items] and f"Conversation {cid} " in got.text
    assert not run(conn, "analyses", scope, 1000, passes=["nope"]).parts


def test_artifacts_are_the_chats_documents_newest_first_the_last_one_cut(conn, lib):
    full = run(conn, "artifacts", chat_scope(lib), 100_000)
    assert [i["id"] for i in full.items] == lib.documents[::-1]
    assert lib.foreign_document not in {i["id"] for i in full.items}
    budget = tokens.count(full.heading) + 1 + full.items[0]["tokens"] + 1 + 100
    got = run(conn, "artifacts", chat_scope(lib), budget)
    assert got.tokens <= budget
    assert got.items[0] == {**full.items[0], "cut": False}
    assert got.items[-1]["cut"] and len(got.items) == 2
    contact = Scope(contact_id=lib.contact, chat_ids=(lib.chat,))
    assert run(conn, "artifacts", contact, 100_000).items == full.items


def test_raw_conversation_is_the_passes_own_transcript(conn, lib):
    cid = lib.conversations[0]
    got = run(conn, "raw_conversation", Scope(conversation_id=cid, chat_ids=(lib.chat,)), 100_000)
    whole = transcript.build(conn, cid, 100_000)
    assert got.text.endswith(whole.text)
    newest = run(conn, "raw_conversation", chat_scope(lib), 100_000)
    assert newest.items[0]["id"] == cid


def test_chat_text_is_the_most_recent_messages_contiguous_oldest_first(conn, lib):
    full = run(conn, "chat_text", chat_scope(lib), 100_000, max_messages=50)
    ids = [i["id"] for i in full.items]
    newest = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM messages WHERE chat_id = :c AND kind = 'message'"
            " ORDER BY date_ns DESC, id DESC LIMIT 50",
            {"c": lib.chat},
        )
    ]
    shown = [m for m in newest if m in set(ids)]
    assert ids == shown[::-1]  # oldest first
    exact = tokens.count(full.sep.join([full.heading, *full.parts[-10:]]))
    got = run(conn, "chat_text", chat_scope(lib), exact, max_messages=50)
    assert [i["id"] for i in got.items] == ids[-10:]  # the ten newest exactly
    assert got.tokens == exact


def test_user_name_names_people_never_their_addresses(conn, lib):
    got = run(conn, "user_name", chat_scope(lib), 500)
    me = conn.execute("SELECT name FROM contacts WHERE is_me = 1").fetchone()
    if me is not None and me[0]:
        assert me[0] in got.text
    assert "Other people here:" in got.text
    assert not re.search(r"\+?\d{7,}|@", got.text)


def test_unknown_retrievers_and_parameters_are_bad_requests(conn, lib):
    with pytest.raises(BadRequest, match="unknown retriever"):
        run(conn, "nope", chat_scope(lib), 100)
    with pytest.raises(BadRequest, match="no parameter"):
        run(conn, "convos", chat_scope(lib), 100, colour="red")
    with pytest.raises(BadRequest, match="max_conversations"):
        run(conn, "convos", chat_scope(lib), 100, max_conversations=0)


def test_clip_never_exceeds_the_budget_even_inside_multibyte_text():
    text = "日本語のテキスト 🎉👨‍👩‍👧 café " * 40
    for budget in range(0, 60):
        out = retrievers.clip(text, budget)
        assert tokens.count(out) <= budget


# ---------------------------------------------------------------------------------------------
# Definitions


def test_the_shipped_definitions_load_and_name_the_six_retrievers():
    found = defs.load()
    names = {s.retriever for d in found for s in d.steps}
    assert names == set(retrievers.RETRIEVERS)
    assert {"convos", "analyses", "artifacts", "raw_conversation", "chat_text", "user_name"} <= {
        d.name for d in found
    }


def test_seeding_is_idempotent_and_follows_the_file(lib, tmp_path):
    conn = connect(lib.db, write=True)
    try:
        with transaction(conn):
            defs.seed(conn, defs.load())
        before = conn.execute("SELECT name, seeded_ns FROM context_definitions").fetchall()
        with transaction(conn):
            again = defs.seed(conn, defs.load())
        after = conn.execute("SELECT name, seeded_ns FROM context_definitions").fetchall()
        assert again["added"] == again["changed"] == again["removed"] == 0
        assert [tuple(r) for r in before] == [tuple(r) for r in after]
        text = defs.definitions_path().read_text()
        edited = tmp_path / "definitions.toml"
        edited.write_text(
            text.replace('title = "Convos"', 'title = "Conversations"').replace(
                'name = "chat_brief"', 'name = "chat_brief2"'
            )
        )
        with transaction(conn):
            changed = defs.seed(conn, defs.load(edited))
        assert (changed["added"], changed["changed"], changed["removed"]) == (1, 1, 1)
        with transaction(conn):
            defs.seed(conn, defs.load())  # back as shipped, for the other tests
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[definition]]\nname = "x"\nretrievers = ["nope"]', "unknown retriever"),
        ('[[definition]]\nname = "x"\nretrievers = []', "retrievers must list"),
        ('[[definition]]\nname = "X!"\nretrievers = ["convos"]', "name must be"),
        ('[[definition]]\nname = "x"\nscopes = ["thread"]\nretrievers = ["convos"]', "scopes"),
        (
            '[[definition]]\nname = "x"\nretrievers = [{retriever = "convos", share = 2}]',
            "share",
        ),
        ("[[definition]\n", "not valid TOML"),
        (
            '[[definition]]\nname = "x"\nretrievers = ["convos"]\n'
            '[[definition]]\nname = "x"\nretrievers = ["convos"]',
            "appears twice",
        ),
    ],
)
def test_a_bad_definitions_file_is_a_clear_error(tmp_path: Path, body: str, message: str):
    path = tmp_path / "definitions.toml"
    path.write_text(body)
    with pytest.raises(defs.DefinitionsError, match=message):
        defs.load(path)
