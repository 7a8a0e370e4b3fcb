"""Services and senders: one person over iMessage, SMS and email, RCS, an organisation, unknown
numbers, short codes.

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.profiles import MIN

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def services(lib: Builder, t: int) -> Iterator[int]:
    both = lib.p("both")
    im_phone, sms_phone, im_email = both.handles
    yield t
    c_im, c_sms, c_mail = (lib.one_to_one[h] for h in both.handles)
    lib.send(c_im, "¿Vienes a la cena?", from_me=False, sender=im_phone, date=t)
    lib.send(
        c_sms,
        "my iMessage is off, texting instead",
        from_me=False,
        sender=sms_phone,
        date=t + MIN,
    )
    lib.send(c_sms, "got it", from_me=True, date=t + 2 * MIN)
    # A tapback sent to an SMS phone arrives as ordinary text (§4).
    lib.send(c_sms, "Liked “got it”", from_me=False, sender=sms_phone, date=t + 3 * MIN)
    lib.send(c_mail, "sending from my laptop", from_me=False, sender=im_email, date=t + 4 * MIN)
    rcs = lib.p("rcs")
    rcs_chat = lib.one_to_one[rcs.handles[0]]
    lib.send(
        rcs_chat,
        "Hola! this came over RCS" if lib.modern else "Hola!",
        from_me=False,
        sender=rcs.handles[0],
        date=t + 5 * MIN,
    )
    lib.send(rcs_chat, "nice", from_me=True, date=t + 6 * MIN)
    if lib.modern:
        any_chat, any_h = lib.chat_of("any")
        lib.send(any_chat, "مرحبا! new Mac", from_me=False, sender=any_h, date=t + 7 * MIN)
    org = lib.p("org")
    lib.send(
        lib.one_to_one[org.handles[0]],
        "Reminder: cleaning appt Tue 3pm. Reply C to confirm",
        from_me=False,
        sender=org.handles[0],
        date=t + 8 * MIN,
    )
    for i, role in enumerate(("mobile", "shortcode", "email")):
        h = lib.unknown[role].handles[0]
        texts = {
            "mobile": "Hi, is this Sam? Got your number from Jo",
            "shortcode": "Your code is 482913. Don't share it.",
            "email": "Your order has shipped!",
        }
        lib.send(
            lib.one_to_one[h],
            texts[role],
            from_me=False,
            sender=h,
            date=t + (9 + i) * MIN,
            read_delay=None,
        )
    solo = lib.p("solo")
    lib.send(
        lib.one_to_one[solo.handles[0]],
        "Good evening from Lagos",
        from_me=False,
        sender=solo.handles[0],
        date=t + 12 * MIN,
    )
    case = lib.p("case")
    lib.send(
        lib.one_to_one[case.handles[1]],
        "email me the slides",
        from_me=False,
        sender=case.handles[1],
        date=t + 13 * MIN,
    )
    dup = lib.p("dup")
    lib.send(
        lib.one_to_one[dup.handles[0]],
        "Servus!",
        from_me=False,
        sender=dup.handles[0],
        date=t + 14 * MIN,
    )
