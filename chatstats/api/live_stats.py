"""The chats and contacts live streams carry each item's statistics counts.

Why here: a batch's changed chats and contacts are read once and published to every
subscriber (chatstats/daemon.py), so their all-time `stats` {messages, sent, received}
(as /api/stats/chats/{id} and /api/stats/contacts/{id} count them) are read once per batch
too, from stats_years, in the same shape the streams' `initial` pages carry.
"""

from __future__ import annotations

from typing import Any

from chatstats.api.imessage import chat_json, contact_json
from chatstats.db import Database
from chatstats.library.service import Chat, Contact
from chatstats.stats.service import live_counts


async def chats_with_stats(db: Database, chats: list[Chat]) -> list[dict[str, Any]]:
    counts, _ = await db.read(live_counts, [c.id for c in chats], [])
    return [{**chat_json(c), "stats": counts[c.id]} for c in chats]


async def contacts_with_stats(db: Database, contacts: list[Contact]) -> list[dict[str, Any]]:
    _, counts = await db.read(live_counts, [], [c.id for c in contacts])
    return [{**contact_json(c), "stats": counts[c.id]} for c in contacts]


async def payloads(
    db: Database, chats: list[Chat], contacts: list[Contact]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hub payloads of one batch: {chats: [...]} and {contacts: [...]}, in one read."""
    by_chat, by_contact = await db.read(
        live_counts, [c.id for c in chats], [c.id for c in contacts]
    )
    return (
        {"chats": [{**chat_json(c), "stats": by_chat[c.id]} for c in chats]},
        {"contacts": [{**contact_json(c), "stats": by_contact[c.id]} for c in contacts]},
    )
