"""A scripted OpenAI-compatible server, so tests and benchmarks drive the real LiteLLM client.

Mocking LiteLLM would test our assumptions about it; a server on 127.0.0.1 tests LiteLLM
itself: its error mapping, its usage and cost plumbing, its streaming. The server runs its
own event loop in a background thread, so it works the same from sync tests, async tests
(whatever their loop) and scripts, and a test's loop never has to serve it.

    with FakeLLM() as fake:
        fake.script([RateLimit(retry_after=2), ServerError(503)])
        ... LLMConfig(model="openai/fake", api_base=fake.base_url) ...

Each request takes the next scripted item, or asks the responder when the script is empty.
The default responder answers any `response_format` JSON schema with a valid object, so
every analysis pass gets a well-formed answer without per-pass fixtures. Embeddings
(`/v1/embeddings`) get deterministic 8-dim vectors; the same faults apply to them, with
`Malformed` a 200 without the vectors and `BadJSONBody` a body cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# --- scripted behaviours -------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """Answer 200 with this content (a dict or list is sent as its JSON)."""

    content: Any
    finish_reason: str = "stop"
    # Streamed answers only: a pause before each content chunk, so a client can leave
    # mid-answer (a test of a reader that disconnects).
    chunk_delay_s: float = 0.0


@dataclass(frozen=True)
class ToolCalls:
    """Answer with tool calls, as a model asking for a tool does (finish_reason "tool_calls").

    `calls` holds (name, arguments) pairs: a dict is sent as its JSON, a str verbatim (so a
    test can send malformed arguments). Streamed, each call's arguments arrive in pieces.
    """

    calls: tuple[tuple[str, Any], ...]
    content: str = ""


@dataclass(frozen=True)
class RateLimit:
    """429. `retry_after` goes into the Retry-After header: seconds, or an HTTP-date string."""

    retry_after: float | str | None = 1


@dataclass(frozen=True)
class ServerError:
    status: int = 500


@dataclass(frozen=True)
class ClientError:
    """A 4xx other than 429, e.g. 400 for a request the provider rejects."""

    status: int = 400


@dataclass(frozen=True)
class Timeout:
    """Hold the request this long before answering: set it above the client's timeout."""

    seconds: float = 5.0


@dataclass(frozen=True)
class Malformed:
    """A 200 whose message content is not JSON, as a model ignoring its instructions gives."""

    content: str = "Sure! Here is what I found: {not json"


@dataclass(frozen=True)
class BadJSONBody:
    """A 200 whose HTTP body itself is not JSON (a broken proxy, a truncated response)."""

    body: bytes = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": ['


@dataclass(frozen=True)
class Disconnect:
    """Close the connection without answering."""


Fault = (
    Reply
    | ToolCalls
    | RateLimit
    | ServerError
    | ClientError
    | Timeout
    | Malformed
    | BadJSONBody
    | Disconnect
)
Responder = Callable[[dict[str, Any]], Any]


@dataclass
class RecordedRequest:
    path: str
    model: str | None
    messages: int
    stream: bool
    response_format: bool
    body: dict[str, Any] = field(repr=False)
    started: float = 0.0


# --- answers built from a JSON schema ---------------------------------------------------------


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in node and seen < 32:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return {}
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target
        seen += 1
    return node


def example_for_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A value that validates against `schema` (the subset structured outputs use)."""
    root = schema if root is None else root
    node = _resolve(schema, root)
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        if node.get(key):
            options = [_resolve(o, root) for o in node[key]]
            non_null = [o for o in options if o.get("type") != "null"]
            return example_for_schema((non_null or options)[0], root)
    if node.get("allOf"):
        merged: dict[str, Any] = {}
        for part in node["allOf"]:
            merged.update(_resolve(part, root))
        return example_for_schema(merged, root)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in node else "string"
    if kind == "object":
        props = node.get("properties", {})
        return {name: example_for_schema(sub, root) for name, sub in props.items()}
    if kind == "array":
        count = max(int(node.get("minItems", 1)), 1)
        if "maxItems" in node:
            count = min(count, int(node["maxItems"]))
        if isinstance(node.get("prefixItems"), list):
            return [example_for_schema(s, root) for s in node["prefixItems"]]
        items = node.get("items", {"type": "string"})
        return [example_for_schema(items, root) for _ in range(count)]
    if kind in ("integer", "number"):
        low = node.get("minimum", node.get("exclusiveMinimum"))
        high = node.get("maximum", node.get("exclusiveMaximum"))
        value: float = 1
        if low is not None:
            value = low + (1 if "exclusiveMinimum" in node else 0)
        if high is not None and value > high:
            value = high - (1 if "exclusiveMaximum" in node else 0)
        if kind == "integer":
            return math.ceil(value) if low is not None else math.floor(value)
        return value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    fmt = node.get("format")
    if fmt == "date-time":
        return "2024-01-02T03:04:05Z"
    if fmt == "date":
        return "2024-01-02"
    text = "example"
    min_len = int(node.get("minLength", 0))
    if len(text) < min_len:
        text = text + "x" * (min_len - len(text))
    if "maxLength" in node:
        text = text[: int(node["maxLength"])]
    return text


def default_responder(request: dict[str, Any]) -> Any:
    """Schema-valid JSON when the request asks for a schema; a short sentence otherwise."""
    fmt = request.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        return example_for_schema(schema)
    if fmt.get("type") == "json_object":
        return {"answer": "example"}
    return "This is a reply from the fake model."


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _prompt_tokens(messages: list[Any]) -> int:
    total = 0
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        total += 4 + _tokens(content if isinstance(content, str) else json.dumps(content))
    return total + 3


def _embeddings(payload: dict[str, Any]) -> dict[str, Any]:
    """Deterministic 8-dim vectors (from a hash of each input) in the OpenAI embeddings shape."""
    raw = payload.get("input")
    inputs = [raw] if isinstance(raw, str) else list(raw or [])
    data = []
    for i, text in enumerate(inputs):
        digest = hashlib.sha256(str(text).encode()).digest()
        data.append({"object": "embedding", "index": i, "embedding": [b / 255 for b in digest[:8]]})
    tokens = sum(_tokens(str(t)) for t in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {
        "object": "list",
        "data": data,
        "model": str(payload.get("model") or "fake"),
        "usage": usage,
    }


# --- the server -----------------------------------------------------------------------------

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _Drop(Exception):
    """The handler closes the connection without a response."""


class FakeLLM:
    """See the module docstring. Thread-safe: script and inspect it from any thread."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency_s: float = 0.0,
        stream_chunk_chars: int = 8,
        host: str = "127.0.0.1",
    ) -> None:
        self.responder: Responder = responder or default_responder
        self.latency_s = latency_s
        self.stream_chunk_chars = max(1, stream_chunk_chars)
        self.host = host
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- control --

    @property
    def base_url(self) -> str:
        """What to give LiteLLM as `api_base` (OpenAI clients append /chat/completions)."""
        return f"http://{self.host}:{self.port}/v1"

    def script(self, items: Iterable[Fault]) -> FakeLLM:
        """Queue behaviours for the next requests, first in first out."""
        with self._lock:
            self._script.extend(items)
        return self

    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.max_in_flight = self.in_flight

    def start(self) -> FakeLLM:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._connection, self.host, 0)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-llm", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the server and drop held requests; safe to call twice."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeLLM:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP --

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                method, path, headers, body = request
                keep_alive = headers.get("connection", "").lower() != "close"
                try:
                    await self._dispatch(reader, writer, method, path, body)
                except _Drop:
                    break
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
            self._tasks.discard(task)

    async def _read_request(
        self, reader: asyncio.StreamReader
    ) -> tuple[str, str, dict[str, str], bytes] | None:
        line = await reader.readline()
        if not line:
            return None
        parts = line.decode("latin-1").strip().split(" ")
        if len(parts) < 2:
            return None
        method, path = parts[0].upper(), parts[1].split("?", 1)[0]
        headers: dict[str, str] = {}
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    await reader.readline()
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)
        else:
            length = int(headers.get("content-length", "0") or 0)
            body = await reader.readexactly(length) if length else b""
        return method, path, headers, body

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        extra: dict[str, str] | None = None,
    ) -> None:
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
            f"content-type: {content_type}",
            f"content-length: {len(body)}",
            "x-request-id: fake",
        ]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    async def _send_error(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        message: str,
        kind: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
        await self._send(writer, status, json.dumps(body).encode(), extra=extra)

    async def _dispatch(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        body: bytes,
    ) -> None:
        if method == "GET" and path.rstrip("/") in ("/v1/models", "/models"):
            models = {"object": "list", "data": [{"id": "fake", "object": "model"}]}
            await self._send(writer, 200, json.dumps(models).encode())
            return
        if method != "POST" or path.rstrip("/") not in (
            "/v1/chat/completions",
            "/chat/completions",
            "/v1/embeddings",
            "/embeddings",
        ):
            await self._send_error(writer, 404, "not found", "not_found")
            return
        try:
            payload = json.loads(body or b"{}")
            if not isinstance(payload, dict):
                raise ValueError
        except ValueError:
            await self._send_error(
                writer, 400, "request body is not a JSON object", "invalid_request"
            )
            return
        messages = payload.get("messages") or []
        recorded = RecordedRequest(
            path=path,
            model=payload.get("model"),
            messages=len(messages) if isinstance(messages, list) else 0,
            stream=bool(payload.get("stream")),
            response_format=payload.get("response_format") is not None,
            body=payload,
            started=time.monotonic(),
        )
        with self._lock:
            self.requests.append(recorded)
            item = self._script.popleft() if self._script else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s > 0:
                await asyncio.sleep(self.latency_s)
            await self._answer(reader, writer, payload, item)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        payload: dict[str, Any],
        item: Fault | None,
    ) -> None:
        if isinstance(item, Timeout):
            # Hold the request, but notice the client giving up so it stops counting as
            # in flight (benchmarks and concurrency assertions read `max_in_flight`).
            try:
                if await asyncio.wait_for(reader.read(1), timeout=item.seconds) == b"":
                    raise _Drop
            except TimeoutError:
                pass
            item = None
        if isinstance(item, Disconnect):
            raise _Drop
        if isinstance(item, RateLimit):
            extra = {} if item.retry_after is None else {"retry-after": _header(item.retry_after)}
            await self._send_error(
                writer, 429, "Rate limit reached for requests", "rate_limit_exceeded", extra
            )
            return
        if isinstance(item, ServerError):
            await self._send_error(writer, item.status, "The server had an error", "server_error")
            return
        if isinstance(item, ClientError):
            await self._send_error(writer, item.status, "Invalid request", "invalid_request_error")
            return
        if "input" in payload and "messages" not in payload:
            if isinstance(item, BadJSONBody):  # a body cut short: not JSON at all
                await self._send(writer, 200, b'{"object": "list", "data": [{"embedding": [0.1,')
            elif isinstance(item, Malformed):  # JSON, but not the vectors asked for
                bad = {**_embeddings(payload), "data": []}
                await self._send(writer, 200, json.dumps(bad).encode())
            else:
                await self._send(writer, 200, json.dumps(_embeddings(payload)).encode())
            return
        stream = bool(payload.get("stream"))
        if isinstance(item, BadJSONBody):
            if stream:
                await self._send_stream_raw(writer, [b"data: {not json at all\n\n"])
            else:
                await self._send(writer, 200, item.body)
            return
        finish = "stop"
        delay = 0.0
        if item is None:
            answer = self.responder(payload)
            item = answer if isinstance(answer, Reply | ToolCalls) else Reply(answer)
        tool_calls: list[dict[str, Any]] = []
        if isinstance(item, Reply):
            content, finish, delay = item.content, item.finish_reason, item.chunk_delay_s
        elif isinstance(item, ToolCalls):
            content, finish = item.content, "tool_calls"
            for name, arguments in item.calls:
                raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
                n = next(self._ids)
                tool_calls.append(
                    {"id": f"call_fake{n}", "type": "function",
                     "function": {"name": name, "arguments": raw}}
                )  # fmt: skip
        else:  # Malformed
            content = item.content
        text = content if isinstance(content, str) else json.dumps(content)
        model = str(payload.get("model") or "fake")
        called = "".join(c["function"]["name"] + c["function"]["arguments"] for c in tool_calls)
        usage = {
            "prompt_tokens": _prompt_tokens(payload.get("messages") or []),
            "completion_tokens": _tokens(text + called),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        ident = f"chatcmpl-fake{next(self._ids)}"
        created = int(time.time())
        if not stream:
            response = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": text if text or not tool_calls else None,
                            "refusal": None,
                            **({"tool_calls": tool_calls} if tool_calls else {}),
                        },
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            }
            await self._send(writer, 200, json.dumps(response).encode())
            return
        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        step = self.stream_chunk_chars
        pieces = [text[i : i + step] for i in range(0, len(text), step)]
        if not pieces and not tool_calls:
            pieces = [""]

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
            body: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            if include_usage:
                body["usage"] = None
            return b"data: " + json.dumps(body).encode() + b"\n\n"

        events: list[bytes | float] = [chunk({"role": "assistant", "content": ""}, None)]
        for p in pieces:
            if delay > 0:
                events.append(delay)
            events.append(chunk({"content": p}, None))
        for index, call in enumerate(tool_calls):
            raw = call["function"]["arguments"]
            head = {**call, "index": index, "function": {"name": call["function"]["name"],
                                                         "arguments": ""}}  # fmt: skip
            events.append(chunk({"tool_calls": [head]}, None))
            for i in range(0, len(raw), step):
                piece = {"index": index, "function": {"arguments": raw[i : i + step]}}
                events.append(chunk({"tool_calls": [piece]}, None))
        events.append(chunk({}, finish))
        if include_usage:
            final = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            events.append(b"data: " + json.dumps(final).encode() + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        await self._send_stream_raw(writer, events)

    async def _send_stream_raw(
        self, writer: asyncio.StreamWriter, events: list[bytes] | list[bytes | float]
    ) -> None:
        """Send the events chunked; a float in the list is a pause of that many seconds."""
        head = (
            "HTTP/1.1 200 OK\r\n"
            "content-type: text/event-stream; charset=utf-8\r\n"
            "cache-control: no-cache\r\n"
            "transfer-encoding: chunked\r\n\r\n"
        )
        writer.write(head.encode("latin-1"))
        for event in events:
            if isinstance(event, float):
                await asyncio.sleep(event)
                continue
            writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _header(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)
