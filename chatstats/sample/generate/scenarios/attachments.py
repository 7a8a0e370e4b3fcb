"""Attachments: bodyless images, captions, several at once with tapbacks on a part, a nameless
file, a PDF, a played voice message.

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import MIN, SEC
from chatstats.sample.writer import AttachmentSpec

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def attachments(lib: Builder, t: int) -> Iterator[int]:
    chat, h = lib.chat_of("twin_b")
    yield t
    lib.send(chat, None, from_me=False, sender=h, date=t, attachments=(lib.image(),))
    lib.send(
        chat,
        "Look at this view 🏔️",
        from_me=True,
        date=t + 30 * SEC,
        attachments=(lib.image("jpeg"),),
    )
    trio = (lib.image(), lib.image(), lib.image("png"))
    _, multi, _ = lib.send(
        chat, "three from the hike", from_me=False, sender=h, date=t + MIN, attachments=trio
    )
    # Tapbacks on body parts other than 0: the second image and the text (part 3).
    lib.react(chat, multi, 2000, sender=None, date=t + 2 * MIN, part=1, quoted="an image")
    lib.react(
        chat,
        multi,
        2003,
        sender=None,
        date=t + 2 * MIN + 5 * SEC,
        part=3,
        quoted="three from the hike",
    )
    if lib.can_reply:
        lib.send(
            chat,
            "this one is the best",
            from_me=True,
            date=t + 3 * MIN,
            reply_to=multi,
            reply_part=1,
        )
    # Attachment rows without a body, and one whose file path is unknown.
    lib.send(
        chat,
        None,
        from_me=False,
        sender=h,
        date=t + 4 * MIN,
        body="none",
        attachments=(lib.image("mov"),),
    )
    nameless = AttachmentSpec("IMG_0001.jpeg", "image/jpeg", "public.jpeg", 123_456, filename=None)
    lib.send(chat, None, from_me=False, sender=h, date=t + 5 * MIN, attachments=(nameless,))
    lib.send(
        chat,
        "here's the pass",
        from_me=True,
        date=t + 6 * MIN,
        attachments=(lib.image("pdf"),),
    )
    rowid, _, _ = lib.send(
        chat,
        None,
        from_me=False,
        sender=h,
        date=t + 7 * MIN,
        attachments=(lib.audio_spec(),),
        audio=True,
    )
    yield t + 8 * MIN
    lib.w.play(rowid, t + 8 * MIN)
