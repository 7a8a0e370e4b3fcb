"""Routes of the statistics (CONTRACT.md, "Statistics"): parse, check, ask the service.

`since` and `until` are ISO 8601 instants (a naive one is UTC); anything else, a reversed
range, an unknown zone or an out-of-range year is a 400, an unknown chat or contact a 404.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from chatstats.api import state
from chatstats.errors import BadRequest
from chatstats.stats.service import Stats
from chatstats.stats.zone import resolve

_DIGITS = re.compile(r"[0-9]{1,19}")
_MAX_ID = 2**63 - 1


def parse_time(raw: str | None, name: str) -> int | None:
    """ISO 8601 to epoch ns (microsecond precision); empty is absent."""
    if raw is None or raw == "":
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 time, e.g. 2024-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if not -_MAX_ID - 1 <= ns <= _MAX_ID:  # SQLite's integers: else an OverflowError, a 500
        raise BadRequest(f"{name} must fall between 1677-09-22 and 2262-04-11")
    return ns


def _range(request: Request) -> tuple[int | None, int | None]:
    since = parse_time(request.query_params.get("since"), "since")
    until = parse_time(request.query_params.get("until"), "until")
    if since is not None and until is not None and since > until:
        raise BadRequest("since must not be after until")
    return since, until


def _id(request: Request) -> int:
    raw = request.path_params["id"]
    if _DIGITS.fullmatch(raw) is None or not 1 <= int(raw) <= _MAX_ID:
        raise BadRequest("id must be a positive integer")
    return int(raw)


def service(request: Request) -> Stats:
    app_state = state.of(request)
    return Stats(app_state.db, resolve(app_state.settings.timezone))


async def overview(request: Request) -> dict[str, Any]:
    return await service(request).overview(*_range(request))


async def chat_stats(request: Request) -> dict[str, Any]:
    chat_id = _id(request)
    return await service(request).chat(chat_id, *_range(request))


async def contact_stats(request: Request) -> dict[str, Any]:
    contact_id = _id(request)
    return await service(request).contact(contact_id, *_range(request))


async def wrapped(request: Request) -> dict[str, Any]:
    stats = service(request)
    raw = request.query_params.get("year")
    if raw is None or raw == "":
        year = datetime.now(stats.zone).year
    elif re.fullmatch(r"[0-9]{4}", raw) and 1971 <= int(raw) <= 2261:
        year = int(raw)
    else:
        raise BadRequest("year must be a four-digit year from 1971 to 2261")
    return await stats.wrapped(year)


ROUTES = [
    ("/api/stats/overview", overview),
    ("/api/stats/chats/{id}", chat_stats),
    ("/api/stats/contacts/{id}", contact_stats),
    ("/api/stats/wrapped", wrapped),
]
