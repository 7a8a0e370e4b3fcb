"""What the HTTP app needs from the daemon that runs it, as one typed object.

The daemon owns these things (the database, the token, the import in progress); the app only
reads them. `ImportStatus` is written from the import's worker thread by plain attribute
assignment, which is atomic enough for a progress display.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
from starlette.requests import Request

from chatstats import metrics as metrics_module
from chatstats.config import Settings
from chatstats.db import Database
from chatstats.events.bus import EventBus
from chatstats.events.hub import MessageHub
from chatstats.library.service import Library
from chatstats.metrics import Metrics

if TYPE_CHECKING:  # the types only: importing them here would load every service at import
    from chatstats.analysis.service import AnalysisService
    from chatstats.context.search import SearchIndex
    from chatstats.context.service import ContextService
    from chatstats.ingest.sync import LiveSync
    from chatstats.llm import CallBuffer

ImportState = Literal["idle", "running", "complete", "failed"]

# The daemon's own commits wake event-log readers at once (EventBus.notify); this poll only
# catches events appended by another process (a CLI command), so it can be slow: a 1 s poll
# was a query in a worker thread every second, forever, for the analysis consumer alone.
BUS_FALLBACK_SECONDS = 30.0


@dataclass
class ImportStatus:
    state: ImportState = "idle"
    phase: str | None = None
    done: int = 0
    total: int = 0
    error: str | None = None
    last_summary: Any = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "error": self.error,
            "last_summary": self.last_summary,
        }


@dataclass
class AppState:
    settings: Settings
    db: Database
    token: str
    started_ns: int
    import_status: ImportStatus = field(default_factory=ImportStatus)
    hub: MessageHub = field(default_factory=MessageHub)
    metrics: Metrics = field(default_factory=lambda: metrics_module.REGISTRY)
    # Set when the daemon stops: SSE streams end on it within uvicorn's grace period.
    shutdown: anyio.Event = field(default_factory=anyio.Event)
    bus: EventBus = None  # type: ignore[assignment]  # built in __post_init__ when not given
    library: Library = None  # type: ignore[assignment]  # likewise: one per app, not per request
    # The analysis engine: the daemon's running one, or (an app built for tests or tools) an
    # idle one over the same database, which queues but runs nothing.
    analysis: AnalysisService = None  # type: ignore[assignment]
    # Live sync (the tail, the sealer, the AddressBook sync): built by the daemon before it
    # serves, running once the import is in; None in an app without live sync.
    live: LiveSync | None = None
    # The vector index behind semantic and hybrid search; None without one.
    search_index: SearchIndex | None = None
    # The embedding calls' accounting (llm.CallBuffer), written to llm_calls by the daemon's
    # flusher task; None in an app whose embedder is not accounted.
    embed_calls: CallBuffer | None = None
    # Context definitions and the retrievers' preview; built here when not given.
    context: ContextService = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.bus is None:
            self.bus = EventBus(self.db, poll_seconds=BUS_FALLBACK_SECONDS)
        if self.library is None:
            self.library = Library(self.db)
        if self.analysis is None:
            from chatstats.analysis.service import AnalysisService

            self.analysis = AnalysisService(self.db, self.bus, self.settings)
        if self.context is None:
            from chatstats.context.service import ContextService

            self.context = ContextService(self.db, index=self._loaded_index)

    def _loaded_index(self) -> Any:
        """The vector index once it serves; None before (retrievers then rank by words)."""
        found = self.search_index
        if found is None or not found.ready.is_set():
            return None
        return found.index


def of(request: Request) -> AppState:
    """The daemon's state behind a request (create_app puts it on the app)."""
    state: AppState = request.app.state.chatstats
    return state
