"""message_hub: in-process fan-out of fresh messages, chat-list and contact changes to SSE.

Lossy by design, as in the seeds. Ingest publishes right after it commits and must never wait
for a browser: each subscriber has a bounded inbox, and when it is full the new item is
dropped for that subscriber alone and counted. Nothing is lost for good, because the data is
already in the database; a client that fell behind reconnects and reads a fresh `initial`.

Everything here runs on the event loop (no locks): publish from the loop, not from a worker
thread.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import Any, Literal

import anyio

from chatstats import log

logger = log.get(__name__)

DEFAULT_QUEUE_SIZE = 256

Kind = Literal["messages", "chats", "contacts"]
_KINDS: tuple[Kind, ...] = ("messages", "chats", "contacts")


class Subscription:
    """One subscriber's bounded inbox on one topic: an async iterator and a context manager.

    `enqueued` counts items accepted so far, so a reader that noted it at some moment knows
    which of the items it takes later were already waiting then (the inbox is FIFO).
    """

    def __init__(self, hub: MessageHub, kind: Kind, topic: str, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.kind: Kind = kind
        self.topic = topic
        self.maxsize = maxsize
        self.enqueued = 0
        self.dropped = 0
        self.closed = False
        self._hub = hub
        self._items: deque[Any] = deque()
        self._wake: anyio.Event | None = None

    @property
    def pending(self) -> int:
        return len(self._items)

    def _offer(self, item: Any) -> bool:
        if self.closed:
            return False
        if len(self._items) >= self.maxsize:
            self.dropped += 1
            return False
        self._items.append(item)
        self.enqueued += 1
        if self._wake is not None:
            self._wake.set()
        return True

    def get_nowait(self) -> Any:
        """The oldest waiting item; `anyio.WouldBlock` if none, `anyio.EndOfStream` if closed."""
        if self.closed:
            raise anyio.EndOfStream
        if not self._items:
            raise anyio.WouldBlock
        return self._items.popleft()

    async def get(self) -> Any:
        """The oldest item, waiting for one; `anyio.EndOfStream` once closed."""
        while True:
            if self.closed:
                raise anyio.EndOfStream
            if self._items:
                return self._items.popleft()
            self._wake = anyio.Event()
            await self._wake.wait()

    def close(self) -> None:
        """Stop receiving and leave the hub. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self._items.clear()
        self._hub._remove(self)
        if self._wake is not None:
            self._wake.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.get()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MessageHub:
    """Topics: one per chat's messages (`chat:N`), the chat list, the contact list."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._topics: dict[str, set[Subscription]] = {}
        self._published: dict[Kind, int] = dict.fromkeys(_KINDS, 0)
        self._delivered: dict[Kind, int] = dict.fromkeys(_KINDS, 0)
        self._dropped: dict[Kind, int] = dict.fromkeys(_KINDS, 0)
        self._errors = 0

    # -- subscribing ------------------------------------------------------------------------

    def subscribe_chat(self, chat_id: int, maxsize: int | None = None) -> Subscription:
        return self._subscribe("messages", f"chat:{chat_id}", maxsize)

    def subscribe_chats(self, maxsize: int | None = None) -> Subscription:
        return self._subscribe("chats", "chats", maxsize)

    def subscribe_contacts(self, maxsize: int | None = None) -> Subscription:
        return self._subscribe("contacts", "contacts", maxsize)

    def _subscribe(self, kind: Kind, topic: str, maxsize: int | None) -> Subscription:
        sub = Subscription(self, kind, topic, maxsize or self.queue_size)
        self._topics.setdefault(topic, set()).add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        subs = self._topics.get(sub.topic)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._topics[sub.topic]

    # -- publishing -------------------------------------------------------------------------

    def publish_messages(self, chat_id: int, payload: Any) -> int:
        """Offer new or changed messages of one chat; returns how many subscribers took it."""
        return self._publish("messages", f"chat:{chat_id}", payload)

    def publish_chats(self, payload: Any) -> int:
        return self._publish("chats", "chats", payload)

    def publish_contacts(self, payload: Any) -> int:
        return self._publish("contacts", "contacts", payload)

    def _publish(self, kind: Kind, topic: str, payload: Any) -> int:
        """Never blocks and never raises: a failure here must not undo ingest's work."""
        try:
            self._published[kind] += 1
            taken = 0
            for sub in tuple(self._topics.get(topic, ())):
                if sub._offer(payload):
                    taken += 1
                else:
                    self._dropped[kind] += 1
            self._delivered[kind] += taken
            return taken
        except Exception as exc:
            self._errors += 1
            logger.error("hub_publish_failed", kind=kind, error_type=type(exc).__name__)
            return 0

    # -- lifetime and numbers ---------------------------------------------------------------

    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._topics.values())

    def close(self) -> None:
        """End every subscription (their streams finish); the hub stays usable."""
        for subs in tuple(self._topics.values()):
            for sub in tuple(subs):
                sub.close()

    def stats(self) -> dict[str, Any]:
        """Ids and counts only: topics name chat ids, never titles or content."""
        by_kind: dict[Kind, int] = dict.fromkeys(_KINDS, 0)
        queues: list[dict[str, Any]] = []
        for subs in self._topics.values():
            for sub in subs:
                by_kind[sub.kind] += 1
                queues.append(
                    {
                        "topic": sub.topic,
                        "pending": sub.pending,
                        "maxsize": sub.maxsize,
                        "dropped": sub.dropped,
                    }
                )
        queues.sort(key=lambda q: (-q["dropped"], -q["pending"], q["topic"]))
        return {
            "subscribers": {**by_kind, "total": sum(by_kind.values())},
            "published": dict(self._published),
            "delivered": dict(self._delivered),
            "dropped": {**self._dropped, "total": sum(self._dropped.values())},
            "errors": self._errors,
            "queues": queues,
        }
