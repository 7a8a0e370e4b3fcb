"""Expressive send styles (bubble and screen effects).

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import MIN

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def effects(lib: Builder, t: int) -> Iterator[int]:
    chat, h = lib.chat_of("twin_b")
    yield t
    lib.send(
        chat,
        "HAPPY BIRTHDAY!!!",
        from_me=True,
        date=t,
        effect="com.apple.messages.effect.CKHappyBirthdayEffect",
    )
    lib.send(
        chat,
        "secret 🤫",
        from_me=False,
        sender=h,
        date=t + MIN,
        effect="com.apple.MobileSMS.expressivesend.invisibleink",
    )
    lib.send(
        chat,
        "BOOM",
        from_me=True,
        date=t + 2 * MIN,
        effect="com.apple.MobileSMS.expressivesend.impact",
    )
