"""The chats and contacts live streams carry each item's statistics counts, and each live batch
brings them up to date: over real HTTP on loopback, against the daemon's live tail.

The counts must equal what the stats routes answer at the same moment (and so the truth those
routes are tested against), after the batch, not before it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.test_live import (
    Stream,
    busiest_one_to_one,
    chat_id_of,
    daemon,
    lib,  # noqa: F401  (fixtures)
    sample,  # noqa: F401
    settings_for,
    wait_until,
    write,
)

pytestmark = pytest.mark.anyio


def _items(stream: Stream, key: str, event: str = "update") -> list[dict[str, Any]]:
    return [item for e, data in stream.events if e == event for item in data[key]]


def _counts(fig: dict[str, Any]) -> dict[str, int]:
    return {k: fig[k] for k in ("messages", "sent", "received")}


async def test_chat_and_contact_streams_carry_counts_updated_by_each_batch(
    lib: Path,  # noqa: F811
    tmp_path: Path,
):
    guid = busiest_one_to_one(lib)
    async with daemon(settings_for(lib, tmp_path / "data")) as client:
        chat_id = await chat_id_of(client, guid)
        conn = sqlite3.connect(tmp_path / "data" / "chatstats.db")
        contact_id = conn.execute(
            "SELECT h.contact_id FROM chat_participants p JOIN handles h ON h.id = p.handle_id"
            " WHERE p.chat_id = ?",
            (chat_id,),
        ).fetchone()[0]
        conn.close()
        assert contact_id is not None
        before_chat = _counts((await client.get(f"/api/stats/chats/{chat_id}")).json())
        before_contact = _counts((await client.get(f"/api/stats/contacts/{contact_id}")).json())
        chats, contacts = Stream(), Stream()
        async with anyio.create_task_group() as tg:
            tg.start_soon(chats.read, client, "/api/live-sync/stream/chats")
            tg.start_soon(contacts.read, client, "/api/live-sync/stream/contacts")
            await wait_until(
                lambda: (
                    any(e == "ready" for e, _ in chats.events)
                    and any(e == "ready" for e, _ in contacts.events)
                ),
                10,
            )
            # `initial` already carries the counts, as the routes give them.
            first = [c for c in _items(chats, "chats", "initial") if c["id"] == chat_id]
            if first:
                assert first[0]["stats"] == before_chat
            for c in _items(contacts, "contacts", "initial"):
                assert set(c["stats"]) == {"messages", "sent", "received"}
                assert c["stats"]["messages"] == c["stats"]["sent"] + c["stats"]["received"]
            notes = await anyio.to_thread.run_sync(write, lib, "4")
            assert len([n for n in notes if n.get("kind") == "new"]) == 4
            after_chat = before_chat | {
                "messages": before_chat["messages"] + 4,
                "received": before_chat["received"] + 4,
            }
            after_contact = before_contact | {
                "messages": before_contact["messages"] + 4,
                "received": before_contact["received"] + 4,
            }

            def chat_caught_up() -> bool:
                got = [c["stats"] for c in _items(chats, "chats") if c["id"] == chat_id]
                return bool(got) and got[-1] == after_chat

            def contact_caught_up() -> bool:
                got = [c["stats"] for c in _items(contacts, "contacts") if c["id"] == contact_id]
                return bool(got) and got[-1] == after_contact

            await wait_until(lambda: chat_caught_up() and contact_caught_up(), 20)
            tg.cancel_scope.cancel()
        # Every update on the way counted up, one batch at a time, never past the end.
        seen = [c["stats"]["received"] for c in _items(chats, "chats") if c["id"] == chat_id]
        assert seen == sorted(seen) and seen[-1] == after_chat["received"]
        assert _counts((await client.get(f"/api/stats/chats/{chat_id}")).json()) == after_chat
        now = (await client.get(f"/api/stats/contacts/{contact_id}")).json()
        assert _counts(now) == after_contact
