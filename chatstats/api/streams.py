"""SSE 4–6 (CONTRACT.md): EventBus streams and runtime metrics, plus `GET /api/metrics`.

EventBus streams are resumable: every event goes out with `id: <event id>` and
`event: <type>`, and a client that reconnects with `Last-Event-ID` (or `start_id`) continues
strictly after that id. Ids become visible in commit order (see `events.bus`), so the
resumed stream has neither a gap nor a repeat. `Last-Event-ID` wins over `start_id`,
because it is what the client last actually received. When the log has been trimmed past
that id (it keeps the newest 200k events), or the id is not one this log ever gave (a
replaced data directory), the stream says so instead of skipping ahead: it sends
`event: reset` with `{"requested_id", "first_id"}` (where the log now starts) and goes on
from the oldest event kept. A reader that falls behind a trim mid-stream is told the same.

Start points: the queue stream starts at "now" unless told otherwise (the seeds' `$`); the
generic stream starts at the beginning of what is kept (the seeds' `0`). Filtering by scope
and run_id happens in SQL, not in the client.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
from starlette.requests import Request
from starlette.routing import Route

from chatstats.api import state
from chatstats.api.common import MAX_ID, iso_time
from chatstats.api.sse import (
    EventSourceResponse,
    ServerSentEvent,
    event_stream,
    open_streams,
    utc_now_iso,
)
from chatstats.errors import BadRequest
from chatstats.events.bus import DEFAULT_STREAM, Event, EventBus, Reset

RESET_EVENT = "reset"
MAX_PARAM_CHARS = 200
MAX_SCOPES = 50
READ_BATCH = 500
DEFAULT_METRICS_INTERVAL = 2.0
MIN_METRICS_INTERVAL = 0.1
MAX_METRICS_INTERVAL = 3600.0

_DIGITS = re.compile(r"[0-9]{1,19}")
_SECONDS = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?")


def event_json(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "scope": e.scope,
        "type": e.type,
        "run_id": e.run_id,
        "data": e.data,
        "created_at": iso_time(e.created_ns),
    }


# ---------------------------------------------------------------------------------------------
# Parameters


def _start_after(request: Request) -> int | Literal["$"] | None:
    """The id to continue after: `Last-Event-ID`, else `start_id`; None when neither is given.

    Accepted: an event id, `0` (everything kept; also the Redis spelling `0-0`) and `$`
    (only new events). Redis's time-based ids mean nothing here and are refused.
    """
    raw = request.headers.get("last-event-id", "").strip()
    name = "Last-Event-ID"
    if not raw:
        raw, name = request.query_params.get("start_id", "").strip(), "start_id"
    if not raw:
        return None
    if raw == "$":
        return "$"
    if raw == "0-0":
        return 0
    if _DIGITS.fullmatch(raw) is None or int(raw) > MAX_ID:
        raise BadRequest(f"{name} must be an event id, 0 or $")
    return int(raw)


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    if len(value) > MAX_PARAM_CHARS:
        raise BadRequest(f"{name} is longer than {MAX_PARAM_CHARS} characters")
    return value or None


def _scopes(request: Request) -> list[str] | None:
    """`scope=a&scope=b` or `scope=a,b`; exact matches, OR-ed."""
    scopes: list[str] = []
    for value in request.query_params.getlist("scope"):
        scopes.extend(s.strip() for s in value.split(",") if s.strip())
    if len(scopes) > MAX_SCOPES:
        raise BadRequest(f"at most {MAX_SCOPES} scopes")
    if any(len(s) > MAX_PARAM_CHARS for s in scopes):
        raise BadRequest(f"a scope is longer than {MAX_PARAM_CHARS} characters")
    return scopes or None


def _interval(request: Request) -> float:
    raw = request.query_params.get("interval", "").strip()
    if not raw:
        return DEFAULT_METRICS_INTERVAL
    if _SECONDS.fullmatch(raw) is None or not (
        MIN_METRICS_INTERVAL <= float(raw) <= MAX_METRICS_INTERVAL
    ):
        raise BadRequest(
            f"interval must be seconds from {MIN_METRICS_INTERVAL} to {MAX_METRICS_INTERVAL:g}"
        )
    return float(raw)


# ---------------------------------------------------------------------------------------------
# EventBus streams


async def follow_events(
    bus: EventBus,
    after_id: int,
    *,
    stream: str | None,
    scopes: list[str] | None,
    run_id: str | None,
) -> AsyncIterator[ServerSentEvent]:
    """The log's events as SSE; a `reset` event where the position reached is gone."""
    async for item in bus.follow(
        after_id, stream=stream, scopes=scopes, run_id=run_id, limit=READ_BATCH
    ):
        if isinstance(item, Reset):
            yield reset_event(item)
        else:
            yield ServerSentEvent(id=item.id, event=item.type, data=event_json(item))


def reset_event(reset: Reset) -> ServerSentEvent:
    """`reset {requested_id, first_id}`. Its `id:` is the position just before the log's
    start, so a client that reconnects after it resumes there and is not told again."""
    return ServerSentEvent(
        id=reset.first_id - 1,
        event=RESET_EVENT,
        data={"requested_id": reset.requested_id, "first_id": reset.first_id},
    )


async def _bus_stream(
    request: Request, stream: str, default: Literal["$", 0]
) -> EventSourceResponse:
    bus = state.of(request).bus
    scopes, run_id = _scopes(request), _text(request, "run_id")
    start = _start_after(request)
    if start is None:
        start = default
    after_id = await bus.last_id() if start == "$" else start
    return event_stream(
        request, follow_events(bus, after_id, stream=stream, scopes=scopes, run_id=run_id)
    )


async def queue_stream(request: Request) -> EventSourceResponse:
    """SSE 4: `task_events:analysis`, from now unless `Last-Event-ID`/`start_id` say otherwise."""
    return await _bus_stream(request, DEFAULT_STREAM, "$")


async def named_stream(request: Request) -> EventSourceResponse:
    """SSE 5: any stream by name, from the oldest kept event unless told otherwise. Takes the
    same `scope` and `run_id` filters as SSE 4."""
    stream_key: str = request.path_params["stream_key"]
    if not stream_key or len(stream_key) > MAX_PARAM_CHARS:
        raise BadRequest(f"stream_key must be 1 to {MAX_PARAM_CHARS} characters")
    return await _bus_stream(request, stream_key, 0)


# ---------------------------------------------------------------------------------------------
# Metrics


async def runtime_snapshot(request: Request) -> dict[str, Any]:
    """Registered metrics plus the hub, the event log and open SSE streams (ids and counts)."""
    app_state = state.of(request)
    snap = app_state.metrics.snapshot()
    snap["time"] = utc_now_iso()
    snap["hub"] = app_state.hub.stats()
    snap["event_log"] = {
        "last_id": await app_state.bus.last_id(),
        "notifications": app_state.bus.notifications,
    }
    snap["sse"] = {"open_streams": open_streams()}
    return snap


async def metrics_json(request: Request) -> dict[str, Any]:
    """`GET /api/metrics`: the same snapshot the stream sends."""
    return await runtime_snapshot(request)


async def metrics_stream(request: Request) -> EventSourceResponse:
    """SSE 6: a `metrics` event now and every `interval` seconds (default 2)."""
    interval = _interval(request)

    async def snapshots() -> AsyncIterator[ServerSentEvent]:
        for n in itertools.count(1):
            yield ServerSentEvent(id=n, event="metrics", data=await runtime_snapshot(request))
            await anyio.sleep(interval)

    return event_stream(request, snapshots())


# JSON routes in the (path, handler) form app.py wraps with `_json_route`; SSE routes as Routes.
JSON_ROUTES = [("/api/metrics", metrics_json)]

ROUTES = [
    Route("/api/analysis/streaming/queue/stream", queue_stream, methods=["GET"]),
    Route("/api/analysis/streaming/redis_stream/{stream_key}", named_stream, methods=["GET"]),
    Route("/api/metrics/stream", metrics_stream, methods=["GET"]),
]
