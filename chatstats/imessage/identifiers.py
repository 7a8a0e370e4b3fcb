"""Phone and e-mail normalisation, so chat.db handles meet the numbers people type into Contacts.

chat.db stores handles as E.164 (``+14155550123``) or e-mail addresses; Contacts keeps whatever
the user typed (``(415) 555-0123``, ``+44 (0) 7700 900123``, ``John@Example.com``).  Both sides
go through :func:`normalize`, then :func:`match_keys` supplies the few extra forms under which an
international number and a number stored without its country code still meet.

Rules of :func:`normalize` (``cc`` = ``default_country_code``, digits only):

* Invisible format characters (bidi marks that Contacts and copy/paste insert) are dropped and
  the value is stripped; an empty result is ``None``.
* **E-mail** (contains ``@``): an address inside ``Name <addr>`` is taken, surrounding ``<>``
  and a ``mailto:`` prefix are removed, the rest is lower-cased.
* **Phone** (only digits, spaces, ``+ - . / ( ) [ ]`` and dashes, after Unicode NFKC, an
  optional ``tel:`` prefix, and cutting a dial-string tail — ``,`` / ``;`` pauses or an
  ``ext``/``x`` extension — which is not part of the messaging address).  Any script's decimal
  digits count as digits.  Then:

  - leading ``+`` → ``+`` + digits; a national trunk ``(0)`` after the country code
    (``+44 (0) 7700 …``) is dropped;
  - ``00`` + non-zero digit (ITU international prefix), or ``011`` when ``cc`` is ``1``
    (NANP international prefix), → ``+`` + the rest, when at least 7 digits remain;
  - ``cc`` = ``1``: 10 digits whose first digit is 2–9 → ``+1`` + digits; 11 digits ``1`` +
    2–9 … → ``+`` + digits (a 10-digit number starting 0/1 is not NANP, e.g. an Australian
    mobile, and is left alone);
  - other ``cc``: a single trunk ``0`` followed by at least 6 digits → ``+cc`` + the rest;
  - anything else with at least 7 digits stays **digits only** (we cannot know its country;
    :func:`match_keys` lets it meet the ``+`` form);
  - fewer than 7 digits → the digits as-is: short codes (``22395``) are real senders;
  - no digits at all → ``None``.
* **Anything else** (``urn:biz:…`` business ids, vanity numbers like ``1-800-FLOWERS``, names
  typed into a phone field) → stripped and lower-cased.

``normalize`` is idempotent, so stored identifiers can be normalised again without drift.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["is_phone", "match_keys", "normalize"]

MIN_PHONE_DIGITS = 7
"""Shorter digit strings are short codes or partial numbers and are matched only exactly."""

_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"
_PHONE_PUNCT = frozenset("+-./()[] \t" + _DASHES)
_DIAL_TAIL = re.compile(r"[,;]|(?:\s*(?:ext\.?|extension|x)\s*\d+\s*$)", re.IGNORECASE)
_TRUNK_ZERO = re.compile(r"\(\s*0\s*\)")
_ANGLE_ADDR = re.compile(r"<([^<>]*@[^<>]*)>")
_MAILTO = "mailto:"
_TEL = "tel:"


def _drop_format_chars(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def _clean_cc(default_country_code: str) -> str:
    cc = default_country_code.strip().lstrip("+")
    if not cc.isascii() or not cc.isdigit():
        raise ValueError(f"default_country_code must be digits, got {default_country_code!r}")
    return cc


def _normalize_email(text: str) -> str:
    match = _ANGLE_ADDR.search(text)
    if match:
        text = match.group(1)
    previous = None
    while previous != text:
        previous = text
        text = text.strip().strip("<>").strip()
        if text[: len(_MAILTO)].lower() == _MAILTO:
            text = text[len(_MAILTO) :]
    return text.lower()


def _phone_parts(text: str) -> tuple[bool, str] | None:
    """Split a phone-looking string into (had a leading +, ASCII digits), or None if not phone.

    Only a leading ``+`` marks an international number; a ``+`` elsewhere is typing noise.
    """
    candidate = unicodedata.normalize("NFKC", text).strip()
    if candidate[: len(_TEL)].lower() == _TEL:
        candidate = candidate[len(_TEL) :].strip()
    tail = _DIAL_TAIL.search(candidate)
    if tail:
        candidate = candidate[: tail.start()]
    has_plus = candidate.lstrip(" \t([").startswith("+")
    if has_plus:
        candidate = _TRUNK_ZERO.sub("", candidate)
    digits: list[str] = []
    for ch in candidate:
        if unicodedata.category(ch) == "Nd":
            digits.append(str(unicodedata.digit(ch)))
        elif ch not in _PHONE_PUNCT and not ch.isspace():
            return None
    return has_plus, "".join(digits)


def _normalize_phone(has_plus: bool, digits: str, cc: str) -> str:
    if has_plus:
        return "+" + digits
    if len(digits) < MIN_PHONE_DIGITS:
        return digits
    if digits.startswith("00") and digits[2:3] not in ("", "0"):
        rest = digits[2:]
        if len(rest) >= MIN_PHONE_DIGITS:
            return "+" + rest
    if cc == "1":
        if digits.startswith("011") and len(digits) - 3 >= MIN_PHONE_DIGITS:
            return "+" + digits[3:]
        if len(digits) == 10 and digits[0] in "23456789":
            return "+1" + digits
        if len(digits) == 11 and digits[0] == "1" and digits[1] in "23456789":
            return "+" + digits
    elif digits[0] == "0" and digits[1] != "0":
        return "+" + cc + digits[1:]
    return digits


def normalize(raw: str, default_country_code: str = "1") -> str | None:
    """Bring a handle or a typed contact value to one canonical form; ``None`` if it is empty.

    ``default_country_code`` is the country whose national formats the user types without a
    country code (``"1"`` for NANP, ``"44"`` for the UK …).  See the module docstring for the
    exact rules.
    """
    cc = _clean_cc(default_country_code)
    text = _drop_format_chars(raw).strip()
    if not text:
        return None
    if "@" in text:
        return _normalize_email(text) or None
    if text[:4].lower() == "urn:":
        return text.lower()
    parts = _phone_parts(text)
    if parts is None:
        return text.lower()
    has_plus, digits = parts
    if not digits:
        return None
    return _normalize_phone(has_plus, digits, cc)


def is_phone(normalized: str) -> bool:
    """True for a normalised phone number or short code (``+digits`` or ``digits``)."""
    body = normalized[1:] if normalized.startswith("+") else normalized
    return bool(body) and body.isascii() and body.isdigit()


def match_keys(normalized: str, default_country_code: str = "1") -> list[str]:
    """Keys under which to index a contact identifier and look up a chat.db handle.

    Two identifiers belong to the same address when their key lists intersect.  The first key
    is always the canonical form; resolvers should try keys in order and prefer an earlier hit,
    so an exact E.164 match always beats a national-form match.

    * e-mail, ``urn:`` and other non-phone values, short codes, and digits-only numbers:
      just the value itself;
    * ``+<digits>``: itself, the bare digits (a contact typed ``447700900123`` without ``+``),
      and — only when the number is in ``default_country_code`` — the national number without
      the country code (``+14155550123`` → ``4155550123``).

    Why not the national form of *foreign* numbers (``+447700900123`` → ``7700900123`` for a US
    user)?  National numbers repeat across countries: ``+44 7702 345678`` and
    ``+1 770-234-5678`` would share ``7702345678``, so a handle could be attributed to the
    wrong person.  A user who stores a foreign number without its country code has typed it
    the way their own phone could not dial it either; :func:`normalize` already qualifies
    trunk-``0`` numbers of the default country (``07700 900123`` with cc ``44``).
    """
    value = normalize(normalized, default_country_code)
    if value is None:
        return []
    if not value.startswith("+") or not is_phone(value):
        return [value]
    digits = value[1:]
    keys = [value]
    if len(digits) >= MIN_PHONE_DIGITS:
        keys.append(digits)
        cc = _clean_cc(default_country_code)
        national = digits[len(cc) :]
        if digits.startswith(cc) and len(national) >= MIN_PHONE_DIGITS:
            keys.append(national)
    return keys
