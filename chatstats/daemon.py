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

from chatstats import errors, log
from chatstats import metrics as metrics_module
from chatstats.api.app import create_app
from chatstats.api.auth import resolve_token
from chatstats.api.server import QuietServer
from chatstats.api.state import BUS_FALLBACK_SECONDS, AppState, ImportStatus
from chatstats.config import Settings
from chatstats.db import Database
from chatstats.errors import MigrationError
from chatstats.events.bus import EventBus
from chatstats.events.hub import MessageHub
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
        # uvicorn annotates int but hands it to asyncio.wait_for, which takes seconds as float.
        timeout_graceful_shutdown=GRACE_SECONDS,  # type: ignore[arg-type]
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
    state = _compose(settings, db, stop)
    status = state.import_status
    status.last_summary = await state.library.last_import_summary()
    await _seed(state)
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
            if state.search_index is not None:
                tg.start_soon(state.search_index.run, stop)
            if state.live is not None:
                tg.start_soon(state.live.run, stop)

    began = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_http)
        if state.embed_calls is not None:  # flushed once more when the group is cancelled
            tg.start_soon(state.embed_calls.run, db)
        if threading.current_thread() is threading.main_thread():
            tg.start_soon(_stop_on_signal, stop, server)
        if settings.parent_pid:
            tg.start_soon(_watch_parent, settings.parent_pid, stop)
        while not server.started and not http_done.is_set():
            await anyio.sleep(0.005)
        if server.started:
            tg.start_soon(state.analysis.run, stop)
            if settings.llm_model:  # import LiteLLM (~4 s) now, in a thread, not at first use
                from chatstats import llm

                tg.start_soon(llm.warm_up)
            host = f"[{settings.host}]" if ":" in settings.host else settings.host
            url = f"http://{host}:{port}"
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


def _compose(settings: Settings, db: Database, stop: anyio.Event) -> AppState:
    """The composition root: every long-lived service, built once, before the app serves.

    The app only reads what is here; tasks start later (analysis once HTTP listens, live sync
    and the vector index once the import is in)."""
    from chatstats import llm
    from chatstats.analysis.service import AnalysisService
    from chatstats.context import embed, embed_calls, search
    from chatstats.ingest.sync import LiveSync

    bus = EventBus(db, poll_seconds=BUS_FALLBACK_SECONDS)
    library = Library(db)
    hub = MessageHub()
    metrics = metrics_module.REGISTRY
    state = AppState(
        settings=settings,
        db=db,
        token=resolve_token(settings),
        started_ns=time.time_ns(),
        import_status=ImportStatus(),
        shutdown=stop,
        bus=bus,
        library=library,
        hub=hub,
        metrics=metrics,
        # Jobs in flight get 0.5 s at shutdown, then go back to pending (the stop budget).
        analysis=AnalysisService(db, bus, settings, grace_seconds=0.5),
        live=LiveSync(settings, db, bus, hub, metrics, library),
    )
    # The index reads the state's bus and settings; it loads or builds when it runs. Its
    # embedder's every call is accounted into llm_calls, written by the flusher task.
    state.embed_calls = llm.CallBuffer()
    embedder = embed_calls.accounted(embed.from_settings(settings), state.embed_calls.add)
    state.search_index = search.SearchIndex(state, embedder)
    return state


async def _seed(state: AppState) -> None:
    """Seed the context definitions from their file; a bad file is logged, never fatal (the
    seeds' rule: seeding failures do not block startup)."""
    try:
        await state.context.seed()
    except errors.REPORTED as exc:
        logger.error("context_seed_failed", code=errors.public(exc).code, error=exc.message)


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
    except errors.REPORTED as exc:  # raised on purpose: its message is safe to show and log
        shown = errors.public(exc)
        status.state, status.error = "failed", shown.message
        logger.error("import_failed", code=shown.code, error=shown.message)
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
