"""Tapbacks in a group: all classic kinds at once, emoji ones, a changed one, added then removed,
every removal kind.

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import MIN, SEC

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def tapbacks(lib: Builder, t: int) -> Iterator[int]:
    chat = lib.tapback_group
    a, b, c, d, e = lib.w.chats[chat].handles[:5]
    yield t
    t1_text, t2_text, t3_text, t4_text, t5_text = (
        "Who's in for tacos Friday?",
        "I booked the table for 8",
        "Bring cash, they don't take cards",
        "Parking is a nightmare there",
        "Running late, save me a seat",
    )
    _, t1, _ = lib.send(chat, t1_text, from_me=False, sender=a, date=t)
    _, t2, _ = lib.send(chat, t2_text, from_me=False, sender=b, date=t + 20 * SEC)
    _, t3, _ = lib.send(chat, t3_text, from_me=True, date=t + 40 * SEC)
    _, t4, _ = lib.send(chat, t4_text, from_me=True, date=t + 60 * SEC)
    _, t5, _ = lib.send(chat, t5_text, from_me=False, sender=c, date=t + 80 * SEC)
    s = t + 2 * MIN
    # All six classic tapbacks active at once, one of them from me.
    lib.react(chat, t1, 2000, sender=b, date=s, quoted=t1_text)
    lib.react(chat, t1, 2001, sender=c, date=s + 1 * SEC, quoted=t1_text)
    lib.react(chat, t1, 2002, sender=d, date=s + 2 * SEC, quoted=t1_text)
    lib.react(chat, t1, 2003, sender=e, date=s + 3 * SEC, quoted=t1_text)
    lib.react(chat, t1, 2004, sender=None, date=s + 4 * SEC, quoted=t1_text)
    lib.react(chat, t2, 2005, sender=a, date=s + 5 * SEC, quoted=t2_text)
    if lib.can_emoji:
        lib.react(chat, t2, 2006, sender=c, date=s + 6 * SEC, emoji="🌮", quoted=t2_text)
        lib.react(chat, t2, 2007, sender=d, date=s + 7 * SEC, quoted=t2_text)
    # A changed tapback: liked, then loved → only loved remains.
    lib.react(chat, t3, 2001, sender=e, date=s + 10 * SEC, quoted=t3_text)
    lib.react(chat, t3, 2000, sender=e, date=s + 12 * SEC, quoted=t3_text)
    # Added then removed → nothing remains.
    lib.react(chat, t3, 2003, sender=a, date=s + 14 * SEC, quoted=t3_text)
    lib.react(chat, t3, 3003, sender=a, date=s + 16 * SEC, quoted=t3_text)
    # Every removal kind, each after its add.
    senders = (a, b, c, d, e)
    last_kind = 8 if lib.can_emoji else 6
    for k in range(last_kind):
        who = senders[k % 5]
        emoji = "🔥" if k == 6 else None
        lib.react(
            chat,
            t4,
            2000 + k,
            sender=who,
            date=s + (20 + 4 * k) * SEC,
            quoted=t4_text,
            emoji=emoji,
        )
        lib.react(
            chat,
            t4,
            3000 + k,
            sender=who,
            date=s + (22 + 4 * k) * SEC,
            quoted=t4_text,
            emoji=emoji,
        )
    # Bare-GUID target form.
    lib.react(chat, t5, 2000, sender=d, date=s + 60 * SEC, form="bare", quoted=t5_text)
    # Old-style replacement: the add row is deleted when the removal arrives (§5).
    rowid, _ = lib.react(chat, t5, 2001, sender=b, date=s + 70 * SEC, quoted=t5_text)
    yield s + 80 * SEC
    lib.w.delete(rowid)
    lib.rows -= 1
    lib.deleted += 1
    lib.tapback_rows -= 1
    lib.react(chat, t5, 3001, sender=b, date=s + 80 * SEC, quoted=t5_text)
