"""Rows of the oldest era: bodies in `text` alone or in both columns, as older Macs wrote them.

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import MIN, SEC

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def old_rows(lib: Builder, t: int) -> Iterator[int]:
    chat, h = lib.chat_of("both")
    yield t
    lib.send(chat, "hey are you coming tonight?", from_me=False, sender=h, date=t, body="text")
    lib.send(chat, "Yes! Leaving in 10", from_me=True, date=t + 50 * SEC, body="both")
    lib.send(chat, "cool see you there", from_me=False, sender=h, date=t + 3 * MIN, body="both")
    lib.send(chat, "👍", from_me=True, date=t + 4 * MIN, body="text")
