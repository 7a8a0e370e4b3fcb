"""Corrupt attributedBody blobs, with and without a `text` fallback.

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import MIN

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def corrupt(lib: Builder, t: int) -> Iterator[int]:
    chat, h = lib.chat_of("dup")
    yield t
    attributed_only = "attributed" if lib.profile != "legacy" else "both"
    lib.send(
        chat,
        "this blob is damaged beyond repair",
        from_me=False,
        sender=h,
        date=t,
        body=attributed_only,
        corrupt=True,
    )
    lib.send(
        chat,
        "damaged blob but the text column survives",
        from_me=False,
        sender=h,
        date=t + MIN,
        body="both",
        corrupt=True,
    )
