"""The daemon's lifetime: one task group that opens the database, serves HTTP and imports.

Startup order: migrate (fatal if it fails), token, listening socket, HTTP, then the ready
line, then the historical import in a worker thread. The import never blocks serving: the
API answers with whatever is already in the database while it runs.

Shutdown (SIGTERM, SIGINT, or the `shutdown` event) is bounded: uvicorn gets a short grace
period for requests in flight, an import still running is asked to stop at its next progress
report, and whatever has not finished by the deadline is abandoned. The import's transaction
then rolls back as after a crash, which ingest is built to survive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import msgspec
import uvicorn

from chatstats import log
from chatstats.api.app import create_app
from chatstats.api.auth import resolve_token
from chatstats.api.server import QuietServer
from chatstats.api.state import AppState, ImportStatus
from chatstats.config import Settings
from chatstats.db import Database
from chatstats.errors import ChatStatsError, MigrationError
from chatstats.library.service import Library

T = TypeVar("T")
logger = log.get(__name__)

# Seconds uvicorn waits for requests in flight before cancelling them, and the whole budget
# for stopping after a signal.
GRACE_SECONDS = 1.0
STOP_DEADLINE_SECONDS = 1.5


def print_ready(info: dict[str, Any]) -> None:
    """The launcher (Electron) reads this one line to learn the port."""
    sys.stdout.write(msgspec.json.encode(info).decode() + "\n")
    sys.stdout.flush()


def open_listener(host: str, port: int) -> socket.socket:
    """A bound TCP socket (port 0: the kernel picks). Made with IPPROTO_TCP explicitly: a
    plain `socket.socket()` made loopback requests ~15x slower here (reference/perf.md)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def http_server(app: Any) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        loop="asyncio",
        ws="none",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    return QuietServer(config)  # idle: no 10/s main-loop tick


async def serve(
    settings: Settings,
    *,
    ready: Callable[[dict[str, Any]], None] | None = None,
    shutdown: anyio.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (when on the main thread) or until `shutdown` is set.

    Nothing reaches stdout before the ready line (a launcher may read just the first
    line): start-up logs are held and follow it; errors still reach stderr at once."""
    announce = ready or print_ready

    def ready_then_logs(info: dict[str, Any]) -> None:
        announce(info)
        log.release()

    log.hold()
    db = Database(settings.db_path)
    try:
        try:
            await db.open()
        except MigrationError as exc:
            logger.critical("database_migration_failed", error=exc.message)
            raise
        await _run(settings, db, ready_then_logs, shutdown or anyio.Event())
    finally:
        log.release()
        db.close()


async def _run(
    settings: Settings,
    db: Database,
    ready: Callable[[dict[str, Any]], None],
    stop: anyio.Event,
) -> None:
    status = ImportStatus(last_summary=await Library(db).last_import_summary())
    state = AppState(
        settings=settings,
        db=db,
        token=resolve_token(settings),
        started_ns=time.time_ns(),
        import_status=status,
        shutdown=stop,
    )
    server = http_server(create_app(state))
    sock = open_listener(settings.host, settings.port)
    port = sock.getsockname()[1]
    stop_import = threading.Event()
    http_done = anyio.Event()
    import_done = anyio.Event()

    async def serve_http() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()
            http_done.set()
            stop.set()  # the server ending on its own ends the daemon too

    async def import_history() -> None:
        try:
            await _import_history(settings, status, stop_import)
        finally:
            import_done.set()
        if not stop.is_set():  # history is in: tail what comes next, seal, keep names fresh
            tg.start_soon(state.search_index.run, stop)  # type: ignore[attr-defined]
            _start_live(tg, settings, state, stop)

    began = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_http)
        if threading.current_thread() is threading.main_thread():
            tg.start_soon(_stop_on_signal, stop, server)
        if settings.parent_pid:
            tg.start_soon(_watch_parent, settings.parent_pid, stop)
        while not server.started and not http_done.is_set():
            await anyio.sleep(0.005)
        if server.started:
            from chatstats.analysis.service import AnalysisService

            # Jobs in flight get 0.5 s at shutdown, then go back to pending (the stop budget).
            state.analysis = AnalysisService(db, state.bus, settings, grace_seconds=0.5)
            tg.start_soon(state.analysis.run, stop)
            if settings.llm_model:  # import LiteLLM (~4 s) now, in a thread, not at first use
                from chatstats import llm

                tg.start_soon(llm.warm_up)
            host = f"[{settings.host}]" if ":" in settings.host else settings.host
            url = f"http://{host}:{port}"
            from chatstats.context import embed, search

            state.search_index = search.SearchIndex(state, embed.from_settings(settings))  # type: ignore[attr-defined]
            ready({"event": "ready", "url": url, "port": port, "pid": os.getpid()})
            logger.info("daemon_ready", port=port)
            tg.start_soon(import_history)

        await stop.wait()
        logger.info("daemon_stopping")
        began = time.monotonic()
        server.should_exit = True
        stop_import.set()
        with anyio.move_on_after(STOP_DEADLINE_SECONDS):
            await http_done.wait()
            if server.started:
                await import_done.wait()
        tg.cancel_scope.cancel()
    logger.info("daemon_stopped", stop_ms=round((time.monotonic() - began) * 1000))


def _start_live(tg: Any, settings: Settings, state: AppState, stop: anyio.Event) -> None:
    """The live tail, the sealer and the AddressBook sync, all owned by the daemon's task
    group; what the tail commits is published here, after the commit."""
    from chatstats.api import live_stats
    from chatstats.ingest.addressbook_sync import AddressBookSync
    from chatstats.ingest.batch import Outcome
    from chatstats.ingest.live import LiveTail
    from chatstats.ingest.tracker import Sealer

    db, bus, hub, metrics = state.db, state.bus, state.hub, state.metrics
    assert bus is not None
    library = Library(db)
    sealer = Sealer(db, bus)
    addressbook = Path(settings.addressbook) if settings.addressbook else None

    async def publish_contacts(contact_ids: list[int]) -> None:
        _messages, _chats, contacts = await library.changes([], [], contact_ids)
        if contacts:
            hub.publish_contacts((await live_stats.payloads(db, [], contacts))[1])

    abook = AddressBookSync(db, addressbook, on_change=publish_contacts)

    async def publish(outcome: Outcome) -> None:
        bus.notify()
        if outcome.sealed_timers_changed:
            sealer.wake()
        if outcome.unknown_identifiers:
            abook.request(list(outcome.unknown_identifiers))
        ids = [*outcome.new_message_ids, *outcome.changed_message_ids]
        ids += [i for i in outcome.reacted_message_ids if i not in set(ids)]
        if not (ids or outcome.chat_ids or outcome.contact_ids):
            return
        messages, chats, contacts = await library.changes(
            ids, outcome.chat_ids, outcome.contact_ids
        )
        by_chat: dict[int, list[Any]] = {}
        for m in messages:
            by_chat.setdefault(m.chat_id, []).append(m)
        for chat_id, items in by_chat.items():
            hub.publish_messages(chat_id, items)
        if chats or contacts:  # with their statistics counts, read once per batch
            chat_load, contact_load = await live_stats.payloads(db, chats, contacts)
            if chats:
                hub.publish_chats(chat_load)
            if contacts:
                hub.publish_contacts(contact_load)

    tail = LiveTail(db, Path(settings.source), publish=publish)

    def observe(outcome: Outcome, counters: Any) -> None:
        metrics.incr("ingest.messages", len(outcome.new_message_ids))
        metrics.incr("ingest.changed", len(outcome.changed_message_ids))

    tail.on_batch = observe
    state.live, state.sealer = tail, sealer
    metrics.gauge("ingest.tail", lambda: msgspec.to_builtins(tail.status))
    tg.start_soon(tail.run, stop)
    tg.start_soon(sealer.run, stop)
    tg.start_soon(abook.run, stop)


def _parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


async def _watch_parent(pid: int, stop: anyio.Event) -> None:
    """Sidecar mode: when the desktop app dies (even by SIGKILL), stop too."""
    original_ppid = os.getppid()
    while not stop.is_set():
        if not _parent_alive(pid) or (pid == original_ppid and os.getppid() != pid):
            logger.warning("parent_exited", parent_pid=pid)
            stop.set()
            return
        with anyio.move_on_after(1.0):
            await stop.wait()


async def _stop_on_signal(stop: anyio.Event, server: uvicorn.Server) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logger.info("signal_received", signal=signal.Signals(signum).name)
            if stop.is_set():
                server.force_exit = True  # a second signal: stop waiting for anyone
            stop.set()


class _ImportStopped(Exception):
    """Raised inside the import (from its progress callback) when the daemon stops."""


async def _import_history(settings: Settings, status: ImportStatus, stop: threading.Event) -> None:
    source = Path(settings.source)
    if not source.exists():
        logger.warning("import_skipped", reason="source_missing")
        status.state, status.error = "failed", f"Messages database not found: {source}"
        return
    try:
        from chatstats.ingest.importer import run_import
    except ImportError:
        logger.error("import_skipped", reason="importer_unavailable")
        status.state, status.error = "failed", "the importer is not available in this build"
        return
    addressbook = Path(settings.addressbook) if settings.addressbook else None
    if addressbook is not None and not addressbook.exists():
        addressbook = None

    def progress(phase: str, done: int, total: int) -> None:
        if stop.is_set():
            raise _ImportStopped
        status.phase, status.done, status.total = phase, done, total

    status.phase, status.done, status.total, status.error = None, 0, 0, None
    status.state = "running"
    logger.info("import_started", addressbook=addressbook is not None)
    began = time.monotonic()
    try:
        summary = await _in_daemon_thread(
            lambda: run_import(settings.db_path, source, addressbook, progress)
        )
    except _ImportStopped:
        status.state, status.error = "failed", "stopped before it finished"
        logger.info("import_stopped")
    except ChatStatsError as exc:  # raised on purpose: its message is safe to show and log
        status.state, status.error = "failed", exc.message
        logger.error("import_failed", code=exc.code, error=exc.message)
    except Exception as exc:
        status.state, status.error = "failed", f"import failed ({type(exc).__name__}); see the log"
        frames = traceback.extract_tb(exc.__traceback__)[-6:]
        logger.error(
            "import_failed",
            error_type=type(exc).__name__,
            where=[f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in frames],
        )
    else:
        status.last_summary = msgspec.to_builtins(summary)
        status.state = "complete"
        logger.info("import_complete", seconds=round(time.monotonic() - began, 2))


async def _in_daemon_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a daemon thread: one that cannot keep the process alive after shutdown,
    unlike anyio's worker threads, because a bulk import may sit in one long SQLite statement
    that no flag can interrupt."""
    token = anyio.lowlevel.current_token()
    done = anyio.Event()
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            with contextlib.suppress(Exception):  # the loop may be gone: nobody is waiting
                anyio.from_thread.run_sync(done.set, token=token)

    threading.Thread(target=body, name="chatstats-import", daemon=True).start()
    await done.wait()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value
