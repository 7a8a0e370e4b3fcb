"""Wake-ups when chat.db or its WAL changes, at no cost while nothing happens.

On Linux: inotify on the *folder* (so a file Messages.app deletes and recreates is still
seen), its descriptor registered with the event loop, so waiting costs nothing. Elsewhere
(macOS): watchfiles' FSEvents watcher on the folder. Either is only a trigger; the live tail
still compares stat fingerprints on a timer and asks SQLite's data_version, so a watcher
that fails or is missing costs latency, never data.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from chatstats import log

logger = log.get(__name__)

_IN_MODIFY = 0x002
# A touch or chmod: the tail's stat fingerprint counts an mtime change, so the watcher does
# too (with a watcher working, the tail's own stat check is slow).
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")


class InotifyWatcher:
    """Calls `on_change` (in the loop) for events on the given file names in one folder."""

    def __init__(self, folder: Path, names: set[str], on_change: Callable[[], None]) -> None:
        self.folder = folder
        self.names = {n.encode() for n in names}
        self.on_change = on_change
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        mask = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
        if libc.inotify_add_watch(fd, os.fsencode(self.folder), mask) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch failed for {self.folder}")
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        hit = False
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if name in self.names:
                hit = True
        if hit:
            self.on_change()

    def close(self) -> None:
        if self._fd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


async def watch(  # type: ignore[no-untyped-def]
    folder: Path,
    names: set[str],
    on_change: Callable[[], None],
    stop,
    started: Callable[[str], None] = lambda _kind: None,
) -> str:
    """Run a watcher until `stop` (an anyio.Event); returns which one ran ('' for none)
    and reports it through `started` as soon as it is watching."""
    if sys.platform.startswith("linux"):
        watcher = InotifyWatcher(folder, names, on_change)
        try:
            watcher.start()
        except OSError as exc:
            logger.warning("live_watch_unavailable", kind="inotify", errno=exc.errno)
            return ""
        started("inotify")
        try:
            await stop.wait()
        finally:
            watcher.close()
        return "inotify"
    try:
        from watchfiles import awatch
    except ImportError:
        return ""
    started("watchfiles")
    async for changes in awatch(
        folder,
        watch_filter=lambda _c, path: os.path.basename(path) in names,
        debounce=5,
        step=20,
        stop_event=stop,
        recursive=False,
        rust_timeout=5000,
        yield_on_timeout=True,
    ):
        if changes:
            on_change()
    return "watchfiles"
