"""Apple's timestamps → Unix nanoseconds, exactly (integers only, no float rounding)."""

from __future__ import annotations

# The one definition of Apple's epoch (2001-01-01T00:00:00Z, also Core Data's): everything
# that converts Apple dates (readers, the sample writer, ingest) imports it from here.
APPLE_EPOCH_UNIX_S = 978_307_200
_NS = 1_000_000_000
APPLE_EPOCH_NS = APPLE_EPOCH_UNIX_S * _NS
_EPOCH_NS = APPLE_EPOCH_NS
# Below this a value can only be seconds: 1e11 ns after 2001 is 100 s, no real message date.
SECONDS_LIMIT = 100_000_000_000
_SECONDS_LIMIT = SECONDS_LIMIT


def apple_to_unix_ns(value: int | float | None) -> int | None:
    """Message dates are ns since 2001 (macOS ≥ 10.13) or seconds (older rows); 0 means unset."""
    if not value:
        return None
    if isinstance(value, float):
        value = int(value) if abs(value) >= _SECONDS_LIMIT else round(value * _NS) // _NS
    if abs(value) < _SECONDS_LIMIT:
        return value * _NS + _EPOCH_NS
    return value + _EPOCH_NS


def apple_seconds_to_unix_ns(value: int | float | None) -> int | None:
    """Attachment dates are seconds since 2001 (imessage-exporter divides ns dates to compare)."""
    if not value:
        return None
    return round(value * _NS) + _EPOCH_NS


def unix_ns_to_apple(ns: int) -> int:
    return ns - _EPOCH_NS
