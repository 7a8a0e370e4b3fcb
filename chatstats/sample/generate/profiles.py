"""Schema profiles and eras: which macOS release wrote which kind of row, and when.

The scenarios never write a row before the Apple release that introduced its feature, and
the filler follows each era's mix of `text` / attributedBody bodies; both read these plans.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from chatstats.sample.writer import NS

SEC = NS
MIN = 60 * NS
HOUR = 60 * MIN
DAY = 24 * HOUR
GAP_90 = 90 * MIN  # the conversation boundary the importer uses

# Every quirk the generator guarantees (for ≥ 500 messages), by profile availability.
QUIRKS = (
    "text_null_attributed_only",
    "text_only",
    "text_and_attributed",
    "byte_lengths",
    "tag_bytes_in_text",
    "length_overrun",
    "attachments",
    "corrupt_body",
    "bodyless",
    "tapbacks",
    "replies",
    "edits",
    "unsends",
    "group_events",
    "services",
    "same_person_many_handles",
    "addressbook_quirks",
    "orphans",
    "seconds_dates",
    "effects",
    "audio",
    "url_balloon",
    "gaps_90_min",
    "wal_only_rows",
)


def _utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> int:
    return int(datetime(y, m, d, hh, mm, tzinfo=UTC).timestamp()) * NS


@dataclass(frozen=True)
class Era:
    name: str
    start: int
    end: int
    share: float  # of the filler rows
    body_me: tuple[tuple[str, float], ...]
    body_them: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class _Plan:
    eras: tuple[Era, ...]
    seconds_before: int | None  # rows older than this store seconds (None: profile decides)


_OLD = (("both", 0.65), ("text", 0.35))
_MID = (("both", 0.9), ("text", 0.1))
_VENTURA_ME = (("attributed", 0.97), ("both", 0.03))
_VENTURA_THEM = (("attributed", 0.88), ("both", 0.12))
# Releases that introduced what the scenarios write (rows never predate their feature).
IOS10 = _utc(2016, 9, 13)  # tapbacks, effects, rich links
HIGH_SIERRA = _utc(2017, 9, 25)  # dates in nanoseconds
IOS14 = _utc(2020, 9, 16)  # inline replies
VENTURA = _utc(2022, 10, 24)  # edit/unsend; text only in attributedBody on Macs
IOS18 = _utc(2024, 9, 16)  # emoji/sticker tapbacks, RCS
MACOS26 = _utc(2025, 9, 15)  # Undo Send without date_retracted

PLANS = {
    "sequoia": _Plan(
        (
            Era("old", _utc(2015, 3, 1), HIGH_SIERRA, 0.07, _OLD, _OLD),
            Era("mid", HIGH_SIERRA, VENTURA, 0.18, _MID, _MID),
            Era("ventura", VENTURA, _utc(2025, 11, 20), 0.75, _VENTURA_ME, _VENTURA_THEM),
        ),
        _utc(2016, 9, 1),
    ),
    "sonoma": _Plan(
        (
            Era("old", _utc(2014, 6, 1), HIGH_SIERRA, 0.08, _OLD, _OLD),
            Era("mid", HIGH_SIERRA, VENTURA, 0.22, _MID, _MID),
            Era("ventura", VENTURA, _utc(2024, 6, 1), 0.70, _VENTURA_ME, _VENTURA_THEM),
        ),
        _utc(2016, 1, 1),
    ),
    "legacy": _Plan(
        (
            Era("old", _utc(2011, 10, 12), _utc(2014, 9, 17), 0.3, _OLD, _OLD),
            Era("mid", _utc(2014, 9, 17), _utc(2017, 6, 1), 0.7, _MID, _MID),
        ),
        None,
    ),
}
