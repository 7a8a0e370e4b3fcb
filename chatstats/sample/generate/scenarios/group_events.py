"""Group events: members added, removed and leaving, the group renamed, its photo changed and
removed.

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import MIN
from chatstats.sample.writer import AttachmentSpec

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def group_events(lib: Builder, t: int) -> Iterator[int]:
    chat = lib.member_group
    a, b, c = lib.w.chats[chat].handles[:3]
    d = lib.member_pool[0]
    yield t
    lib.send(chat, "new group who dis", from_me=False, sender=a, date=t)
    lib.event("participant_added", chat, sender=None, date=t + MIN, handle=d)
    lib.send(chat, "hi all! thanks for adding me", from_me=False, sender=d, date=t + 2 * MIN)
    lib.event("participant_removed", chat, sender=a, date=t + 3 * MIN, handle=b)
    lib.event("renamed", chat, sender=c, date=t + 4 * MIN, title="Weekend Crew 🏕️")
    lib.event("participant_left", chat, sender=c, date=t + 5 * MIN)
    photo = AttachmentSpec("GroupPhoto.jpeg", "image/jpeg", "public.jpeg", 245_310)
    lib.event("photo_changed", chat, sender=a, date=t + 6 * MIN, photo=photo)
    lib.event("renamed", chat, sender=None, date=t + 7 * MIN, title="Camping 2025")
    lib.event("photo_removed", chat, sender=None, date=t + 8 * MIN)
    lib.send(chat, "see you all saturday", from_me=True, date=t + 9 * MIN)
    # The owner leaving a different group: handle_id 0, is_from_me 1.
    other = lib.left_group
    first = lib.w.chats[other].handles[0]
    lib.send(other, "project's done, leaving this one", from_me=True, date=t + 10 * MIN)
    lib.send(other, "bye!", from_me=False, sender=first, date=t + 11 * MIN)
    lib.event("participant_left", other, sender=None, date=t + 12 * MIN)
