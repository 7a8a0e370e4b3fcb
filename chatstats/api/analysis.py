"""Routes of the analysis engine (CONTRACT.md, "Analysis"): passes, runs, coverage, backfill,
results, commitments and jobs.

Handlers parse and check their input, call `AnalysisService`, and shape the answer; the app
encodes it. Bodies are strict JSON objects (unknown keys are a 400, so a misspelt `dry_run`
cannot silently start a real backfill). Times are ISO 8601 UTC, like the iMessage routes.

`ROUTES` holds (path, handler) for GET and (path, handler, ("POST",)) for POST, the form
`app._json_route` takes.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from starlette.requests import Request

from chatstats.analysis.service import AnalysisService, job_json, run_json
from chatstats.api import state
from chatstats.api.common import BackfillRequest, RunRequest, iso_time
from chatstats.api.common import limit as _limit
from chatstats.api.common import path_id as _path_id
from chatstats.api.common import query_int as _query_int
from chatstats.errors import BadRequest, NotFound

MAX_BODY_BYTES = 1_000_000
MAX_CHAT_IDS = 10_000

_RUN_ID = re.compile(r"[0-9a-f]{1,64}")


def service_of(request: Request) -> AnalysisService:
    return state.of(request).analysis


# ---------------------------------------------------------------------------------------------
# Parameters


def _query_text(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    return None if raw is None or raw == "" else raw


async def _body(request: Request, kind: type[Any]) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest("request body too large")
    if not raw.strip():
        raw = b"{}"
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise BadRequest("request body must be a JSON object") from None


def _check_limit(limit: int | None) -> None:
    if limit is not None and not 1 <= limit <= 10_000_000:
        raise BadRequest("limit must be from 1 to 10000000")


# ---------------------------------------------------------------------------------------------
# Shapes


def _timed(d: dict[str, Any]) -> dict[str, Any]:
    """`*_ns` fields as ISO times named `*_at`."""
    out = {}
    for key, value in d.items():
        if key.endswith("_ns"):
            out[key[:-3] + "_at"] = iso_time(value) if value else None
        else:
            out[key] = value
    return out


def _usage(u: dict[str, Any] | None) -> dict[str, Any] | None:
    if u is None:
        return None
    return {
        "prompt_tokens": u["prompt_tokens"],
        "completion_tokens": u["completion_tokens"],
        "total_tokens": u["total_tokens"],
        "cost": u["cost"],
        "calls": u["calls"],
        "failed_calls": u["failed_calls"],
        "unpriced_calls": u["unpriced_calls"],
    }


# ---------------------------------------------------------------------------------------------
# Handlers


async def list_passes(request: Request) -> list[dict[str, Any]]:
    return service_of(request).list_passes()


async def analysis_status(request: Request) -> dict[str, Any]:
    """What /api/health carries under `analysis`, with the queue's counters."""
    return await service_of(request).status()


async def start_run(request: Request) -> dict[str, Any]:
    body: RunRequest = await _body(request, RunRequest)
    _check_limit(body.limit)
    if body.chat_ids is not None and len(body.chat_ids) > MAX_CHAT_IDS:
        raise BadRequest(f"at most {MAX_CHAT_IDS} chat_ids")
    run = await service_of(request).start_run(
        passes=body.passes,
        chat_ids=body.chat_ids,
        limit=body.limit,
        kind=body.kind,
        force=body.force,
    )
    return _timed(run_json(run))


async def list_runs(request: Request) -> list[dict[str, Any]]:
    return [_timed(r) for r in await service_of(request).list_runs(_limit(request))]


async def get_run(request: Request) -> dict[str, Any]:
    run_id = request.path_params["run_id"]
    if not _RUN_ID.fullmatch(run_id):
        raise NotFound(f"no analysis run {run_id[:64]}")
    out = _timed(await service_of(request).get_run(run_id))
    out["usage"] = _usage(out.get("usage"))
    return out


async def coverage(request: Request) -> dict[str, Any]:
    return await service_of(request).coverage(_query_int(request, "chat_id"))


async def missing(request: Request) -> list[dict[str, Any]]:
    items = await service_of(request).missing(
        chat_id=_query_int(request, "chat_id"),
        pass_name=_query_text(request, "pass"),
        limit=_limit(request),
    )
    for item in items:
        item["conversations"] = [
            {
                "conversation_id": c["conversation_id"],
                "chat_id": c["chat_id"],
                "start_time": iso_time(c["start_ns"]),
                "end_time": iso_time(c["end_ns"]),
                "message_count": c["message_count"],
                "job_state": c["job_state"],
            }
            for c in item["conversations"]
        ]
    return items


async def backfill(request: Request) -> dict[str, Any]:
    """`pass`: a pass name, a list of them, or absent / "all" for every enabled pass."""
    body: BackfillRequest = await _body(request, BackfillRequest)
    _check_limit(body.limit)
    names: list[str] | None
    if body.pass_ is None or body.pass_ == "all":
        names = None
    elif isinstance(body.pass_, str):
        names = [body.pass_]
    else:
        names = body.pass_
    return await service_of(request).backfill(names, dry_run=body.dry_run, limit=body.limit)


async def conversation_analyses(request: Request) -> list[dict[str, Any]]:
    items = await service_of(request).conversation_analyses(_path_id(request))
    return [_timed(i) for i in items]


async def commitments(request: Request) -> list[dict[str, Any]]:
    """Newest first; `chat_id`, `status` (open, done, cancelled, unknown), `before_id`."""
    items = await service_of(request).commitments(
        chat_id=_query_int(request, "chat_id"),
        status=_query_text(request, "status"),
        limit=_limit(request),
        before_id=_query_int(request, "before_id"),
    )
    return [_timed(i) for i in items]


async def list_jobs(request: Request) -> list[dict[str, Any]]:
    """Newest first; `state` (pending, running, done, dead), `before_id`."""
    jobs = await service_of(request).jobs(
        state=_query_text(request, "state"),
        limit=_limit(request),
        before_id=_query_int(request, "before_id"),
    )
    return [_timed(job_json(j)) for j in jobs]


async def retry_job(request: Request) -> dict[str, Any]:
    job = await service_of(request).retry(_path_id(request))
    return _timed(job_json(job))


ROUTES: list[tuple[Any, ...]] = [
    ("/api/analysis/passes", list_passes),
    ("/api/analysis/status", analysis_status),
    ("/api/analysis/runs", list_runs),
    ("/api/analysis/runs", start_run, ("POST",)),
    ("/api/analysis/runs/{run_id}", get_run),
    ("/api/analysis/coverage", coverage),
    ("/api/analysis/missing", missing),
    ("/api/analysis/backfill", backfill, ("POST",)),
    ("/api/conversations/{id:int}/analyses", conversation_analyses),
    ("/api/commitments", commitments),
    ("/api/analysis/jobs", list_jobs),
    ("/api/analysis/jobs/{id:int}/retry", retry_job, ("POST",)),
]
