"""People and their handles: one person, many identifiers, typed differently in Contacts.

Contacts stores phones in many formats while chat.db stores E.164; the ids here keep the
two in step so the truth can say which handles are the same person.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from chatstats.sample.generate.corpus import EMAIL_DOMAINS, INTL, US_AREA

# ----------------------------------------------------------------------------- people


@dataclass
class Person:
    first: str | None
    last: str | None
    org: str | None = None
    nickname: str | None = None
    lang: str = "en"
    phone: str | None = None  # E.164 as chat.db stores it
    phone_ab: str | None = None  # as typed into Contacts
    country: str = "us"
    email: str | None = None  # chat.db handle id
    email_ab: str | None = None  # as typed into Contacts
    extra_ab_phones: list[str] = field(default_factory=list)
    extra_ab_emails: list[str] = field(default_factory=list)
    in_ab: bool = True
    source: int = 0  # index of the AddressBook Source holding the card
    also_source: int | None = None  # the same person's second card in another Source
    services: tuple[str, ...] = ("iMessage",)  # services the phone handle exists on
    email_handle: bool = False
    handles: list[int] = field(default_factory=list)
    key: str = ""

    @property
    def name(self) -> str | None:
        if not self.in_ab:
            return None
        full = " ".join(x for x in (self.first, self.last) if x)
        return full or self.org


def us_formats(e164: str) -> tuple[str, ...]:
    a, e, line = e164[2:5], e164[5:8], e164[8:]
    return (
        f"({a}) {e}-{line}",
        f"{a}-{e}-{line}",
        f"+1 ({a}) {e}-{line}",
        f"+1 {a} {e} {line}",
        f"{a}{e}{line}",
        f"1 ({a}) {e}-{line}",
        f"{a}.{e}.{line}",
        e164,
        f"1-{a}-{e}-{line}",
    )


class Ids:
    """Unique phone numbers and e-mail addresses for generated people."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def us_phone(self) -> tuple[str, str]:
        while True:
            e164 = f"+1{self.rng.choice(US_AREA)}555{self.rng.randrange(10000):04d}"
            if e164 not in self.used:
                self.used.add(e164)
                return e164, self.rng.choice(us_formats(e164))

    def intl_phone(self) -> tuple[str, str, str]:
        while True:
            prefix, n, country, formats = self.rng.choice(INTL)
            d = "".join(str(self.rng.randrange(10)) for _ in range(n))
            e164 = prefix + d
            if e164 not in self.used:
                self.used.add(e164)
                digits = iter(d)
                typed = "".join(
                    next(digits) if ch == "#" else ch for ch in self.rng.choice(formats)
                )
                return e164, typed, country

    def email(self, first: str, last: str) -> tuple[str, str]:
        base = "".join(
            ch for ch in f"{first}.{last}".lower() if ch.isascii() and (ch.isalnum() or ch == ".")
        )
        base = base.strip(".") or "user"
        while True:
            suffix = "" if self.rng.random() < 0.5 else str(self.rng.randrange(10, 99))
            address = f"{base}{suffix}@{self.rng.choice(EMAIL_DOMAINS)}"
            if address not in self.used:
                self.used.add(address)
                typed = address
                if self.rng.random() < 0.3:  # Contacts keeps whatever case was typed
                    local, domain = address.split("@")
                    typed = f"{local.title()}@{domain.capitalize()}"
                return address, typed
