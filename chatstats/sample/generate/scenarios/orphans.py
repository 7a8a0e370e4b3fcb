"""Orphans: messages that belong to no chat (no chat_message_join row).

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import MIN

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def orphans(lib: Builder, t: int) -> Iterator[int]:
    h = lib.p("twin_a").handles[0]
    yield t
    lib.send(None, "message with no chat", from_me=False, sender=h, date=t)
    lib.send(None, "my orphan reply", from_me=True, date=t + MIN, handle_id=h)
