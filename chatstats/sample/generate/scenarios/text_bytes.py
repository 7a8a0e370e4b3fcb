"""Text whose bytes look like typedstream tags, plus bodies whose length prefix overruns the text.

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import MIN, SEC

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def text_bytes(lib: Builder, t: int) -> Iterator[int]:
    chat, h = lib.chat_of("case")
    yield t
    texts = (
        "Ȅ is 0xC8 0x84 in UTF-8",
        "Ɔ ends in 0x86, ↄ has 86 84 inside",
        "\x01+ starts like a typedstream string",
        "+1 for that \x01+ idea",
        "streamtyped NSMutableAttributedString NSString iI",
        "e\u0301 vs é (combining accent)",
        "zero\u200dwidth joiner and \u200fRTL mark",
        "مرحبا بالعالم — hello in Arabic",
        "שלום עולם",
        "👨‍👩‍👧‍👦👍🏽🇯🇵",
        "漢字とかなと한글, Привет, नमस्ते, สวัสดี, Γειά σου",
        "tab\there and a\nnewline",
    )
    for i, text in enumerate(texts):
        lib.send(chat, text, from_me=i % 3 == 0, sender=h, date=t + i * 30 * SEC)
    # Real Messages.app bodies whose string length prefix overruns the text: into the
    # runs, across the one-byte/0x81 prefix boundary, past the blob's end, and before a
    # caption's attachment run. The text is recoverable, so the truth keeps it.
    body = "attributed" if lib.profile != "legacy" else "both"
    t = t + len(texts) * 30 * SEC
    overruns = (
        ("the length says more than this", 7),
        ("Ɔ and ᆄ\x02iI right before the runs", 120),
        ("past the end of the blob 🫠", 100_000),
    )
    for i, (text, extra) in enumerate(overruns):
        lib.send(
            chat,
            text,
            from_me=i % 2 == 1,
            sender=h,
            date=t + i * 30 * SEC,
            body=body,
            length_overrun=extra,
        )
    lib.send(
        chat,
        "caption under an overrunning length",
        from_me=False,
        sender=h,
        date=t + 2 * MIN,
        body=body,
        attachments=(lib.image(),),
        length_overrun=40,
    )
