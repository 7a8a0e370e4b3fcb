"""The iMessage data routes, the gate in front of them and the error shape, over ASGI."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from chatstats.api.app import create_app
from chatstats.api.common import iso_time
from chatstats.api.state import AppState
from chatstats.config import Settings
from chatstats.db import Database, connect
from chatstats.library import service, store

pytestmark = pytest.mark.anyio

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
S = 1_000_000_000
T0 = 1_700_000_000 * S  # 2023-11-14T22:13:20Z
MINUTE = 60 * S

ROUTES = [
    "/api/chats",
    "/api/chats/1",
    "/api/chats/1/messages",
    "/api/contacts",
    "/api/conversations",
    "/api/conversations/1",
    "/api/conversations/1/messages",
    "/api/search?q=hello",
]


# ---------------------------------------------------------------------------------------------
# A small library: a 1:1 chat with many messages, a named group, a nameless group with a
# person at two addresses, a nameless contact, a handle without a contact, chats and contacts
# without messages, an orphan message, tapbacks (one removed) and attachments.

CHAT1_TEXTS = [
    "hello world",
    'she said "hi" to me',
    "café au lait",
    "日本語のテキスト",
    "NEAR AND OR NOT",
    "foo* bar",
]


def _fill(conn: sqlite3.Connection) -> None:
    x = conn.execute
    for cid, name in [(1, "Alice Ångström"), (2, "Bob"), (3, None), (4, "Carol"), (5, "Dave")]:
        x("INSERT INTO contacts (id, name) VALUES (:id, :name)", {"id": cid, "name": name})
    handles = [
        (1, "+15550001", "iMessage", 1),
        (2, "alice@example.com", "iMessage", 1),
        (3, "+15550002", "SMS", 2),
        (4, "+15550003", "iMessage", 3),
        (5, "+15550009", "iMessage", None),
        (6, "+15550001", "SMS", 1),
    ]
    for hid, ident, svc, contact in handles:
        x(
            "INSERT INTO handles (id, identifier, service, contact_id) VALUES (:h, :i, :s, :c)",
            {"h": hid, "i": ident, "s": svc, "c": contact},
        )
    chats = [
        (1, "iMessage;-;+15550001", "+15550001", "iMessage", None, 0, [1]),
        (2, "iMessage;+;chat100", "chat100", "iMessage", "Trip", 1, [1, 3]),
        (3, "iMessage;+;chat200", "chat200", "iMessage", "", 1, [2, 1, 3, 4, 5]),
        (4, "SMS;-;+15550009", "+15550009", "SMS", None, 0, [5]),
        (5, "iMessage;-;+15550002", "+15550002", "iMessage", None, 0, [3]),
        (6, "iMessage;+;chat300", "chat300", "iMessage", None, 1, []),
    ]
    for cid, guid, ident, svc, name, group, members in chats:
        x(
            "INSERT INTO chats (id, guid, chat_identifier, service, display_name, is_group)"
            " VALUES (:id, :guid, :ident, :svc, :name, :group)",
            {"id": cid, "guid": guid, "ident": ident, "svc": svc, "name": name, "group": group},
        )
        for h in members:
            x("INSERT INTO chat_participants VALUES (:c, :h)", {"c": cid, "h": h})

    def message(mid: int, chat: int | None, handle: int | None, date: int, text: str | None, **kw):
        row = {
            "id": mid,
            "guid": f"m{mid}",
            "chat_id": chat,
            "handle_id": handle,
            "is_from_me": int(handle is None),
            "date_ns": date,
            "text": text,
            "kind": "message",
            "group_title": None,
            "reply_to_guid": None,
            "edited": 0,
            "unsent": 0,
        } | kw
        x(
            "INSERT INTO messages (id, guid, chat_id, handle_id, is_from_me, date_ns, text, kind,"
            " group_title, reply_to_guid, edited, unsent) VALUES (:id, :guid, :chat_id,"
            " :handle_id, :is_from_me, :date_ns, :text, :kind, :group_title, :reply_to_guid,"
            " :edited, :unsent)",
            row,
        )

    # Chat 1: 23 messages a minute apart, alternating sender; ids 10 and 11 share a time;
    # id 24 arrived late (a higher id) but is the oldest.
    for i in range(1, 24):
        date = T0 + (10 if i == 11 else i) * MINUTE
        text = CHAT1_TEXTS[i % len(CHAT1_TEXTS)] + f" #{i}"
        message(i, 1, None if i % 2 else 1, date, text)
    message(24, 1, 1, T0 - 5 * MINUTE, "late arrival", reply_to_guid="m3", edited=1)
    message(25, 1, None, T0 + 30 * MINUTE, None, unsent=1)
    # Chat 2 (named group), chat 3 (nameless group), chat 4 (1:1 with an unknown number).
    message(30, 2, 3, T0 + 100 * MINUTE, "trip plans hello")
    message(31, 2, None, T0 + 101 * MINUTE, "count me in")
    message(32, 2, 3, T0 + 102 * MINUTE, None, kind="group_rename", group_title="Trip")
    message(33, 3, 4, T0 + 200 * MINUTE, "hello from nobody")
    message(34, 3, 5, T0 + 201 * MINUTE, "unknown here")
    message(35, 4, 5, T0 + 50 * MINUTE, "sms hello")
    message(40, None, 4, T0 + 300 * MINUTE, "orphan hello")

    reactions = [
        ("r1", "m5", 0, "loved", None, 1, 0, 1),
        ("r2", "m5", 0, "liked", None, 1, 0, 0),  # removed since: not shown
        ("r3", "m5", 1, "emphasized", None, None, 1, 1),
        ("r4", "m5", 0, "emoji", "🎉", 1, 0, 1),
        ("r5", "m30", 0, "laughed", None, None, 1, 1),
    ]
    for n, (guid, target, part, kind, emoji, handle, mine, active) in enumerate(reactions):
        x(
            "INSERT INTO reactions (guid, target_guid, part, type, emoji, is_removal, handle_id,"
            " is_from_me, date_ns, active) VALUES (:g, :t, :p, :k, :e, 0, :h, :m, :d, :a)",
            {
                "g": guid,
                "t": target,
                "p": part,
                "k": kind,
                "e": emoji,
                "h": handle,
                "m": mine,
                "d": T0 + n,
                "a": active,
            },
        )
    for guid, mid, pos, name in [("a1", 7, 1, "second.jpg"), ("a2", 7, 0, "first.heic")]:
        x(
            "INSERT INTO attachments (guid, message_id, position, filename, transfer_name,"
            " mime_type, total_bytes) VALUES (:g, :m, :p, :f, :n, 'image/jpeg', 1234)",
            {
                "g": guid,
                "m": mid,
                "p": pos,
                "f": f"~/Library/Messages/Attachments/{name}",
                "n": name,
            },
        )

    # Conversations: chat 1 splits at minute 12; the others are one each.
    convs = [
        (1, 1, "date_ns < :cut", 1),
        (2, 1, "date_ns >= :cut", 0),
        (3, 2, "1", 1),
        (4, 3, "1", 0),
        (5, 4, "1", 1),
    ]
    for conv, chat, where, sealed in convs:
        params = {"conv": conv, "chat": chat, "cut": T0 + 12 * MINUTE, "sealed": sealed}
        x(
            "INSERT INTO conversations (id, chat_id, start_ns, end_ns, message_count, sealed)"
            " SELECT :conv, :chat, min(date_ns), max(date_ns), count(*), :sealed FROM messages"
            f" WHERE chat_id = :chat AND {where}",
            params,
        )
        x(
            f"UPDATE messages SET conversation_id = :conv WHERE chat_id = :chat AND {where}",
            params,
        )
    x(
        "UPDATE chats SET message_count = (SELECT count(*) FROM messages m WHERE m.chat_id ="
        " chats.id), last_message_ns = (SELECT max(date_ns) FROM messages m WHERE m.chat_id ="
        " chats.id)"
    )
    x(
        "UPDATE contacts SET message_count = (SELECT count(*) FROM messages m JOIN handles h"
        " ON h.id = m.handle_id WHERE h.contact_id = contacts.id), last_message_ns = (SELECT"
        " max(m.date_ns) FROM messages m JOIN handles h ON h.id = m.handle_id"
        " WHERE h.contact_id = contacts.id)"
    )
    x("INSERT INTO messages_fts (rowid, text) SELECT id, text FROM messages WHERE text IS NOT NULL")


@pytest.fixture(scope="module")
def library_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("library") / "chatstats.db"

    async def build() -> None:
        db = Database(path)
        await db.open()
        try:
            await db.write(_fill)
        finally:
            db.close()

    anyio.run(build)
    return path


@pytest.fixture
async def app_state(library_path: Path) -> AsyncIterator[AppState]:
    db = Database(library_path)
    await db.open()
    try:
        yield AppState(
            settings=Settings(data_dir=str(library_path.parent)),
            db=db,
            token=TOKEN,
            started_ns=time.time_ns(),
        )
    finally:
        db.close()


@pytest.fixture
async def client(app_state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(create_app(app_state))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1:8765", headers=AUTH
    ) as c:
        yield c


@pytest.fixture
def sql(library_path: Path):
    conn = connect(library_path, write=False)
    yield conn
    conn.close()


async def get(client: httpx.AsyncClient, url: str, status: int = 200, **kw: Any) -> Any:
    with anyio.fail_after(10):
        r = await client.get(url, **kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


def assert_error(body: Any, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def walk(client: httpx.AsyncClient, url: str, limit: int, cursor: str = "before_id"):
    """Every item of a paged list, page by page, with the cursor the contract names."""
    items: list[dict[str, Any]] = []
    sep = "&" if "?" in url else "?"
    page = await get(client, f"{url}{sep}limit={limit}")
    while page:
        assert len(page) <= limit
        items += page
        page = await get(client, f"{url}{sep}limit={limit}&{cursor}={page[-1]['id']}")
    return items


# ---------------------------------------------------------------------------------------------
# Health


async def test_health_answers_without_a_token_with_counts_and_import_status(client, app_state):
    body = await get(client, "/api/health", headers={"Authorization": ""})
    assert body["status"] == "ok"
    assert body["pid"] > 0 and body["uptime_s"] >= 0 and body["version"]
    assert body["counts"] == {"chats": 6, "messages": 32, "contacts": 5, "conversations": 5}
    assert body["import"] == {
        "state": "idle",
        "phase": None,
        "done": 0,
        "total": 0,
        "error": None,
        "last_summary": None,
    }
    app_state.import_status.state = "running"
    app_state.import_status.phase = "messages"
    app_state.import_status.done, app_state.import_status.total = 5, 10
    body = await get(client, "/api/health")
    assert body["import"]["state"] == "running" and body["import"]["done"] == 5


# ---------------------------------------------------------------------------------------------
# The gate: Host, token, error shape


@pytest.mark.parametrize("url", ROUTES)
async def test_every_route_but_health_refuses_a_missing_or_wrong_token(client, url):
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer nope"},
        {"Authorization": TOKEN},
    ):
        with anyio.fail_after(10):
            r = await client.get(url, headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert_error(r.json(), "unauthorized")


async def test_unknown_paths_and_methods_need_the_token_before_revealing_anything(client):
    assert_error(await get(client, "/nope", 401, headers={"Authorization": ""}), "unauthorized")
    with anyio.fail_after(10):
        r = await client.post("/api/health", headers={"Authorization": ""})
    assert r.status_code == 401


async def test_the_bearer_scheme_is_case_insensitive(client):
    await get(client, "/api/chats", headers={"Authorization": f"bearer {TOKEN}"})


@pytest.mark.parametrize(
    "host",
    ["evil.example", "localhost.evil.example", "127.0.0.2", "127.0.0.1:abc", "[::1", "0.0.0.0"],
)
async def test_a_non_loopback_host_is_refused_even_for_health(client, host):
    body = await get(client, "/api/health", 403, headers={"Host": host})
    assert_error(body, "forbidden_host")
    assert_error(await get(client, "/api/chats", 403, headers={"Host": host}), "forbidden_host")


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST:3000", "127.0.0.1", "127.0.0.1:9", "[::1]", "[::1]:8765", "::1"],
)
async def test_loopback_hosts_with_any_port_are_accepted(client, host):
    await get(client, "/api/chats", headers={"Host": host})


async def test_each_error_status_has_the_one_error_shape(client):
    assert_error(await get(client, "/api/chats?limit=0", 400), "bad_request")
    assert_error(
        await get(client, "/api/chats", 401, headers={"Authorization": ""}), "unauthorized"
    )
    assert_error(await get(client, "/api/chats", 403, headers={"Host": "x.test"}), "forbidden_host")
    assert_error(await get(client, "/api/chats/999", 404), "not_found")
    assert_error(await get(client, "/api/no/such/route", 404), "not_found")
    with anyio.fail_after(10):
        r = await client.post("/api/chats")
    assert r.status_code == 405 and "GET" in r.headers["allow"]
    assert_error(r.json(), "method_not_allowed")


async def test_an_unexpected_failure_is_a_500_without_its_text_in_answer_or_log(
    client, monkeypatch
):
    async def broken(self, *args):
        raise RuntimeError("Alice Ångström said something private")

    monkeypatch.setattr(service.Library, "chats", broken)
    with structlog.testing.capture_logs([structlog.contextvars.merge_contextvars]) as logs:
        body = await get(client, "/api/chats", 500)
    assert_error(body, "internal")
    assert "private" not in body["error"]["message"]
    failures = [e for e in logs if e["event"] == "request_failed"]
    assert len(failures) == 1
    assert failures[0]["error_type"] == "RuntimeError"
    assert failures[0]["route"] == "/api/chats"
    assert failures[0]["request_id"] in body["error"]["message"]
    assert "private" not in repr(logs) and "Alice" not in repr(logs)


@pytest.fixture
def debug_logging():
    """Let debug lines through whatever level an earlier test configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(0))
    yield
    structlog.configure(**saved)


async def test_request_log_lines_carry_no_query_text(client, debug_logging):
    with structlog.testing.capture_logs() as logs:
        await get(client, "/api/search?q=secretword")
        await get(client, "/api/search/secretword", 404)
    assert [e["status"] for e in logs if e["event"] == "http_request"] == [200, 404]
    assert "secretword" not in repr(logs)


# ---------------------------------------------------------------------------------------------
# Chats


async def test_chats_are_newest_first_with_chats_without_messages_last(client):
    chats = await get(client, "/api/chats")
    assert [c["id"] for c in chats] == [3, 2, 4, 1, 6, 5]


async def test_chat_shape_titles_and_participants(client):
    chats = {c["id"]: c for c in await get(client, "/api/chats")}
    one = chats[1]
    assert set(one) == {
        "id",
        "guid",
        "title",
        "is_group",
        "service",
        "participants",
        "message_count",
        "last_message_time",
    }
    assert one["guid"] == "iMessage;-;+15550001" and one["is_group"] is False
    assert one["title"] == "Alice Ångström"
    assert one["participants"] == [
        {"contact_id": 1, "name": "Alice Ångström", "identifier": "+15550001"}
    ]
    assert one["message_count"] == 25
    assert one["last_message_time"] == "2023-11-14T22:43:20.000000Z"
    assert chats[2]["title"] == "Trip" and chats[2]["is_group"] is True
    # A nameless group is named by its people, each once, in Apple's order.
    assert chats[3]["title"] == "Alice Ångström, Bob, +15550003, +15550009"
    assert [p["identifier"] for p in chats[3]["participants"]] == [
        "+15550001",
        "alice@example.com",
        "+15550002",
        "+15550003",
        "+15550009",
    ]
    assert chats[3]["participants"][3] == {
        "contact_id": 3,
        "name": None,
        "identifier": "+15550003",
    }
    assert chats[3]["participants"][4] == {
        "contact_id": None,
        "name": None,
        "identifier": "+15550009",
    }
    assert chats[4]["title"] == "+15550009"
    assert chats[5]["last_message_time"] is None and chats[5]["message_count"] == 0
    assert chats[6]["title"] == "chat300" and chats[6]["participants"] == []


@pytest.mark.parametrize("limit", [1, 2, 4, 5])
async def test_chat_pages_cover_every_chat_once(client, limit):
    everything = await get(client, "/api/chats")
    assert await walk(client, "/api/chats", limit) == everything


async def test_chat_by_id_and_404(client):
    one = await get(client, "/api/chats/3")
    assert one == {c["id"]: c for c in await get(client, "/api/chats")}[3]
    assert_error(await get(client, "/api/chats/77", 404), "not_found")
    assert_error(await get(client, "/api/chats/99999999999999999999999", 404), "not_found")
    await get(client, "/api/chats/abc", 404)


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        "limit=%2B5",
        "limit=1_0",
        "limit=%205",
        "limit=99999999999999999999999",
        "before_id=0",
        "before_id=x",
        "before_id=99999999999999999999",
        "before_id=12345",
    ],
)
async def test_bad_paging_parameters_are_400(client, query):
    assert_error(await get(client, f"/api/chats?{query}", 400), "bad_request")


async def test_limit_bounds_and_empty_parameters(client):
    assert len(await get(client, "/api/chats?limit=500")) == 6
    assert len(await get(client, "/api/chats/1/messages?limit=500")) == 25
    assert len(await get(client, "/api/chats/1/messages")) == 25
    assert len(await get(client, "/api/chats?limit=&before_id=")) == 6


# ---------------------------------------------------------------------------------------------
# Messages


def expected_order(sql: sqlite3.Connection, where: str, params: dict, newest: bool = True):
    direction = "DESC" if newest else "ASC"
    rows = sql.execute(
        f"SELECT id FROM messages WHERE {where} ORDER BY date_ns {direction}, id {direction}",
        params,
    )
    return [r[0] for r in rows]


async def test_chat_messages_are_newest_first_by_time_then_id(client, sql):
    ids = [m["id"] for m in await get(client, "/api/chats/1/messages?limit=500")]
    assert ids == expected_order(sql, "chat_id = 1", {})
    assert ids[-1] == 24  # the late arrival is the oldest
    assert ids.index(11) < ids.index(10)  # same time: higher id first


@pytest.mark.parametrize("limit", [1, 3, 7, 25, 50])
async def test_chat_message_pages_have_no_gaps_or_repeats(client, sql, limit):
    ids = [m["id"] for m in await walk(client, "/api/chats/1/messages", limit)]
    assert ids == expected_order(sql, "chat_id = 1", {})


async def test_message_shape_sender_reactions_and_attachments(client):
    messages = {m["id"]: m for m in await get(client, "/api/chats/1/messages?limit=500")}
    five = messages[5]
    assert set(five) == {
        "id",
        "guid",
        "chat_id",
        "conversation_id",
        "text",
        "timestamp",
        "is_from_me",
        "sender",
        "reply_to_guid",
        "edited",
        "unsent",
        "kind",
        "group_title",
        "reactions",
        "attachments",
    }
    assert five["guid"] == "m5" and five["chat_id"] == 1 and five["conversation_id"] == 1
    assert five["is_from_me"] is True and five["sender"] is None
    assert five["timestamp"] == "2023-11-14T22:18:20.000000Z"
    alice = {"contact_id": 1, "name": "Alice Ångström", "identifier": "+15550001"}
    assert five["reactions"] == [
        {"type": "loved", "emoji": None, "is_from_me": False, "sender": alice},
        {"type": "emphasized", "emoji": None, "is_from_me": True, "sender": None},
        {"type": "emoji", "emoji": "🎉", "is_from_me": False, "sender": alice},
    ]
    assert messages[6]["sender"] == alice and messages[6]["is_from_me"] is False
    assert messages[6]["reactions"] == [] and messages[6]["attachments"] == []
    assert messages[7]["attachments"] == [
        {
            "filename": "~/Library/Messages/Attachments/first.heic",
            "transfer_name": "first.heic",
            "mime_type": "image/jpeg",
            "total_bytes": 1234,
        },
        {
            "filename": "~/Library/Messages/Attachments/second.jpg",
            "transfer_name": "second.jpg",
            "mime_type": "image/jpeg",
            "total_bytes": 1234,
        },
    ]
    late = messages[24]
    assert late["reply_to_guid"] == "m3" and late["edited"] is True and late["unsent"] is False
    assert messages[25]["text"] is None and messages[25]["unsent"] is True


async def test_system_events_are_messages_with_their_kind(client):
    rename = (await get(client, "/api/chats/2/messages"))[0]
    assert rename["kind"] == "group_rename" and rename["group_title"] == "Trip"
    assert rename["sender"] == {"contact_id": 2, "name": "Bob", "identifier": "+15550002"}


async def test_chat_messages_errors(client):
    assert_error(await get(client, "/api/chats/77/messages", 404), "not_found")
    # A cursor from another chat, or no message at all, is a client mistake.
    assert_error(await get(client, "/api/chats/1/messages?before_id=30", 400), "bad_request")
    assert_error(await get(client, "/api/chats/1/messages?before_id=999", 400), "bad_request")
    assert await get(client, "/api/chats/5/messages") == []


# ---------------------------------------------------------------------------------------------
# Contacts


async def test_contacts_newest_first_with_distinct_identifiers(client):
    contacts = await get(client, "/api/contacts")
    assert [c["id"] for c in contacts] == [3, 2, 1, 5, 4]
    by_id = {c["id"]: c for c in contacts}
    assert by_id[1] == {
        "id": 1,
        "name": "Alice Ångström",
        "identifiers": ["+15550001", "alice@example.com"],
        "message_count": 12,
        "last_message_time": "2023-11-14T22:35:20.000000Z",
    }
    assert by_id[3]["name"] is None and by_id[3]["identifiers"] == ["+15550003"]
    assert by_id[4] == {
        "id": 4,
        "name": "Carol",
        "identifiers": [],
        "message_count": 0,
        "last_message_time": None,
    }


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_contact_pages_cross_into_never_messaged_contacts(client, limit):
    assert await walk(client, "/api/contacts", limit) == await get(client, "/api/contacts")
    assert_error(await get(client, "/api/contacts?before_id=99", 400), "bad_request")


# ---------------------------------------------------------------------------------------------
# Conversations


async def test_conversations_newest_first_and_by_chat(client):
    every = await get(client, "/api/conversations")
    assert [c["id"] for c in every] == [4, 3, 5, 2, 1]
    assert every[-1] == {
        "id": 1,
        "chat_id": 1,
        "start_time": "2023-11-14T22:08:20.000000Z",
        "end_time": "2023-11-14T22:23:20.000000Z",
        "message_count": 12,
        "sealed": True,
    }
    assert [c["id"] for c in await get(client, "/api/conversations?chat_id=1")] == [2, 1]
    assert await get(client, "/api/conversations?chat_id=5") == []
    assert await walk(client, "/api/conversations", 2) == every
    of_chat_1 = [c for c in every if c["chat_id"] == 1]
    assert await walk(client, "/api/conversations?chat_id=1", 1) == of_chat_1


async def test_conversation_errors(client):
    assert_error(await get(client, "/api/conversations?chat_id=77", 404), "not_found")
    assert_error(await get(client, "/api/conversations?chat_id=a", 400), "bad_request")
    # A cursor from another chat's list.
    assert_error(await get(client, "/api/conversations?chat_id=1&before_id=3", 400), "bad_request")
    assert_error(await get(client, "/api/conversations/77", 404), "not_found")
    assert_error(await get(client, "/api/conversations/77/messages", 404), "not_found")


async def test_conversation_by_id(client):
    conv = await get(client, "/api/conversations/2")
    assert conv["chat_id"] == 1 and conv["sealed"] is False and conv["message_count"] == 13


async def test_conversation_messages_read_oldest_first(client, sql):
    expected = expected_order(sql, "conversation_id = 2", {}, newest=False)
    assert [m["id"] for m in await get(client, "/api/conversations/2/messages")] == expected
    forward = await walk(client, "/api/conversations/2/messages", 4, cursor="after_id")
    assert [m["id"] for m in forward] == expected


async def test_conversation_messages_read_back_with_before_id(client, sql):
    expected = expected_order(sql, "conversation_id = 2", {}, newest=False)
    page = await get(client, f"/api/conversations/2/messages?before_id={expected[-1]}&limit=4")
    assert [m["id"] for m in page] == expected[-5:-1]
    seen: list[int] = [expected[-1]]
    while page:
        seen = [m["id"] for m in page] + seen
        page = await get(client, f"/api/conversations/2/messages?before_id={page[0]['id']}&limit=4")
    assert seen == expected
    assert_error(
        await get(client, "/api/conversations/2/messages?before_id=1&after_id=2", 400),
        "bad_request",
    )
    assert_error(await get(client, "/api/conversations/2/messages?after_id=1", 400), "bad_request")


# ---------------------------------------------------------------------------------------------
# Search


async def search_ids(client: httpx.AsyncClient, query: str) -> list[int]:
    return [m["id"] for m in await get(client, "/api/search", params={"q": query})]


async def test_search_finds_every_word_newest_first(client, sql):
    hello = await search_ids(client, "hello")
    rows = sql.execute(
        "SELECT id FROM messages WHERE text LIKE '%hello%' ORDER BY date_ns DESC, id DESC"
    )
    assert hello == [r[0] for r in rows]
    assert 40 in hello  # orphans are found too
    assert await search_ids(client, "hello trip") == [30]
    assert await search_ids(client, "HELLO   Trip\t") == [30]


async def test_search_results_have_the_message_shape(client):
    (found,) = await get(client, "/api/search", params={"q": "trip plans"})
    assert found["id"] == 30 and found["sender"]["name"] == "Bob"
    assert found["reactions"] == [
        {"type": "laughed", "emoji": None, "is_from_me": True, "sender": None}
    ]


async def test_search_treats_quotes_and_operators_as_text(client):
    said = await search_ids(client, 'said "hi"')
    assert said and all(i % 6 == 1 for i in said)
    assert await search_ids(client, "NEAR AND OR NOT") == await search_ids(client, "near")
    assert await search_ids(client, "foo*") == await search_ids(client, "foo")
    for nasty in ['"', '""', "'", "(", ")", "*", "-", "^", ":", "text:hello", "NEAR(a b)", "a OR"]:
        assert isinstance(await search_ids(client, nasty), list)


async def test_search_unicode_and_diacritics(client):
    cafe = await search_ids(client, "café")
    assert cafe and cafe == await search_ids(client, "CAFE")
    assert await search_ids(client, "日本語のテキスト")


async def test_search_by_chat_and_paging(client):
    in_chat = await search_ids(client, "hello")
    assert [m["id"] for m in await get(client, "/api/search?q=hello&chat_id=3")] == [33]
    paged = await walk(client, "/api/search?q=hello", 2)
    assert [m["id"] for m in paged] == in_chat
    assert_error(await get(client, "/api/search?q=hello&chat_id=77", 404), "not_found")
    assert_error(await get(client, "/api/search?q=hello&before_id=999", 400), "bad_request")


@pytest.mark.parametrize("query", ["", "q=", "q=%20%20", "q=%09%0A"])
async def test_search_needs_words(client, query):
    assert_error(await get(client, f"/api/search?{query}", 400), "bad_request")


async def test_search_rejects_overlong_text(client):
    long = "a " * service.MAX_QUERY_CHARS
    assert_error(await get(client, "/api/search", 400, params={"q": long}), "bad_request")
    await get(client, "/api/search", params={"q": "ab " * (service.MAX_QUERY_CHARS // 3)})


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=80))
def test_any_search_text_is_a_valid_query_or_a_clear_400(library_path, text):
    """Every string a person could type either has no words (400) or is a valid FTS5 query."""
    conn = connect(library_path, write=False)
    try:
        try:
            terms = service.search_terms(text)
        except service.BadRequest:
            assert text.replace("\x00", "").strip() == ""  # nothing but blanks and NULs
            return
        store.search_messages(conn, store.match_expression(terms), None, 50, None)
    finally:
        conn.close()


async def test_hostile_search_text_over_http_never_fails(client):
    texts = ['a"b', 'x" OR "y', "\x00", "\ud7ff", "𝔘𝔫𝔦", "e\u0301", "NEAR/3", "{a b}:c", "-x", "+"]
    for text in texts:
        with anyio.fail_after(10):
            r = await client.get("/api/search", params={"q": text})
        assert r.status_code in (200, 400), r.text


# ---------------------------------------------------------------------------------------------
# Shapes of values


def test_times_are_utc_iso_with_microseconds_and_z():
    assert iso_time(T0) == "2023-11-14T22:13:20.000000Z"
    assert iso_time(T0 + 789_012_345) == "2023-11-14T22:13:20.789012Z"
    assert iso_time(0) == "1970-01-01T00:00:00.000000Z"
    assert iso_time(None) is None
    # SQLite's integer range fits: 1677 to 2262.
    assert iso_time(2**63 - 1) == "2262-04-11T23:47:16.854775Z"
    assert iso_time(-(2**63)) == "1677-09-21T00:12:43.145224Z"


def test_match_expression_quotes_every_term():
    assert store.match_expression(["a", 'b"c', "OR"]) == '"a" AND "b""c" AND "OR"'


async def test_limit_defaults_to_50(client, monkeypatch):
    seen: list[int] = []

    async def spy(self, chat_id, limit, before_id, cursor):
        seen.append(limit)
        return service.Page([], None)

    monkeypatch.setattr(service.Library, "chat_messages", spy)
    await get(client, "/api/chats/1/messages")
    await get(client, "/api/chats/1/messages?limit=")
    assert seen == [50, 50]


async def test_text_search_filters_by_contact_and_time(client, sql):
    """mode=text honours contact_id (what that contact sent), since and until, as the other
    modes do; paging keeps the filters."""
    rows = sql.execute(
        "SELECT m.id, h.contact_id, m.date_ns FROM messages m"
        " LEFT JOIN handles h ON h.id = m.handle_id"
        " WHERE m.text LIKE '%hello%' ORDER BY m.date_ns DESC, m.id DESC"
    ).fetchall()
    contacts = {r[1] for r in rows if r[1] is not None}
    assert contacts and len({r[1] for r in rows}) > 1
    for contact in contacts:
        found = [m["id"] for m in await get(client, f"/api/search?q=hello&contact_id={contact}")]
        assert found == [r[0] for r in rows if r[1] == contact]
    times = sorted({r[2] for r in rows})
    assert len(times) >= 3
    cut = times[len(times) // 2] // 10**9  # whole seconds: exact in ISO 8601
    iso = quote(datetime.fromtimestamp(cut, UTC).isoformat())
    since = await walk(client, f"/api/search?q=hello&since={iso}", 1)
    assert [m["id"] for m in since] == [r[0] for r in rows if r[2] >= cut * 10**9]
    until = [m["id"] for m in await get(client, f"/api/search?q=hello&until={iso}")]
    assert until == [r[0] for r in rows if r[2] < cut * 10**9]
    assert since and until
    assert_error(await get(client, "/api/search?q=hello&since=tuesday", 400), "bad_request")
    assert_error(await get(client, "/api/search?q=hello&contact_id=x", 400), "bad_request")


async def test_search_times_outside_sqlite_integers_are_a_400_not_a_500():
    from chatstats.context.search import parse_time
    from chatstats.errors import BadRequest

    assert parse_time("2024-01-01T00:00:00Z", "since") == 1704067200 * 10**9
    for raw in ("8400-01-04T12:11:18+17:03", "0195-01-03"):
        with pytest.raises(BadRequest, match="between the years"):
            parse_time(raw, "until")
