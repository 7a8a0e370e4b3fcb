"""Inline replies: thread_originator_guid and its part index (iOS 14+).

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import SEC

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def replies(lib: Builder, t: int) -> Iterator[int]:
    chat = lib.tapback_group
    a, b = lib.w.chats[chat].handles[:2]
    yield t
    _, root, _ = lib.send(
        chat, "Should we rent a van for the trip?", from_me=False, sender=a, date=t
    )
    lib.send(chat, "unrelated: who has my umbrella", from_me=False, sender=b, date=t + 30 * SEC)
    lib.send(chat, "Yes, a van makes sense", from_me=True, date=t + 60 * SEC, reply_to=root)
    lib.send(chat, "I can drive", from_me=False, sender=b, date=t + 90 * SEC, reply_to=root)
