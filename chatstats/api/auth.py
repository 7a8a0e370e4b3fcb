"""Who may talk to the daemon: a local client that knows the token.

The daemon listens on loopback, but a web page in the person's browser can still reach
loopback ports, and DNS rebinding can make such a page look same-origin. So every request must
name a loopback host in its Host header and (except the health check) carry the bearer token
that only processes able to read the data directory know.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from chatstats import log
from chatstats.config import Settings

logger = log.get(__name__)

TOKEN_FILE = "api-token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def resolve_token(settings: Settings) -> str:
    """The configured token, else the one saved in the data directory, else a new one saved
    there (0600, in a 0700 directory) for clients on this machine to read."""
    if settings.token:
        return settings.token
    directory = Path(settings.data_dir)
    path = directory / TOKEN_FILE
    existing = _read_token(path)
    if existing:
        return existing
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    # Write a private temporary file, then link it into place: the link fails if another
    # process got there first, so two daemons starting together agree on one token.
    tmp = directory / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(token + "\n")
        if path.exists():  # present but empty: replace it
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return _read_token(path) or token
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("api_token_created")
    return token


def _read_token(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    if text and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
        logger.warning("api_token_permissions_fixed")
    return text or None


def host_name(header: str) -> str | None:
    """The name part of a Host header (lower case, IPv6 brackets removed), None if malformed."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and _is_port(rest[1:])):
            return None
        return name
    if value.count(":") > 1:  # a bare IPv6 address such as ::1
        return value
    name, sep, port = value.partition(":")
    if sep and not _is_port(port):
        return None
    return name


def _is_port(text: str) -> bool:
    return text == "" or (text.isascii() and text.isdigit() and len(text) <= 5)


def is_loopback_host(header: str | None) -> bool:
    return header is not None and host_name(header) in LOOPBACK_NAMES


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token`, compared in constant time."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


SESSION_COOKIE = "chatstats_session"
_SESSION_LABEL = b"chatstats web session v1"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_value(token: str) -> str:
    """The session cookie's value: derived from the token, so it changes when the token does
    and the daemon keeps no session table; it cannot be turned back into the token."""
    return hmac.new(token.encode(), _SESSION_LABEL, "sha256").hexdigest()


def cookie_matches(header: str | None, token: str) -> bool:
    """Whether a Cookie header carries the session cookie for `token` (constant time)."""
    if not header:
        return False
    expected = session_value(token).encode()
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == SESSION_COOKIE and hmac.compare_digest(value.strip().encode(), expected):
            return True
    return False


def session_cookie_header(token: str) -> str:
    """Set-Cookie for the web page: HttpOnly (scripts cannot read it), SameSite=Strict (other
    sites' pages do not send it), Path=/ and no expiry (it lasts the browser session)."""
    return f"{SESSION_COOKIE}={session_value(token)}; HttpOnly; SameSite=Strict; Path=/"


def clear_cookie_header() -> str:
    return f"{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"


def origin_matches_host(origin: str | None, host: str | None) -> bool:
    """Whether an Origin header names this very host (http://<Host>): a state-changing request
    that rides on the cookie must come from the daemon's own page."""
    if not origin or not host:
        return False
    return origin.strip().lower() == f"http://{host.strip().lower()}"
