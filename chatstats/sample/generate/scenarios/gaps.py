"""Gaps around the 90-minute conversation boundary, to the nanosecond.

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import DAY, GAP_90, MIN, SEC

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def gaps(lib: Builder, t: int) -> Iterator[int]:
    chat, h = lib.gap_chat, lib.p("gap").handles[0]
    step = SEC if not lib.w.profile.ns_dates else 1
    yield t
    lib.send(chat, "free for a call later?", from_me=False, sender=h, date=t)
    t2 = t + 2 * MIN
    lib.send(chat, "after 5", from_me=True, date=t2)
    t3 = t2 + GAP_90  # exactly 90 minutes: still the same conversation
    yield t3
    lib.send(chat, "ok calling now", from_me=False, sender=h, date=t3)
    t4 = t3 + GAP_90 + step  # 90 min + 1 ns (1 s on seconds profiles): a new one
    yield t4
    lib.send(chat, "thanks for the chat!", from_me=True, date=t4)
    t5 = t4 + 3 * DAY
    yield t5
    lib.send(chat, "coffee next week?", from_me=False, sender=h, date=t5)
    lib.send(chat, "yes!", from_me=True, date=t5 + 20 * SEC)
