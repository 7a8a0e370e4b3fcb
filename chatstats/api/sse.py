"""Server-Sent Events over ASGI, without a third-party library.

A stream ends for one of four reasons: its generator is exhausted (or fails), the client goes
away, the daemon shuts down, or the client stops reading. So the generator, a heartbeat, a
listener for `http.disconnect` and the daemon's shutdown event run in one task group, and
the first to finish cancels the rest (sse-starlette's design, with the shutdown event passed
in rather than held in a global). The listener matters: a generator blocked in `await` on a
quiet topic would otherwise never notice that its client left, and would hold its
subscription forever.

A send that does not complete within `send_timeout` (a client that stopped reading while the
connection stays open) ends the stream too, so a stalled client costs one socket buffer,
not a task and a subscription forever.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from chatstats import errors, log
from chatstats.api import state

logger = log.get(__name__)

HEARTBEAT_EVENT = "heartbeat"
ERROR_EVENT = "error"
DEFAULT_SEND_TIMEOUT = 30.0

_encode_json = msgspec.json.Encoder().encode
_open_streams = 0


def open_streams() -> int:
    """How many SSE responses are running now (a gauge for the metrics snapshot)."""
    return _open_streams


class ServerSentEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event. `data` is encoded as one line of JSON; `retry` is in milliseconds."""

    event: str | None = None
    data: Any = None
    id: int | str | None = None
    retry: int | None = None
    comment: str | None = None


def _field(value: str, name: str) -> str:
    if "\n" in value or "\r" in value or "\x00" in value:
        raise ValueError(f"an SSE {name} cannot contain CR, LF or NUL")
    return value


def encode_event(ev: ServerSentEvent) -> bytes:
    """The wire form. A `data:` line is written whenever there is data or a name, because a
    browser dispatches nothing for an event without data."""
    lines: list[bytes] = []
    if ev.comment is not None:
        lines.extend(b": " + line.encode() for line in ev.comment.splitlines() or [""])
    if ev.id is not None:
        lines.append(b"id: " + _field(str(ev.id), "id").encode())
    if ev.event is not None:
        lines.append(b"event: " + _field(ev.event, "event name").encode())
    if ev.data is not None or ev.event is not None:
        lines.append(b"data: " + _encode_json(ev.data))  # msgspec never emits a raw newline
    if ev.retry is not None:
        lines.append(b"retry: " + str(int(ev.retry)).encode())
    return b"\n".join(lines) + b"\n\n"


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def heartbeat_event() -> ServerSentEvent:
    """Named, with data: the UI's reader listens for `heartbeat` events. No `id:`, so a
    heartbeat never moves the point a reconnecting client resumes from."""
    return ServerSentEvent(event=HEARTBEAT_EVENT, data={"time": utc_now_iso()})


def error_event(code: str, message: str, id: int | str | None = None) -> ServerSentEvent:
    return ServerSentEvent(id=id, event=ERROR_EVENT, data={"code": code, "message": message})


class _ClientGone(Exception):
    """A send failed or timed out: nobody is reading any more."""


class EventSourceResponse(Response):
    """Streams `content` as SSE until it ends, the client leaves or `shutdown` is set.

    If `content` raises, the client gets an `error` event (`{"code", "message"}`; the message
    of a ChatStatsError, a generic one for a bug, whose text is never shown or logged) and
    the stream closes.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterable[ServerSentEvent],
        *,
        heartbeat_seconds: float | None,
        shutdown: anyio.Event | None = None,
        retry_ms: int | None = None,
        send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if heartbeat_seconds is not None and heartbeat_seconds <= 0:
            raise ValueError("heartbeat_seconds must be positive")
        self.content = content
        self.heartbeat_seconds = heartbeat_seconds
        self.shutdown = shutdown
        self.retry_ms = retry_ms
        self.send_timeout = send_timeout
        self.status_code = status_code
        self.background = None
        self.ended_by: str | None = None
        self.init_headers(
            {
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "Content-Type": "text/event-stream; charset=utf-8",
                **(headers or {}),
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        global _open_streams
        _open_streams += 1
        try:
            await self._run(receive, send)
        finally:
            _open_streams -= 1
            closer = getattr(self.content, "aclose", None)
            if closer is not None:
                with anyio.CancelScope(shield=True):
                    await closer()

    async def _run(self, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        lock = anyio.Lock()
        gone = False

        async def emit(chunk: bytes) -> None:
            nonlocal gone
            async with lock:
                try:
                    with anyio.fail_after(self.send_timeout):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except (OSError, TimeoutError):
                    gone = True
                    raise _ClientGone from None

        async with anyio.create_task_group() as tg:

            def first_wins(name: str, fn: Callable[[], Awaitable[None]]) -> None:
                async def run() -> None:
                    try:
                        await fn()
                    except _ClientGone:
                        name_ = "client_gone"
                    else:
                        name_ = name
                    if self.ended_by is None:
                        self.ended_by = name_
                    tg.cancel_scope.cancel()

                tg.start_soon(run)

            first_wins("stream", lambda: self._stream(emit))
            first_wins("disconnect", lambda: _wait_for_disconnect(receive))
            if self.heartbeat_seconds is not None:
                first_wins("heartbeat", lambda: self._heartbeat(emit))
            if self.shutdown is not None:
                first_wins("shutdown", self.shutdown.wait)

        if not gone and self.ended_by != "disconnect":
            with anyio.move_on_after(self.send_timeout):
                with contextlib.suppress(OSError):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, emit: Callable[[bytes], Awaitable[None]]) -> None:
        if self.retry_ms is not None:
            await emit(encode_event(ServerSentEvent(retry=self.retry_ms)))
        try:
            async for ev in self.content:
                await emit(encode_event(ev))
        except _ClientGone:
            raise
        except errors.REPORTED as exc:
            shown = errors.public(exc)
            await emit(encode_event(error_event(shown.code, shown.message)))
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)[-6:]
            logger.error(
                "sse_stream_failed",
                error_type=type(exc).__name__,
                where=[f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in frames],
            )
            await emit(encode_event(error_event("internal", "internal error")))

    async def _heartbeat(self, emit: Callable[[bytes], Awaitable[None]]) -> None:
        assert self.heartbeat_seconds is not None
        while True:
            await anyio.sleep(self.heartbeat_seconds)
            await emit(encode_event(heartbeat_event()))


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def event_stream(request: Request, content: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    """An SSE response with the daemon's heartbeat interval and shutdown signal: every stream
    route (feeds, streams) answers through it, so none imports another route module."""
    app_state = state.of(request)
    return EventSourceResponse(
        content,
        heartbeat_seconds=app_state.settings.heartbeat_seconds,
        shutdown=app_state.shutdown,
    )
