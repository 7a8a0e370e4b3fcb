"""Live sync as one service: the tail of chat.db, the sealer and the AddressBook sync, and
what happens after each of their commits.

Why here and not in the daemon: turning an ingest outcome into hub publishes (which
messages, chats and contacts changed, read back in their wire shape once per batch) is
ingest's business; the daemon only composes services and runs them. Everything here runs on
the event loop; the commits themselves happen on the writer (LiveTail, Sealer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import msgspec

from chatstats.config import Settings
from chatstats.db import Database
from chatstats.events.bus import EventBus
from chatstats.events.hub import MessageHub
from chatstats.ingest.addressbook_sync import AddressBookSync
from chatstats.ingest.batch import Outcome
from chatstats.ingest.live import LiveTail
from chatstats.ingest.sealer import Sealer
from chatstats.library.service import Library
from chatstats.metrics import Metrics
from chatstats.stats.service import live_counts


class LiveSync:
    """Built by the composition root before the app serves; `run` starts after the import
    (health shows the tail as `starting` until then)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: EventBus,
        hub: MessageHub,
        metrics: Metrics,
        library: Library,
    ) -> None:
        self._db, self._bus, self._hub, self._library = db, bus, hub, library
        self.sealer = Sealer(db, bus)
        addressbook = Path(settings.addressbook) if settings.addressbook else None
        self.addressbook = AddressBookSync(db, addressbook, on_change=self._publish_contacts)
        self.tail = LiveTail(db, Path(settings.source), publish=self.publish)
        self.tail.on_batch = self._observe
        self._metrics = metrics
        metrics.gauge("ingest.tail", lambda: msgspec.to_builtins(self.tail.status))

    async def run(self, stop: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.tail.run, stop)
            tg.start_soon(self.sealer.run, stop)
            tg.start_soon(self.addressbook.run, stop)

    async def publish(self, outcome: Outcome) -> None:
        """After a batch commits: wake log readers and the sealer, ask for unknown names, and
        offer the changed messages, chats and contacts (one read for all three) to the hub."""
        self._bus.notify()
        if outcome.sealed_timers_changed:
            self.sealer.wake()
        if outcome.unknown_identifiers:
            self.addressbook.request(list(outcome.unknown_identifiers))
        ids = [*outcome.new_message_ids, *outcome.changed_message_ids]
        seen = set(ids)
        ids += [i for i in outcome.reacted_message_ids if i not in seen]
        if not (ids or outcome.chat_ids or outcome.contact_ids):
            return
        messages, chats, contacts = await self._library.changes(
            ids, outcome.chat_ids, outcome.contact_ids
        )
        by_chat: dict[int, list[Any]] = {}
        for m in messages:
            if m.chat_id is not None:  # a chat-less message has no chat:<id> subscriber
                by_chat.setdefault(m.chat_id, []).append(m)
        for chat_id, items in by_chat.items():
            self._hub.publish_messages(chat_id, items)
        if chats or contacts:  # with their statistics counts, read once per batch
            chat_counts, contact_counts = await self._db.read(
                live_counts, [c.id for c in chats], [c.id for c in contacts]
            )
            if chats:
                self._hub.publish_chats({"chats": chats, "stats": chat_counts})
            if contacts:
                self._hub.publish_contacts({"contacts": contacts, "stats": contact_counts})

    async def _publish_contacts(self, contact_ids: list[int]) -> None:
        _messages, _chats, contacts = await self._library.changes([], [], contact_ids)
        if contacts:
            _, by_contact = await self._db.read(live_counts, [], [c.id for c in contacts])
            self._hub.publish_contacts({"contacts": contacts, "stats": by_contact})

    def _observe(self, outcome: Outcome, counters: Any) -> None:
        self._metrics.incr("ingest.messages", len(outcome.new_message_ids))
        self._metrics.incr("ingest.changed", len(outcome.changed_message_ids))
