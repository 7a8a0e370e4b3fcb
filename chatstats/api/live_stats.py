"""The chats and contacts live streams carry each item's statistics counts.

Why here: a batch's changed chats and contacts are read once and published to every
subscriber (chatstats/ingest/sync.py), with their all-time `stats` {messages, sent,
received} (as /api/stats/chats/{id} and /api/stats/contacts/{id} count them) read once per
batch from stats_years; the streams' `initial` pages carry the same shape, read here.
"""

from __future__ import annotations

from typing import Any

from chatstats.api.common import chat_json, contact_json
from chatstats.db import Database
from chatstats.library.service import Chat, Contact
from chatstats.stats.service import live_counts


async def chats_with_stats(db: Database, chats: list[Chat]) -> list[dict[str, Any]]:
    counts, _ = await db.read(live_counts, [c.id for c in chats], [])
    return [{**chat_json(c), "stats": counts[c.id]} for c in chats]


async def contacts_with_stats(db: Database, contacts: list[Contact]) -> list[dict[str, Any]]:
    _, counts = await db.read(live_counts, [], [c.id for c in contacts])
    return [{**contact_json(c), "stats": counts[c.id]} for c in contacts]
