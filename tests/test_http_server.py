"""The quiet uvicorn Server: shutdown as prompt as stock uvicorn's though its main loop never
ticks, a Date header that is current when a response is sent, and the options it refuses."""

from __future__ import annotations

import threading
from email.utils import formatdate

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from chatstats.api import server as server_module
from chatstats.api.server import QuietServer
from chatstats.daemon import http_server, open_listener

pytestmark = pytest.mark.anyio


def _app() -> Starlette:
    return Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])


async def _serve_until(set_exit, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Serve, make one request, then stop through `set_exit(server)`. The main loop's own
    re-check is an hour away, so only the wake-up can end it inside the guard."""
    monkeypatch.setattr(server_module, "MAIN_LOOP_SECONDS", 3600.0)
    server = http_server(_app())
    assert isinstance(server, QuietServer)
    sock = open_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: server.serve(sockets=[sock]))
            while not server.started:
                await anyio.sleep(0.005)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/")).text == "ok"
            await set_exit(server)
    sock.close()
    assert server.should_exit


async def test_should_exit_set_on_the_loop_ends_the_server(monkeypatch):
    async def on_loop(server: QuietServer) -> None:
        server.should_exit = True

    await _serve_until(on_loop, monkeypatch)


async def test_should_exit_set_from_another_thread_ends_the_server(monkeypatch):
    async def from_thread(server: QuietServer) -> None:
        thread = threading.Thread(target=setattr, args=(server, "should_exit", True))
        thread.start()
        await anyio.to_thread.run_sync(thread.join)

    await _serve_until(from_thread, monkeypatch)


async def test_should_exit_before_serving_never_serves():
    server = http_server(_app())
    server.should_exit = True
    sock = open_listener("127.0.0.1", 0)
    with anyio.fail_after(10):
        await server.serve(sockets=[sock])
    sock.close()
    assert server.started  # started, saw the flag, shut down without waiting


async def test_the_date_header_is_that_of_the_second_the_response_is_sent(monkeypatch):
    clock = [1_700_000_000.25]
    monkeypatch.setattr(server_module, "_clock", lambda: clock[0])
    server = http_server(_app())
    sock = open_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.005)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                first = (await client.get("/")).headers["date"]
                clock[0] += 0.5  # same second: the cached header
                same = (await client.get("/")).headers["date"]
                clock[0] += 3600.0  # an hour on without a single tick in between
                later = (await client.get("/")).headers["date"]
        finally:
            server.should_exit = True
    sock.close()
    assert first == same == formatdate(1_700_000_000, usegmt=True)
    assert later == formatdate(1_700_003_600, usegmt=True)


def test_the_date_header_can_be_turned_off_and_other_headers_are_kept():
    config = uvicorn.Config(_app(), date_header=False, server_header=False, headers=[("x-a", "1")])
    config.load()
    state = server_module.LazyDateState(config)
    assert state.default_headers == [(b"x-a", b"1")]
    state.default_headers = []  # uvicorn's own assignment does not drop them
    assert state.default_headers == [(b"x-a", b"1")]


@pytest.mark.parametrize("option", [{"limit_max_requests": 10}, {"callback_notify": lambda: None}])
def test_per_tick_options_are_refused(option):
    with pytest.raises(ValueError, match="neither callback_notify nor limit_max_requests"):
        QuietServer(uvicorn.Config(_app(), **option))
