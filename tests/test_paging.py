"""Stable paging: a walk that follows `Link: rel="next"` holds every item of the list as its
first page saw it exactly once, in that order, while messages move items to the top between
pages. Walked the way `before_id` pages (the previous page's last id), the same moves repeat
items (the last chat served jumps to the top and the next page starts over) and skip them (a
chat not yet served jumps above the page boundary).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from chatstats.api.app import create_app
from chatstats.api.state import AppState
from chatstats.config import Settings
from chatstats.db import Database
from chatstats.ingest.batch import refresh_chats, refresh_contacts
from chatstats.sample.generate import make_library
from chatstats.sample.writer import MessagesWriter
from tests.test_api import _fill
from tests.test_live import daemon, settings_for

pytestmark = pytest.mark.anyio

TOKEN = "test-token-0123456789"
_LINK = re.compile(r'^<([^>]+)>; rel="next"$')

Between = Callable[[list[dict[str, Any]], list[dict[str, Any]]], Awaitable[None]]


async def walk_while_moving(
    client: httpx.AsyncClient, path: str, limit: int, between: Between, max_pages: int = 60
) -> list[dict[str, Any]]:
    """Every page a client reads: the `Link` header's next page, or (when a full page has
    none) `before_id` of its last item. `between(page, served)` runs after each page. Stops
    after `max_pages` (a walk that keeps starting over), for the caller to see the repeats."""
    served: list[dict[str, Any]] = []
    url = f"{path}?limit={limit}"
    for _ in range(max_pages):
        with anyio.fail_after(10):
            r = await client.get(url)
        assert r.status_code == 200, r.text
        page = r.json()
        served += page
        if len(page) < limit:
            return served
        await between(page, served)
        link = r.headers.get("link")
        if link is None:
            url = f"{path}?limit={limit}&before_id={page[-1]['id']}"
        else:
            match = _LINK.match(link)
            assert match, link
            url = match.group(1)
    return served


def assert_each_once_in_order(served: list[dict[str, Any]], snapshot: list[dict[str, Any]]):
    counts = Counter(item["id"] for item in served)
    repeated = sorted(k for k, n in counts.items() if n > 1)
    skipped = sorted({item["id"] for item in snapshot} - set(counts))
    assert (repeated, skipped) == ([], [])
    assert [item["id"] for item in served] == [item["id"] for item in snapshot]


# ---------------------------------------------------------------------------------------------
# In process, on the API tests' small library, with ingest's own bookkeeping (refresh_*)


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[tuple[Database, httpx.AsyncClient]]:
    db = Database(tmp_path / "chatstats.db")
    await db.open()
    await db.write(_fill)
    await db.write(refresh_contacts, None)  # contact times as ingest keeps them
    app_state = AppState(
        settings=Settings(data_dir=str(tmp_path)), db=db, token=TOKEN, started_ns=time.time_ns()
    )
    transport = httpx.ASGITransport(create_app(app_state))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8765", headers=headers
        ) as client:
            yield db, client
    finally:
        db.close()


def ingest_message(conn: sqlite3.Connection, chat_id: int | None, handle_id: int | None) -> None:
    """What live sync does for one new message: appended at max(id) + 1, dated now, with the
    chat's and the contacts' denormalised times refreshed."""
    mid = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM messages").fetchone()[0]
    conn.execute(
        "INSERT INTO messages (id, guid, chat_id, handle_id, is_from_me, date_ns, text)"
        " VALUES (:id, :guid, :chat, :handle, :mine, :date, 'moved')",
        {
            "id": mid,
            "guid": f"new{mid}",
            "chat": chat_id,
            "handle": handle_id,
            "mine": int(handle_id is None),
            "date": time.time_ns() + mid,
        },
    )
    if chat_id is not None:
        refresh_chats(conn, [chat_id])
    refresh_contacts(conn, None)


def new_chat_with_a_message(conn: sqlite3.Connection) -> None:
    cid = conn.execute("SELECT max(id) + 1 FROM chats").fetchone()[0]
    conn.execute(
        "INSERT INTO chats (id, guid, chat_identifier, service, is_group)"
        " VALUES (:id, :guid, 'new', 'iMessage', 1)",
        {"id": cid, "guid": f"iMessage;+;new{cid}"},
    )
    ingest_message(conn, cid, None)


async def test_chat_pages_hold_each_chat_once_while_chats_move(small):
    db, client = small
    snapshot = (await client.get("/api/chats?limit=500")).json()
    assert snapshot[-1]["last_message_time"] is None  # chat 6: in the undated tail

    async def between(page: list[dict[str, Any]], served: list[dict[str, Any]]) -> None:
        await db.write(ingest_message, page[-1]["id"], None)  # the last one served jumps up
        if len(served) < len(snapshot):  # and so does the next one not yet served
            await db.write(ingest_message, snapshot[len(served)]["id"], None)
        await db.write(ingest_message, 6, None)  # the chat without messages gets one
        await db.write(new_chat_with_a_message)  # a new chat: not in this walk

    served = await walk_while_moving(client, "/api/chats", 1, between)
    assert_each_once_in_order(served, snapshot)
    # What moved is served as it is now, at the place it had in the snapshot.
    chat_6 = next(c for c in served if c["id"] == 6)
    assert chat_6["message_count"] > 0
    now = (await client.get("/api/chats?limit=500")).json()
    created = len(now) - len(snapshot)
    assert created == len(snapshot) and now[0]["id"] == max(c["id"] for c in now)


async def test_contact_pages_hold_each_contact_once_while_contacts_move(small):
    db, client = small
    snapshot = (await client.get("/api/contacts?limit=500")).json()
    handle_of = {1: 1, 2: 3, 3: 4}  # contacts 4 and 5 have no handle: they cannot move

    async def between(page: list[dict[str, Any]], served: list[dict[str, Any]]) -> None:
        for contact in [page[-1], *snapshot[len(served) : len(served) + 1]]:
            if contact["id"] in handle_of:
                await db.write(ingest_message, 2, handle_of[contact["id"]])

    served = await walk_while_moving(client, "/api/contacts", 1, between)
    assert_each_once_in_order(served, snapshot)


@pytest.mark.parametrize(
    "path",
    [
        "/api/chats",
        "/api/contacts",
        "/api/chats/1/messages",
        "/api/conversations",
        "/api/conversations?chat_id=1",
        "/api/search?q=hello",
    ],
)
async def test_following_link_walks_a_still_list_like_before_id(small, path):
    _db, client = small

    async def still(_page: list[dict[str, Any]], _served: list[dict[str, Any]]) -> None:
        return None

    sep = "&" if "?" in path else "?"
    everything = (await client.get(f"{path}{sep}limit=500")).json()
    assert len(everything) >= 2
    for limit in (1, 2, 3):
        served: list[dict[str, Any]] = []
        url = f"{path}{sep}limit={limit}"
        while True:
            r = await client.get(url)
            served += r.json()
            link = r.headers.get("link")
            if link is None:
                assert len(r.json()) < limit
                break
            assert len(r.json()) == limit and "before_id" not in link
            url = _LINK.match(link).group(1)  # type: ignore[union-attr]
        assert served == everything
    if "?" not in path:
        assert await walk_while_moving(client, path, 2, still) == everything


async def test_cursors_from_elsewhere_or_with_before_id_are_400(small):
    _db, client = small

    def next_of(r: httpx.Response) -> str:
        return _LINK.match(r.headers["link"]).group(1).split("cursor=")[1]  # type: ignore[union-attr]

    chats = next_of(await client.get("/api/chats?limit=1"))
    chat_1 = next_of(await client.get("/api/chats/1/messages?limit=1"))
    conv_1 = next_of(await client.get("/api/conversations?chat_id=1&limit=1"))
    for url in [
        f"/api/contacts?cursor={chats}",
        f"/api/chats/2/messages?cursor={chat_1}",
        f"/api/conversations?cursor={conv_1}",
        f"/api/conversations?chat_id=2&cursor={conv_1}",
        f"/api/chats?cursor={chats}&before_id=3",
        "/api/chats?cursor=nope",
        "/api/chats?cursor=" + "A" * 500,
        "/api/chats?cursor=WyJjaGF0cyIsMSwxXQ",  # ["chats",1,1]: no snapshot
        "/api/chats/1/messages?cursor=WyJjaGF0OjE6bWVzc2FnZXMiLG51bGwsMV0",  # no time
    ]:
        r = await client.get(url)
        assert r.status_code == 400, url
        assert r.json()["error"]["code"] == "bad_request"
    assert (await client.get(f"/api/chats?cursor={chats}&limit=2")).status_code == 200


# ---------------------------------------------------------------------------------------------
# End to end: Messages.app-like commits to chat.db, picked up by live sync, between pages


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paging-lib")
    make_library(root, messages=600, seed=21)
    return root


@pytest.mark.parametrize("listing", ["chats", "contacts"])
async def test_pages_stay_whole_while_live_sync_moves_items(sample, tmp_path, listing):
    lib = tmp_path / "lib"
    shutil.copytree(sample, lib)
    writer = MessagesWriter(lib / "chat.db", create=False)
    rowid_of = {chat.guid: rowid for rowid, chat in writer.chats.items()}
    try:
        async with daemon(settings_for(lib, tmp_path / "data")) as client:
            chats = (await client.get("/api/chats?limit=500")).json()
            # A contact moves when I write in our 1:1 chat.
            chat_of_contact = {
                c["participants"][0]["contact_id"]: c
                for c in chats
                if not c["is_group"] and c["participants"]
            }

            async def send(chat: dict[str, Any]) -> None:
                """A message from me in `chat`, once live sync has it in the library."""
                before = (await client.get(f"/api/chats/{chat['id']}")).json()["message_count"]
                writer.message(rowid_of[chat["guid"]], "moving", from_me=True, date=time.time_ns())
                with anyio.fail_after(20):
                    while (await client.get(f"/api/chats/{chat['id']}")).json()[
                        "message_count"
                    ] == before:
                        await anyio.sleep(0.02)

            def chat_for(item: dict[str, Any]) -> dict[str, Any] | None:
                return item if listing == "chats" else chat_of_contact.get(item["id"])

            snapshot = (await client.get(f"/api/{listing}?limit=500")).json()
            assert len(snapshot) > 30

            async def between(page: list[dict[str, Any]], served: list[dict[str, Any]]) -> None:
                for item in [page[-1], *snapshot[len(served) : len(served) + 1]]:
                    chat = chat_for(item)
                    if chat is not None:
                        await send(chat)

            served = await walk_while_moving(client, f"/api/{listing}", 8, between)
            assert_each_once_in_order(served, snapshot)
    finally:
        writer.close()
