"""The daemon's own web page: its static files and the token -> cookie exchange.

The page cannot keep the bearer token safe (any script on it could read it), so it trades the
token once at `POST /api/session` for an HttpOnly, SameSite=Strict cookie that scripts cannot
read and other sites' pages never send. The page itself and its files need no sign-in: they
hold no data.
"""

from __future__ import annotations

import hmac

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from chatstats.api import auth
from chatstats.api.common import STATIC_DIR, STATIC_FILES
from chatstats.errors import BadRequest, Forbidden, NotFound, Unauthorized

MAX_BODY = 4096


class CrossOrigin(Forbidden):
    code = "cross_origin"


class _SessionBody(msgspec.Struct, forbid_unknown_fields=True):
    token: str


def is_open(scope: Scope) -> bool:
    """The page and its files answer without sign-in; so does the exchange (it checks the token)."""
    path: str = scope["path"]
    method: str = scope["method"]
    if method in ("GET", "HEAD") and (path == "/" or path.startswith("/static/")):
        return True
    return path == "/api/session" and method == "POST"


def _same_origin(request: Request) -> None:
    if not auth.origin_matches_host(request.headers.get("origin"), request.headers.get("host")):
        raise CrossOrigin("a sign-in must come from this page (Origin must match Host)")


async def index(request: Request) -> Response:
    return FileResponse(
        STATIC_DIR / "index.html",
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": (
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
            ),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


async def static(request: Request) -> Response:
    path = STATIC_FILES.get(request.path_params["path"])
    if path is None:
        raise NotFound("no such file")
    return FileResponse(
        path,
        media_type=_TYPES.get(path.suffix),
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


async def sign_in(request: Request) -> Response:
    """Token in a JSON body -> the session cookie. Origin must be this page, so another site
    cannot sign the person's browser in (login CSRF)."""
    _same_origin(request)
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise BadRequest(f"body larger than {MAX_BODY} bytes")
    try:
        body = msgspec.json.decode(raw or b"{}", type=_SessionBody)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid body: {exc}") from None
    except msgspec.DecodeError:
        raise BadRequest("body is not valid JSON") from None
    token = request.app.state.chatstats.token
    if not hmac.compare_digest(body.token.strip().encode(), token.encode()):
        raise Unauthorized("wrong token")
    return Response(
        b'{"signed_in":true}',
        media_type="application/json",
        headers={"Set-Cookie": auth.session_cookie_header(token), "Cache-Control": "no-store"},
    )


async def sign_out(request: Request) -> Response:
    """Drops the cookie in this browser (the gate already checked cookie and Origin)."""
    return Response(
        b'{"signed_in":false}',
        media_type="application/json",
        headers={"Set-Cookie": auth.clear_cookie_header()},
    )


ROUTES = [
    Route("/", index, methods=["GET"]),
    Route("/api/session", sign_in, methods=["POST"]),
    Route("/api/session", sign_out, methods=["DELETE"]),
    Route("/static/{path:path}", static, methods=["GET"]),
]
