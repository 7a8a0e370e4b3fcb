"""The real app under uvicorn on 127.0.0.1 (an ephemeral port), for tests that need real HTTP
in-process: one copy of the start, wait-until-started and shutdown-first stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
from starlette.applications import Starlette

from chatstats.api.state import AppState
from chatstats.daemon import http_server, open_listener


@asynccontextmanager
async def serving(
    app: Starlette, state: AppState, *, headers: dict[str, str], timeout: float = 30
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app`; on exit the app's shutdown event is set before uvicorn stops, so
    open streams end the way they do when the daemon stops."""
    server = http_server(app)
    sock = open_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: server.serve(sockets=[sock]))
            with anyio.fail_after(5):
                while not server.started:
                    await anyio.sleep(0.005)
            try:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=timeout
                ) as client:
                    yield client
            finally:
                state.shutdown.set()
                server.should_exit = True
    finally:
        sock.close()
