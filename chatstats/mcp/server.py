"""The MCP server: the five read-only chatbot tools over stdio, on the same data directory.

Why the SDK's low-level `Server` and not `MCPServer`: MCPServer derives each tool's input
schema from a Python signature, while these tools' schemas are the chatbot's own
(chatstats.chatbot.tools, CONTRACT.md's names and arguments); serving those schemas as they
are keeps the chatbot and every MCP client on one definition, checked by one validator.

Read-only by construction: one `mode=ro`, `query_only` connection, no migrations, no index
builds or saves. So it runs beside the daemon (SQLite's WAL lets it read while the daemon
writes) or without it. A database older than this code is refused with a clear message
rather than migrated. Tool calls run one at a time in a worker thread (one connection;
the stdio loop stays responsive). The vector index the daemon saved is loaded in the
background at start and reloaded when the daemon saves a newer one, and messages synced
since are embedded into the loaded copy in memory before a search; until it is loaded a
search waits for it, and with none saved, search falls back to ranked words and says so.

Logs go to stderr (stdout is the protocol) and hold tool names, counts and error kinds only.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from chatstats import __version__, log
from chatstats.chatbot.tools import READ_TOOLS, ToolError, ToolOutput, run_read_tool, saved_index
from chatstats.config import Settings
from chatstats.context.index import META_NAME, VectorIndex
from chatstats.context.search import catch_up
from chatstats.db import connect, migrations
from chatstats.errors import ChatStatsError

logger = log.get(__name__)

INSTRUCTIONS = (
    "Read-only access to the user's own iMessage history as imported by ChatStats: search"
    " messages by meaning and words, read conversations, list commitments, read analyses and"
    " exact statistics. Cite messages by their guid. Times are UTC unless a timezone is given."
)
_ANNOTATIONS = types.ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def open_readonly(settings: Settings) -> sqlite3.Connection:
    """The app database, read-only, refused (ChatStatsError) unless its schema is this code's."""
    path = settings.db_path
    if not path.is_file():
        raise ChatStatsError(f"no database at {path}; run chatstats import first")
    conn = connect(path, write=False)
    try:
        applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    except sqlite3.Error:
        conn.close()
        raise ChatStatsError(f"{path} is not a chatstats database") from None
    known = {version for version, _name, _path in migrations()}
    if applied and max(applied) > max(known):
        conn.close()
        raise ChatStatsError(
            f"the database is at schema version {max(applied)}, newer than this chatstats"
            f" understands ({max(known)}); upgrade chatstats"
        )
    if known - applied:
        conn.close()
        raise ChatStatsError(
            "the database predates this chatstats and `chatstats mcp` never writes: run"
            " `chatstats import` (or start the daemon) once to migrate it"
        )
    return conn


class _Index:
    """The saved vector index, loaded off the loop and reloaded when the daemon saves anew
    (its metadata file is renamed into place last, so a changed mtime means a whole index).
    Messages newer than the loaded copy are embedded into it in memory before a search
    (the daemon saves at most once a minute), so a search sees what was just synced."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._meta = Path(settings.data_dir) / META_NAME
        self._lock = threading.Lock()
        self._loaded_mtime: int | None = None
        self._index: VectorIndex | None = None
        self._seen = 0  # newest message id the loaded copy has caught up with

    def _mtime(self) -> int | None:
        try:
            return self._meta.stat().st_mtime_ns
        except OSError:
            return None

    def load(self) -> VectorIndex | None:
        with self._lock:
            mtime = self._mtime()
            if mtime != self._loaded_mtime:
                self._index = saved_index(self._settings) if mtime is not None else None
                self._loaded_mtime = mtime
                self._seen = self._index.max_message_id if self._index is not None else 0
                logger.info("mcp_index", loaded=self._index is not None)
            return self._index

    def current(self, conn: sqlite3.Connection) -> VectorIndex | None:
        index = self.load()
        if index is not None:
            with self._lock:
                self._seen = catch_up(index, conn, self._seen)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        return index


class ReadTools:
    """The tools on one read-only connection, one call at a time."""

    def __init__(self, conn: sqlite3.Connection, settings: Settings) -> None:
        self._conn = conn
        self._settings = settings
        self.index = _Index(settings)
        self._limiter = anyio.CapacityLimiter(1)

    def _run(self, name: str, arguments: dict[str, Any]) -> ToolOutput:
        index = self.index.current(self._conn) if name == "search_messages" else None
        return run_read_tool(self._conn, name, arguments, settings=self._settings, index=index)

    async def list_tools(self, _ctx: Any, _params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=t.name,
                    description=t.description,
                    input_schema=t.parameters,
                    annotations=_ANNOTATIONS,
                )
                for t in READ_TOOLS.values()
            ]
        )

    async def call_tool(
        self, _ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name = params.name if params.name in READ_TOOLS else "(unknown)"
        try:
            out = await anyio.to_thread.run_sync(
                self._run, params.name, params.arguments or {}, limiter=self._limiter
            )
        except ToolError as exc:
            logger.info("mcp_tool_refused", tool=name)
            return _error(str(exc))
        except sqlite3.Error as exc:  # locked past the busy timeout, a damaged file, ...
            logger.error("mcp_tool_failed", tool=name, error=type(exc).__name__)
            return _error(f"the database could not be read ({exc})")
        logger.info("mcp_tool", tool=name, count=out.count, citations=len(out.citations))
        return types.CallToolResult(content=[types.TextContent(type="text", text=out.content)])

    def server(self) -> Server[Any]:
        return Server(
            "chatstats",
            version=__version__,
            title="ChatStats",
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


async def serve(conn: sqlite3.Connection, settings: Settings) -> None:
    tools = ReadTools(conn, settings)
    server = tools.server()
    async with anyio.create_task_group() as tg:
        # Load the index while the client connects; a search meanwhile waits on its lock.
        tg.start_soon(anyio.to_thread.run_sync, tools.index.load)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
        tg.cancel_scope.cancel()


def main(settings: Settings) -> int:
    log.configure(settings.effective_log_level if settings.debug else "WARNING", stream=sys.stderr)
    conn = open_readonly(settings)
    try:
        anyio.run(serve, conn, settings)
    finally:
        conn.close()
    return 0
