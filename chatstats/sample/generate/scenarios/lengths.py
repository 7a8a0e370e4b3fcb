"""Message lengths around the typedstream length-prefix boundaries (127/128/255/256 bytes, up to
70k).

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.corpus import exact_utf8, rng_words
from chatstats.sample.generate.profiles import SEC

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def lengths(lib: Builder, t: int) -> Iterator[int]:
    chat, h = lib.chat_of("twin_a")
    yield t
    seeds = (
        "So here's the whole story from last night: ",
        "Długa wiadomość — ",
        "長いメッセージ：",
    )
    for i, n in enumerate((127, 128, 129, 255, 256, 300, 5000, 40000, 70000)):
        text = exact_utf8(seeds[i % len(seeds)], n, filler=rng_words(lib.rng))
        lib.send(chat, text, from_me=i % 2 == 0, sender=h, date=t + i * 40 * SEC)
