"""`POST /api/context/preview` and `GET /api/context/definitions` over real HTTP (uvicorn on a
loopback port) on an imported sample library: budgets held in real tokens, definitions seeded,
and every bad request a clear 400 or 404 in the error shape."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from chatstats.api.app import create_app
from chatstats.api.state import AppState
from chatstats.config import Settings
from chatstats.db import Database
from chatstats.llm import tokens
from tests import context_support
from tests.loopback import serving

pytestmark = pytest.mark.anyio

TOKEN = "context-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PREVIEW = "/api/context/preview"


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> context_support.Library:
    return context_support.build(tmp_path_factory.mktemp("context-api"))


@pytest.fixture
async def client(lib: context_support.Library) -> AsyncIterator[httpx.AsyncClient]:
    db = Database(lib.db)
    await db.open()
    state = AppState(
        settings=Settings(data_dir=str(lib.db.parent)),
        db=db,
        token=TOKEN,
        started_ns=time.time_ns(),
    )
    try:
        async with serving(create_app(state), state, headers=AUTH) as c:
            yield c
    finally:
        db.close()


async def post(client: httpx.AsyncClient, body: Any, status: int = 200) -> Any:
    with anyio.fail_after(20):
        r = await client.post(PREVIEW, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


async def test_definitions_are_seeded_and_listed_in_the_files_order(client):
    with anyio.fail_after(10):
        r = await client.get("/api/context/definitions")
    assert r.status_code == 200
    names = [d["name"] for d in r.json()]
    assert names[:6] == [
        "convos",
        "analyses",
        "artifacts",
        "raw_conversation",
        "chat_text",
        "user_name",
    ]
    brief = next(d for d in r.json() if d["name"] == "chat_brief")
    assert brief["retrievers"][0]["retriever"] == "user_name"
    assert brief["scopes"] == ["chat", "contact"]


@pytest.mark.parametrize(
    "definition",
    ["convos", "analyses", "artifacts", "raw_conversation", "chat_text", "user_name", "chat_brief"],
)
@pytest.mark.parametrize("budget", [1, 50, 400, 2500])
async def test_every_definition_holds_the_budget_in_real_tokens(client, lib, definition, budget):
    got = await post(
        client, {"definition": definition, "chat_id": lib.chat, "budget_tokens": budget}
    )
    assert got["definition"] == definition and got["budget_tokens"] == budget
    assert got["tokens"] == tokens.count(got["text"]) <= budget
    assert sum(r["tokens"] for r in got["retrievers"]) <= budget
    for r in got["retrievers"]:
        assert r["tokens"] <= r["budget_tokens"]
    if budget >= 400:
        assert got["items"], definition


async def test_a_composite_definition_passes_unused_budget_on(client, lib):
    got = await post(
        client, {"definition": "chat_brief", "chat_id": lib.chat, "budget_tokens": 3000}
    )
    used = {r["name"]: r for r in got["retrievers"]}
    assert list(used) == ["user_name", "analyses", "convos", "artifacts"]
    # user_name uses a few tokens of its 5%: the rest goes on to the analyses and beyond.
    assert used["analyses"]["budget_tokens"] > int(0.35 * (3000 - used["user_name"]["tokens"])) - 2
    assert {i["retriever"] for i in got["items"]} == set(used)
    assert got["text"].startswith("Who is who:")


async def test_an_ad_hoc_list_of_retrievers_with_a_query_and_a_contact(client, lib):
    body = {
        "retrievers": ["user_name", {"retriever": "chat_text", "share": 0.5}, "convos"],
        "contact_id": lib.contact,
        "query": "dinner",
        "budget_tokens": 800,
    }
    got = await post(client, body)
    assert got["definition"] is None
    assert [r["name"] for r in got["retrievers"]] == ["user_name", "chat_text", "convos"]
    assert got["tokens"] == tokens.count(got["text"]) <= 800
    assert got["dropped"] and all(d["reason"] == "budget" for d in got["dropped"])


async def test_a_conversation_scope_reads_that_conversation(client, lib):
    cid = lib.conversations[3]
    got = await post(
        client, {"definition": "raw_conversation", "conversation_id": cid, "budget_tokens": 2000}
    )
    assert [(i["kind"], i["id"]) for i in got["items"]] == [("conversation", cid)]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"definition": "nope", "chat_id": 1, "budget_tokens": 100}, 404, "no context definition"),
        ({"retrievers": ["nope"], "chat_id": 1, "budget_tokens": 100}, 400, "unknown retriever"),
        ({"definition": "convos", "chat_id": 1, "budget_tokens": -5}, 400, "budget_tokens"),
        ({"definition": "convos", "chat_id": 1, "budget_tokens": 0}, 400, "budget_tokens"),
        ({"definition": "convos", "chat_id": 1}, 400, "budget_tokens"),
        ({"definition": "convos", "chat_id": 1, "budget_tokens": "9"}, 400, "budget_tokens"),
        ({"definition": "convos", "budget_tokens": 100}, 400, "needs chat_id or contact_id"),
        ({"retrievers": ["convos"], "budget_tokens": 100}, 400, "need chat_id"),
        ({"budget_tokens": 100, "chat_id": 1}, 400, "definition or a list"),
        (
            {"definition": "convos", "retrievers": ["convos"], "chat_id": 1, "budget_tokens": 9},
            400,
            "one of the two",
        ),
        ({"definition": "convos", "chat_id": 2**40, "budget_tokens": 100}, 404, "no chat"),
        ({"definition": "convos", "contact_id": 2**40, "budget_tokens": 100}, 404, "no contact"),
        (
            {"definition": "raw_conversation", "conversation_id": 2**40, "budget_tokens": 100},
            404,
            "no conversation",
        ),
        (
            {"definition": "convos", "chat_id": 1, "contact_id": 1, "budget_tokens": 9},
            400,
            "not both",
        ),
        ({"definition": "convos", "chat_id": 0, "budget_tokens": 100}, 400, "chat_id"),
        ({"definition": "convos", "chat_id": 1, "budget_tokens": 9, "x": 1}, 400, "unknown field"),
        (
            {
                "retrievers": [{"retriever": "convos", "params": {"colour": 1}}],
                "chat_id": 1,
                "budget_tokens": 9,
            },
            400,
            "no parameter",
        ),
        (
            {
                "retrievers": [{"retriever": "convos", "share": 1.5}],
                "chat_id": 1,
                "budget_tokens": 9,
            },
            400,
            "share",
        ),
        ({"retrievers": [], "chat_id": 1, "budget_tokens": 9}, 400, "retrievers"),
        ([1, 2], 400, "invalid request body"),
    ],
)
async def test_bad_requests_are_clear_errors(client, lib, body, status, needle):
    got = await post(client, body, status)
    assert set(got) == {"error"} and needle in got["error"]["message"], got


async def test_a_conversation_outside_the_chat_given_is_a_400(client, lib):
    other = await post(
        client,
        {"definition": "convos", "chat_id": lib.other_chat, "budget_tokens": 10},
    )
    assert other["budget_tokens"] == 10
    got = await post(
        client,
        {
            "definition": "raw_conversation",
            "chat_id": lib.other_chat,
            "conversation_id": lib.conversations[0],
            "budget_tokens": 100,
        },
        400,
    )
    assert "not in the scope" in got["error"]["message"]


async def test_malformed_json_and_a_missing_token(client):
    with anyio.fail_after(10):
        r = await client.post(PREVIEW, content=b"{not json")
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
        r = await client.post(PREVIEW, json={}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
