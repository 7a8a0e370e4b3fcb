"""The HTTP application: routes of every domain behind one gate, one encoder, one error shape.

The gate runs before routing, so a request from a non-loopback Host or without the token
learns nothing, not even which paths exist. Every failure, whether raised on purpose
(`ChatStatsError`), by routing (404/405) or by a bug, leaves as
`{"error": {"code", "message"}}`; a bug's message carries only a request id, which is also
in the log line that records it, never the exception text (it could quote user data).
"""

from __future__ import annotations

import secrets
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatstats import log
from chatstats.api import (
    analysis,
    auth,
    chatbot,
    context,
    feeds,
    imessage,
    openapi,
    search,
    stats,
    streams,
    web,
)
from chatstats.api.common import Paged
from chatstats.api.state import AppState
from chatstats.errors import ChatStatsError, DataError, Forbidden, Unauthorized, public

logger = log.get(__name__)

_ENCODER = msgspec.json.Encoder()

Handler = Callable[[Request], Awaitable[Any]]

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


class ForbiddenHost(Forbidden):
    code = "forbidden_host"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_ENCODER.encode(data), status, headers, media_type="application/json")


def error_response(exc: Exception, request_id: str | None = None) -> Response:
    """The one place an exception becomes an HTTP answer."""
    headers: dict[str, str] | None = None
    if isinstance(exc, ChatStatsError):  # raised on purpose: its message is safe to show
        status, code, message = exc.status, exc.code, exc.message
        if isinstance(exc, Unauthorized):
            headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        code = _HTTP_CODES.get(status, f"http_{status}")
        message = "no such route" if status == 404 else str(exc.detail).lower()
        headers = dict(exc.headers) if exc.headers else None
    else:
        status, code = 500, "internal"
        message = "internal error" + (f" (request {request_id})" if request_id else "")
    return json_response({"error": {"code": code, "message": message}}, status, headers)


async def _handled(request: Request, exc: Exception) -> Response:
    if isinstance(exc, DataError):  # a pure layer's own error: `errors.public` says the status
        exc = public(exc)
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        exc = HTTPException(405, headers={"Allow": _allowed(request.app, request.scope)})
    status = exc.status if isinstance(exc, ChatStatsError) else getattr(exc, "status_code", 500)
    if status >= 500:
        _log_failure(exc, request.scope)
    return error_response(exc, request.scope.get("state", {}).get("request_id"))


def _allowed(app: Starlette, scope: Scope) -> str:
    """Every method the path takes: Starlette's own 405 names only the first route matching
    the path, so `Allow` left out DELETE /api/session and GET /api/analysis/runs."""
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, Route) and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


def _log_failure(exc: BaseException, scope: Scope) -> None:
    """Where it broke, without the exception's text (it may quote message content)."""
    frames = traceback.extract_tb(exc.__traceback__)[-6:]
    logger.error(
        "request_failed",
        error_type=type(exc).__name__,
        code=getattr(exc, "code", None),
        route=_route_path(scope),
        where=[f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in frames],
    )


def _route_path(scope: Scope) -> str | None:
    """The route's template (/api/chats/{id}), never the raw path or query."""
    route = scope.get("route")
    return getattr(route, "path", None)


class _Gate:
    """Host check, bearer token, catch-all for bugs, one log line per request."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if scope["type"] == "websocket":
            if refusal is not None:
                await send({"type": "websocket.close", "code": 1008})
            else:
                await self.app(scope, receive, send)
            return

        request_id = secrets.token_hex(6)
        scope.setdefault("state", {})["request_id"] = request_id
        began = time.perf_counter()
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                if refusal is not None:
                    await error_response(refusal)(scope, receive, send_noting_status)
                else:
                    await self.app(scope, receive, send_noting_status)
            except Exception as exc:
                _log_failure(exc, scope)
                if status == 0:
                    await error_response(exc, request_id)(scope, receive, send_noting_status)
            finally:
                logger.debug(
                    "http_request",
                    method=scope["method"],
                    route=_route_path(scope),
                    status=status,
                    ms=round((time.perf_counter() - began) * 1000, 2),
                )

    def _refusal(self, scope: Scope) -> ChatStatsError | None:
        host = authorization = cookie = origin = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"cookie":
                cookie = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
        if not auth.is_loopback_host(host):
            return ForbiddenHost("the Host header must name this machine (localhost)")
        if scope["type"] == "http" and (_is_open(scope) or web.is_open(scope)):
            return None
        if auth.bearer_matches(authorization, self.token):
            return None
        if auth.cookie_matches(cookie, self.token):
            # The web page's cookie: a state-changing request must also come from the page.
            if scope.get("method", "GET") in auth.SAFE_METHODS or auth.origin_matches_host(
                origin, host
            ):
                return None
            return web.CrossOrigin("a request signed in by cookie must carry this page's Origin")
        return Unauthorized("missing or wrong bearer token")


def _is_open(scope: Scope) -> bool:
    """The health check answers without a token, so a launcher can poll it."""
    return scope["path"] == "/api/health" and scope["method"] in ("GET", "HEAD")


def _json_route(path: str, handler: Handler, methods: tuple[str, ...] = ("GET",)) -> Route:
    async def endpoint(request: Request) -> Response:
        result = await handler(request)
        if isinstance(result, Paged):
            link = None if result.next_url is None else {"Link": f'<{result.next_url}>; rel="next"'}
            return json_response(result.items, headers=link)
        return json_response(result)

    return Route(path, endpoint, methods=list(methods), name=handler.__name__)


def create_app(state: AppState) -> Starlette:
    json_routes = [
        *imessage.ROUTES,
        *search.ROUTES,
        *context.ROUTES,
        *streams.JSON_ROUTES,
        *analysis.ROUTES,
        *stats.ROUTES,
        *chatbot.JSON_ROUTES,
    ]
    app = Starlette(
        routes=[
            *(_json_route(*spec) for spec in json_routes),
            *feeds.ROUTES,
            *streams.ROUTES,
            *chatbot.ROUTES,
            *web.ROUTES,
            Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
        ],
        middleware=[Middleware(_Gate, token=state.token)],
        exception_handlers={ChatStatsError: _handled, DataError: _handled, HTTPException: _handled},
    )
    app.state.chatstats = state
    return app
