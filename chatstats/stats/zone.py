"""The statistics' time zone: CHATSTATS_TIMEZONE, else the system's own IANA zone."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chatstats.errors import BadRequest


def system_zone_name() -> str:
    """TZ, else the zone /etc/localtime links to (macOS and Linux both do), else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        return tz
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return "UTC"
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else "UTC"


def resolve(name: str | None) -> ZoneInfo:
    """An IANA zone by name; an unknown name is a clear BadRequest, never a silent UTC."""
    name = name or system_zone_name()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadRequest(
            f"unknown time zone {name!r} (CHATSTATS_TIMEZONE wants an IANA name)"
        ) from exc
