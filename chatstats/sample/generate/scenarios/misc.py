"""Odd rows seen on real Macs: a message sent from another device (handle_id 0), a subject line.

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import MIN

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def misc(lib: Builder, t: int) -> Iterator[int]:
    chat, h = lib.chat_of("twin_a")
    yield t
    # A sent message typed on another device: handle_id 0 even in a 1:1 chat (§3).
    lib.send(chat, "sent from my iPad", from_me=True, date=t, handle_id=0)
    lib.send(
        chat,
        "with a subject line",
        from_me=False,
        sender=h,
        date=t + MIN,
        subject="Re: Saturday",
    )
