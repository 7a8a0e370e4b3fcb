"""uvicorn's Server, asleep while nothing happens.

Stock uvicorn wakes its main loop ten times a second, forever, to refresh the Date header
and to look at `should_exit`: the largest share of an idle daemon's wake-ups. Here the
main loop sleeps on an event that setting `should_exit` sets (so shutdown is as prompt as
before, from any thread), and the Date header is computed when a response asks for it,
at most once a second. The daemon's lifespan owns signals, so uvicorn's are not captured.

uvicorn's other per-tick duties, `callback_notify` and `limit_max_requests`, are refused:
the daemon uses neither, and a loop that never ticks could not honour them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from email.utils import formatdate

import uvicorn
from uvicorn.server import ServerState

# A re-check of `should_exit` if a wake-up were ever lost; setting it wakes the loop at once.
MAIN_LOOP_SECONDS = 3600.0
_clock = time.time  # the wall clock the Date header shows (a test moves it)


class LazyDateState(ServerState):
    """`default_headers` with a Date header that is current when read (per-second cache)."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._config = config
        self._second = -1
        self._headers: list[tuple[bytes, bytes]] = []
        super().__init__()

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        second = int(_clock())
        if second != self._second:
            date = formatdate(second, usegmt=True).encode()
            head = [(b"date", date)] if self._config.date_header else []
            self._headers = head + self._config.encoded_headers
            self._second = second
        return self._headers

    @default_headers.setter
    def default_headers(self, value: list[tuple[bytes, bytes]]) -> None:
        """uvicorn assigns once at start-up; the headers are computed from the config anyway."""
        self._second = -1


class QuietServer(uvicorn.Server):
    """A uvicorn Server whose main loop waits for `should_exit` instead of polling it."""

    def __init__(self, config: uvicorn.Config) -> None:
        if config.callback_notify is not None or config.limit_max_requests is not None:
            raise ValueError("QuietServer supports neither callback_notify nor limit_max_requests")
        self._exit_wanted = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._should_exit = False
        super().__init__(config)
        self.server_state = LazyDateState(config)

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        loop = self._loop
        if not value or loop is None:
            return  # main_loop has not started; it looks at the flag before it waits
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._exit_wanted.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to wake
                loop.call_soon_threadsafe(self._exit_wanted.set)

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        while not self.should_exit:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_wanted.wait(), MAIN_LOOP_SECONDS)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
