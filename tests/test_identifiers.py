"""Phone/e-mail normalisation: the forms people type must meet chat.db's handles."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatstats.imessage.identifiers import is_phone, match_keys, normalize

NANP_FORMATS = [
    "(415) 555-0123",
    "+14155550123",
    "4155550123",
    "1-415-555-0123",
    "+1 (415) 555-0123",
    "415.555.0123",
    "+1 415 555 0123",
    "\u202a+1 (415) 555\u20110123\u202c",  # bidi marks + non-breaking hyphen, as pasted on a Mac
    "１ ４１５ ５５５ ０１２３",  # full-width digits
    "tel:+1-415-555-0123",
    "415-555-0123 ext. 12",
    "415 555 0123,,9",  # dial pauses
]


@pytest.mark.parametrize("raw", NANP_FORMATS)
def test_nanp_formats_meet(raw: str) -> None:
    assert normalize(raw) == "+14155550123"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John@Example.COM", "john@example.com"),
        ("  <JOHN@example.com> ", "john@example.com"),
        ("mailto:John@Example.com", "john@example.com"),
        ("John Smith <John@Example.com>", "john@example.com"),
        ("22395", "22395"),  # short code: a real sender, kept as typed
        ("555", "555"),
        ("urn:biz:A1B2-C3", "urn:biz:a1b2-c3"),
        ("+44 (0) 7700 900123", "+447700900123"),
        ("+44 7700 900123", "+447700900123"),
        ("0044 7700 900123", "+447700900123"),
        ("011 44 7700 900123", "+447700900123"),
        ("07700 900123", "07700900123"),  # national UK form is not NANP: kept as digits
        ("0412 345 678", "0412345678"),  # 10 digits starting 0 (AU mobile): not NANP
        ("555-0123", "5550123"),  # local number without area code
        ("1-800-FLOWERS", "1-800-flowers"),
        ("", None),
        ("   ", None),
        ("()-", None),
    ],
)
def test_normalize_rules(raw: str, expected: str | None) -> None:
    assert normalize(raw) == expected


def test_default_country_code_qualifies_national_numbers() -> None:
    assert normalize("07700 900123", "44") == "+447700900123"
    assert normalize("+44") == "+44"
    assert normalize("4155550123", "+44") == "4155550123"  # not a UK trunk number
    with pytest.raises(ValueError, match="digits"):
        normalize("1", "uk")


def test_match_keys() -> None:
    assert match_keys("+14155550123") == ["+14155550123", "14155550123", "4155550123"]
    # National forms of foreign numbers are not keys: they repeat across countries.
    assert match_keys("+447700900123") == ["+447700900123", "447700900123"]
    assert match_keys("+447700900123", "44") == ["+447700900123", "447700900123", "7700900123"]
    assert match_keys("john@example.com") == ["john@example.com"]
    assert match_keys("22395") == ["22395"]
    assert match_keys("") == []


def test_match_keys_meet_across_storage_forms() -> None:
    # A contact typed "447700900123" (no +) and a chat.db handle "+447700900123".
    assert set(match_keys(normalize("447700900123") or "")) & set(match_keys("+447700900123"))
    # A UK user's contact stored nationally, handle in E.164.
    contact = normalize("7700 900123", "44") or ""
    assert set(match_keys(contact, "44")) & set(match_keys("+447700900123", "44"))
    # Same national digits, different countries: must not meet.
    assert not set(match_keys("+447702345678")) & set(match_keys("+17702345678"))


def test_is_phone() -> None:
    assert is_phone("+14155550123")
    assert is_phone("22395")
    assert not is_phone("john@example.com")
    assert not is_phone("+")


# -- properties -------------------------------------------------------------------------------

_area = st.integers(200, 999).map(str)
_exchange = st.integers(200, 999).map(str)
_line = st.integers(0, 9999).map(lambda n: f"{n:04d}")


@st.composite
def nanp_renderings(draw: st.DrawFn) -> tuple[str, list[str]]:
    a, e, n = draw(_area), draw(_exchange), draw(_line)
    sep = draw(st.sampled_from([" ", "-", ".", "", "\u00a0", "\u2011"]))
    return f"+1{a}{e}{n}", [
        f"({a}) {e}-{n}",
        f"+1{a}{e}{n}",
        f"{a}{e}{n}",
        f"1{sep}{a}{sep}{e}{sep}{n}",
        f"+1 ({a}) {e}{sep}{n}",
    ]


@given(nanp_renderings())
def test_property_nanp_renderings_meet(case: tuple[str, list[str]]) -> None:
    canonical, forms = case
    assert {normalize(f) for f in forms} == {canonical}


_phoneish = st.text(alphabet="0123456789+-() .x,;#", max_size=25)
_emails = st.emails().flatmap(
    lambda e: st.sampled_from([e, e.upper(), f"<{e}>", f"mailto:{e}", f" {e.swapcase()} "])
)


@given(st.one_of(st.text(max_size=40), _phoneish, _emails), st.sampled_from(["1", "44", "49"]))
def test_property_idempotent(raw: str, cc: str) -> None:
    once = normalize(raw, cc)
    if once is not None:
        assert normalize(once, cc) == once
        assert match_keys(once, cc)[0] == once
        assert match_keys(raw, cc) == match_keys(once, cc)


@given(st.emails())
def test_property_emails_case_insensitive(email: str) -> None:
    expected = normalize(email.lower())
    assert normalize(email.upper()) == expected
    assert normalize(email.swapcase()) == expected
    assert expected == email.strip().lower()
