"""Balloons: a rich link with its payload_data plist (and a tapback on it), an app balloon.

A scenario is a generator: it yields the time it wants to run, then writes its rows and
their truth through the builder (`chatstats.sample.generate.builder`)."""

from __future__ import annotations

import plistlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from chatstats.sample.generate.corpus import APP_BALLOON, URLS, url_payload
from chatstats.sample.generate.profiles import MIN, SEC
from chatstats.sample.writer import URL_BALLOON

if TYPE_CHECKING:
    from chatstats.sample.generate.builder import Builder


def balloons(lib: Builder, t: int) -> Iterator[int]:
    chat, h = lib.chat_of("dup")
    yield t
    url, title = URLS[0]
    _, guid, _ = lib.send(
        chat,
        url,
        from_me=False,
        sender=h,
        date=t,
        balloon=URL_BALLOON,
        payload=url_payload(url, title),
    )
    lib.react(chat, guid, 2001, sender=None, date=t + 20 * SEC, form="bp", quoted=url)
    lib.send(
        chat,
        "\ufffd",
        from_me=True,
        date=t + MIN,
        balloon=APP_BALLOON,
        payload=plistlib.dumps({"amount": "20.00", "currency": "USD"}, fmt=plistlib.FMT_BINARY),
    )
