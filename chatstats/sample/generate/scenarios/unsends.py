"""Unsent messages: rows emptied by an unsend, including macOS 26's shape.

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import MIN, SEC

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def unsends(lib: Builder, t: int) -> Iterator[int]:
    chat, h = lib.chat_of("both")
    yield t
    r1, _, m1 = lib.send(chat, "oops wrong chat", from_me=True, date=t)
    lib.unsend(r1, m1, t + 40 * SEC)
    r2, _, m2 = lib.send(chat, "ignore that", from_me=False, sender=h, date=t + 2 * MIN)
    lib.unsend(r2, m2, t + 3 * MIN, macos26=lib.modern)
    lib.send(chat, "all good", from_me=True, date=t + 4 * MIN)
