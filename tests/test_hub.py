"""message_hub: bounded, lossy fan-out that never makes a publisher wait."""

from __future__ import annotations

import time

import anyio
import pytest

from chatstats.events.hub import MessageHub

pytestmark = pytest.mark.anyio


async def test_subscribers_get_what_is_published_on_their_topic_only():
    hub = MessageHub()
    with hub.subscribe_chat(1) as one, hub.subscribe_chat(2) as two, hub.subscribe_chats() as chats:
        assert hub.publish_messages(1, {"messages": [{"id": 10}]}) == 1
        assert hub.publish_chats([{"id": 1}]) == 1
        assert hub.publish_contacts([{"id": 5}]) == 0  # nobody listens
        with anyio.fail_after(5):
            assert await one.get() == {"messages": [{"id": 10}]}
            assert await chats.get() == [{"id": 1}]
        assert two.pending == 0
        with pytest.raises(anyio.WouldBlock):
            one.get_nowait()


async def test_a_full_inbox_drops_new_items_and_counts_them():
    hub = MessageHub(queue_size=3)
    with hub.subscribe_chat(1) as sub:
        taken = [hub.publish_messages(1, n) for n in range(5)]
        assert taken == [1, 1, 1, 0, 0]
        assert sub.pending == 3 and sub.dropped == 2 and sub.enqueued == 3
        assert [sub.get_nowait() for _ in range(3)] == [0, 1, 2]  # the oldest are kept
        stats = hub.stats()
        assert stats["dropped"] == {"messages": 2, "chats": 0, "contacts": 0, "total": 2}
        assert stats["published"]["messages"] == 5
        assert stats["delivered"]["messages"] == 3
        assert stats["queues"] == [{"topic": "chat:1", "pending": 0, "maxsize": 3, "dropped": 2}]
    # Totals outlive the subscriber.
    assert hub.stats()["dropped"]["total"] == 2


async def test_a_stalled_subscriber_never_slows_the_publisher_or_other_subscribers():
    hub = MessageHub(queue_size=8)
    stalled = hub.subscribe_chats()  # never read
    received: list[int] = []
    total = 2_000

    async def keep_reading() -> None:
        with hub.subscribe_chats() as sub:
            ready.set()
            async for item in sub:
                received.append(item)
                if item == total - 1:
                    return

    ready = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_reading)
            await ready.wait()
            began = time.perf_counter()
            for n in range(total):
                hub.publish_chats(n)  # never blocks, never raises
                if n % 4 == 3:
                    await anyio.sleep(0)  # let the healthy reader run, as a real loop would
            elapsed = time.perf_counter() - began
    assert received == list(range(total))
    assert stalled.pending == 8 and stalled.dropped == total - 8
    assert elapsed < 2.0
    stalled.close()


async def test_closing_leaves_the_hub_ends_iteration_and_is_idempotent():
    hub = MessageHub()
    sub = hub.subscribe_chat(3)
    assert hub.subscriber_count() == 1
    got: list[object] = []

    async def reader() -> None:
        async for item in sub:
            got.append(item)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.sleep(0.01)
            hub.publish_messages(3, "a")
            await anyio.sleep(0.01)
            sub.close()
    assert got == ["a"]
    sub.close()
    assert hub.subscriber_count() == 0
    assert hub.publish_messages(3, "b") == 0
    assert hub.stats()["subscribers"]["total"] == 0
    with pytest.raises(anyio.EndOfStream):
        await sub.get()


async def test_async_context_manager_and_hub_close_end_every_subscription():
    hub = MessageHub()
    async with hub.subscribe_contacts() as contacts:
        other = hub.subscribe_chat(1)
        assert hub.stats()["subscribers"] == {
            "messages": 1,
            "chats": 0,
            "contacts": 1,
            "total": 2,
        }
        hub.close()
        assert contacts.closed and other.closed
        assert hub.subscriber_count() == 0
    # Still usable afterwards.
    with hub.subscribe_chats() as again:
        hub.publish_chats(1)
        assert again.get_nowait() == 1


async def test_publish_never_raises_even_when_a_subscriber_breaks():
    hub = MessageHub()
    sub = hub.subscribe_chats()

    def broken(item: object) -> bool:
        raise RuntimeError("broken")

    sub._offer = broken  # type: ignore[method-assign]
    assert hub.publish_chats({"id": 1}) == 0
    assert hub.stats()["errors"] == 1
    sub.close()


def test_an_inbox_needs_room_for_one():
    with pytest.raises(ValueError):
        MessageHub().subscribe_chats(maxsize=-1)
