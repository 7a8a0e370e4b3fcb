"""Edited messages: the history of versions in message_summary_info (Ventura+).

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import MIN

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def edits(lib: Builder, t: int) -> Iterator[int]:
    chat, h = lib.chat_of("any") if lib.modern else lib.chat_of("both")
    yield t
    r1, _, m1 = lib.send(chat, "Dinner at 7 at Luigi's", from_me=True, date=t)
    lib.edit(r1, m1, ["Dinner at 7:30 at Luigi's", "Dinner at 8 at Luigi's"], t)
    r2, _, m2 = lib.send(chat, "I'll bring the salad", from_me=False, sender=h, date=t + 2 * MIN)
    lib.edit(
        r2,
        m2,
        ["I'll bring the dessert", "I'll bring dessert 🍰", "I'll bring dessert and wine 🍷"],
        t + 2 * MIN,
    )
    r3, _, m3 = lib.send(chat, "see you tmrw", from_me=True, date=t + 15 * MIN)
    lib.edit(r3, m3, ["see you tomorrow"], t + 15 * MIN)
    r4, _, m4 = lib.send(
        chat, "Old caption", from_me=True, date=t + 20 * MIN, attachments=(lib.image(),)
    )
    lib.edit(r4, m4, ["New caption 📸"], t + 20 * MIN)
