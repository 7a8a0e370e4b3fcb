"""The analysis facade the API, the CLI and the daemon use, and the event-log consumer.

`AnalysisService` works on a database whether or not an engine runs on it: the CLI queues
jobs and reads coverage with no engine at all, and a daemon running on the same data
directory picks the new jobs up at its next periodic refill. Inside the daemon, `run()` owns
the engine (dispatcher and workers) and the consumer.

The consumer turns the ingest side's facts into jobs: `conversation_ready_for_analysis`
(a conversation sealed and finalised) queues the sealed passes; `messages_synced` with new
messages queues the live passes of the open conversations they landed in, after a short
debounce so a burst of messages costs one call; `conversation_reopened` (a late message
joined a sealed conversation) marks its results stale, so the sealed passes run again when
it is sealed again, and coverage counts it as missing meanwhile; `conversation_removed` (a
fresh split merged it into another) drops its results and commitments and cancels its
pending jobs, since the conversation it joined is analysed again as a whole. It reads the event log from a cursor kept in
`event_cursors`, and the jobs and the cursor's advance commit together, so a restart neither
skips an event nor queues its jobs twice.

No model configured: jobs still queue and wait as pending, and `status()` says why.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from chatstats import log
from chatstats.analysis import passes as passes_mod
from chatstats.analysis import runs, store
from chatstats.analysis.passes import Pass, PassSet
from chatstats.analysis.queue import LIVE_DEBOUNCE_SECONDS, Engine
from chatstats.config import Settings
from chatstats.db import Database
from chatstats.errors import BadRequest, NotFound
from chatstats.events import catalogue
from chatstats.events.bus import DEFAULT_STREAM, EventBus

logger = log.get(__name__)

CONSUMER = "analysis"
# The event types the consumer turns into jobs (or stale marks).
WANTED = frozenset(
    {
        "conversation_ready_for_analysis",
        "messages_synced",
        "conversation_reopened",
        "conversation_removed",
    }
)
NO_MODEL = "no model configured (set CHATSTATS_LLM_MODEL)"
JOB_STATES = store.STATES
COMMITMENT_STATUSES = ("open", "done", "cancelled", "unknown")
# Persist the cursor after this many events that queued nothing (they are re-read cheaply
# after a crash, but an idle daemon should not re-scan its whole log at every start).
CURSOR_LAZY_EVENTS = 1000


def _ref(p: Pass) -> store.PassRef:
    return store.PassRef(p.name, p.version, p.priority, p.trigger)


class AnalysisService:
    def __init__(
        self,
        db: Database,
        bus: EventBus | None = None,
        settings: Settings | None = None,
        *,
        passes: PassSet | None = None,
        prompts: Path | None = None,
        config: Any = "settings",
        **engine_options: Any,
    ) -> None:
        """`config` is the LLMConfig to use; by default it comes from `settings`
        (`llm.configured`), and None means no model. `engine_options` go to `Engine`."""
        self.db = db
        self.bus = bus or EventBus(db)
        self.settings = settings
        self.passes = passes or passes_mod.load(prompts)
        if config == "settings":
            config = _config_from(settings)
        self.config = config
        defaults = settings or Settings()
        options = {
            "concurrency": defaults.llm_concurrency,
            "workers": defaults.analysis_workers,
            "max_attempts": defaults.llm_max_attempts,
            **engine_options,
        }
        self.max_attempts = options["max_attempts"]
        self.live_debounce_s = options.get("live_debounce_s", LIVE_DEBOUNCE_SECONDS)
        self.engine = Engine(db, self.bus, self.passes, config, **options)
        self.consumer_cursor: int | None = None
        self.consumer_running = False

    # -- lifetime ------------------------------------------------------------------------------

    async def run(self, shutdown: anyio.Event) -> None:
        """The engine and the consumer, until `shutdown`. Owned by the daemon's task group.

        The engine stops in its own two phases; the consumer has nothing in flight worth
        waiting for (its transaction either committed or did not), so it is just cancelled.
        """
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.engine.run, shutdown)
            async with anyio.create_task_group() as side:
                side.start_soon(self.consume)
                await shutdown.wait()
                side.cancel_scope.cancel()

    def wake(self) -> None:
        self.engine.wake()

    # -- the consumer --------------------------------------------------------------------------

    async def consume(self) -> None:
        """Follow the event log forever, queueing passes for sealed and growing conversations."""
        cursor = await self.db.read(store.get_cursor, CONSUMER) or 0
        saved = cursor
        self.consumer_cursor = cursor
        self.consumer_running = True
        delay = 1.0
        try:
            while True:
                try:
                    events = await self.bus.read(cursor, stream=DEFAULT_STREAM, limit=500)
                    wanted = [e for e in events if e.type in WANTED]
                    last = events[-1].id
                    if wanted or last - saved >= CURSOR_LAZY_EVENTS:
                        queued = await self.bus.write(self._handle_tx, wanted, last, time.time_ns())
                        saved = last
                        if queued:
                            self.engine.wake()
                    cursor = last
                    self.consumer_cursor = cursor
                    delay = 1.0
                except sqlite3.Error as exc:
                    logger.error("analysis_consumer_failed", error_type=type(exc).__name__)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 30.0)
        finally:
            self.consumer_running = False
            if cursor > saved:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    await self.db.write(store.set_cursor, CONSUMER, cursor)

    def _handle_tx(
        self, conn: sqlite3.Connection, events: list[Any], last_id: int, now_ns: int
    ) -> int:
        queued = 0
        sealed = [_ref(p) for p in self.passes.enabled("sealed")]
        live = [_ref(p) for p in self.passes.enabled("live")]
        for e in events:
            payload = e.payload if e.type in WANTED else None
            if isinstance(payload, catalogue.ConversationReopened):
                cid = payload.conversation_id
                marked = store.mark_stale(conn, cid)
                if marked:
                    logger.info("analyses_marked_stale", conversation_id=cid, count=marked)
            elif isinstance(payload, catalogue.ConversationRemoved):
                cid = payload.conversation_id
                dropped, cancelled = store.forget_conversation(conn, cid, now_ns)
                for job in cancelled:
                    runs.job_finished(
                        conn, job, status="failed", now_ns=now_ns, throttle=self.engine.throttle
                    )
                if dropped or cancelled:
                    logger.info(
                        "analyses_dropped",
                        conversation_id=cid,
                        count=dropped,
                        jobs_cancelled=len(cancelled),
                    )
            elif isinstance(payload, catalogue.ConversationReady) and sealed:
                cid = payload.conversation_id
                chat_id = store.conversation_chat(conn, cid)
                if chat_id is None:
                    continue
                for ref in sealed:
                    job_id = store.enqueue(
                        conn,
                        cid,
                        chat_id,
                        ref,
                        now_ns=now_ns,
                        max_attempts=self.max_attempts,
                        skip_if_analysed=True,
                    )
                    queued += job_id is not None
            elif isinstance(payload, catalogue.MessagesSynced) and live:
                ids = payload.new_message_ids
                if not ids:
                    continue
                not_before = now_ns + int(self.live_debounce_s * 1e9)
                for cid, chat_id in store.open_conversations_of_messages(conn, ids):
                    for ref in live:
                        job_id = store.enqueue(
                            conn,
                            cid,
                            chat_id,
                            ref,
                            now_ns=now_ns,
                            max_attempts=self.max_attempts,
                            not_before_ns=not_before,
                        )
                        queued += job_id is not None
        store.set_cursor(conn, CONSUMER, last_id)
        if queued:
            logger.info("analysis_jobs_queued", count=queued, events=len(events))
        return queued

    # -- status ------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """For /api/health and `chatstats passes`: whether analysis can run, and the queue."""
        counts = await self.db.read(store.job_counts)
        if self.config is None:
            state, message = "waiting", NO_MODEL
        elif self.engine.running:
            state = "running" if counts[store.PENDING] or counts[store.RUNNING] else "idle"
            message = None
        else:
            state, message = "stopped", None
        return {
            "state": state,
            "message": message,
            "model": getattr(self.config, "model", None),
            "jobs": counts,
            "queued_in_memory": self.engine.queued(),
            "in_flight": self.engine.in_flight,
            "workers": self.engine.workers,
            "concurrency": self.engine.concurrency,
            "counters": dict(self.engine.counters),
            "consumer_cursor": self.consumer_cursor,
            "passes": len(self.passes.passes),
            "pass_errors": [str(e) for e in self.passes.errors],
        }

    # -- passes ------------------------------------------------------------------------------

    def list_passes(self) -> list[dict[str, Any]]:
        return [p.info() for p in self.passes.all()]

    def _pass(self, name: str) -> Pass:
        p = self.passes.get(name)
        if p is None:
            known = ", ".join(sorted(self.passes.passes)) or "none"
            raise NotFound(f"no analysis pass named {name!r} (known: {known})")
        return p

    # -- runs and backfill -------------------------------------------------------------------

    async def start_run(
        self,
        *,
        passes: Iterable[str] | None = None,
        chat_ids: list[int] | None = None,
        limit: int | None = None,
        kind: str = "global",
        force: bool = False,
    ) -> store.Run:
        """Queue passes (default: every enabled sealed pass) over the conversations lacking
        them (all of them with `force`); `limit` caps the conversations per pass."""
        if kind not in runs.KINDS:
            raise BadRequest(f"kind must be one of {', '.join(runs.KINDS)}")
        chosen = (
            [self._pass(n) for n in dict.fromkeys(passes)]
            if passes is not None
            else self.passes.enabled("sealed")
        )
        if not chosen:
            raise BadRequest("no analysis pass to run")
        run_id = runs.new_run_id()
        run = await self.bus.write(
            lambda conn: runs.create(
                conn,
                run_id=run_id,
                kind=kind,
                passes=[_ref(p) for p in chosen],
                now_ns=time.time_ns(),
                max_attempts=self.max_attempts,
                chat_ids=chat_ids,
                limit=limit,
                force=force,
            )
        )
        logger.info("analysis_run_started", run_id=run_id, kind=kind, total=run.total)
        self.engine.wake()
        return run

    async def backfill(
        self, pass_names: list[str] | None, *, dry_run: bool = False, limit: int | None = None
    ) -> dict[str, Any]:
        """Queue passes (None: every enabled pass) over the conversations lacking them:
        sealed passes over sealed conversations, live passes over open ones. A dry run
        only counts."""
        chosen = (
            [self._pass(n) for n in dict.fromkeys(pass_names)]
            if pass_names is not None
            else [p for p in self.passes.all() if p.enabled]
        )
        if limit is not None and limit < 1:
            raise BadRequest("limit must be 1 or more")
        counts = await self.db.read(
            lambda conn: {p.name: store.count_missing(conn, _ref(p), limit=limit) for p in chosen}
        )
        out: dict[str, Any] = {
            "dry_run": dry_run,
            "passes": counts,
            "total": sum(counts.values()),
            "run_id": None,
        }
        if dry_run or not out["total"]:
            return out
        run = await self.start_run(
            passes=[p.name for p in chosen if counts[p.name]], limit=limit, kind="backfill"
        )
        out["run_id"] = run.id
        out["total"] = run.total
        return out

    async def get_run(self, run_id: str) -> dict[str, Any]:
        def read(conn: sqlite3.Connection) -> tuple[store.Run | None, dict[str, Any]]:
            return store.get_run(conn, run_id), _usage(conn, run_id=run_id)

        run, usage = await self.db.read(read)
        if run is None:
            raise NotFound(f"no analysis run {run_id}")
        return run_json(run, usage)

    async def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return [run_json(r) for r in await self.db.read(store.list_runs, limit)]

    # -- coverage ----------------------------------------------------------------------------

    async def coverage(self, chat_id: int | None = None) -> dict[str, Any]:
        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            if chat_id is not None and not store.chat_exists(conn, chat_id):
                raise NotFound(f"chat {chat_id} does not exist")
            rows = []
            for p in self.passes.all():
                c = store.coverage(conn, _ref(p), chat_id)
                pct = 100.0 if not c["conversations"] else c["analysed"] / c["conversations"] * 100
                rows.append(
                    {
                        "pass": p.name,
                        "version": p.version,
                        "trigger": p.trigger,
                        "enabled": p.enabled,
                        **c,
                        "percentage": round(pct, 1),
                    }
                )
            return {"chat_id": chat_id, "passes": rows, "jobs": store.job_counts(conn)}

        return await self.db.read(read)

    async def missing(
        self, *, chat_id: int | None = None, pass_name: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        chosen = [self._pass(pass_name)] if pass_name else [p for p in self.passes.all()]

        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            out = []
            for p in chosen:
                rows = store.missing(conn, _ref(p), chat_id, limit)
                count = store.coverage(conn, _ref(p), chat_id)["missing"]
                out.append(
                    {
                        "pass": p.name,
                        "version": p.version,
                        "missing": count,
                        "conversations": [
                            {
                                "conversation_id": r["id"],
                                "chat_id": r["chat_id"],
                                "start_ns": r["start_ns"],
                                "end_ns": r["end_ns"],
                                "message_count": r["message_count"],
                                "job_state": r["job_state"],
                            }
                            for r in rows
                        ],
                    }
                )
            return out

        return await self.db.read(read)

    # -- results -----------------------------------------------------------------------------

    async def conversation_analyses(self, conversation_id: int) -> list[dict[str, Any]]:
        def read(conn: sqlite3.Connection) -> list[sqlite3.Row] | None:
            if not store.conversation_exists(conn, conversation_id):
                return None
            return store.conversation_analyses(conn, conversation_id)

        rows = await self.db.read(read)
        if rows is None:
            raise NotFound(f"conversation {conversation_id} does not exist")
        return [
            {
                "id": r["id"],
                "pass": r["pass"],
                "pass_version": r["pass_version"],
                "result": msgspec.json.decode(r["result"]),
                "model": r["model"],
                "usage": {
                    "prompt_tokens": r["prompt_tokens"],
                    "completion_tokens": r["completion_tokens"],
                    "cost": r["cost"],
                },
                "created_ns": r["created_ns"],
                "job_id": r["job_id"],
                "run_id": r["run_id"],
                # Left from before a late message reopened the conversation; replaced when
                # the pass runs again.
                "stale": bool(r["stale"]),
            }
            for r in rows
        ]

    async def commitments(
        self,
        *,
        chat_id: int | None = None,
        status: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[dict[str, Any]]:
        if status is not None and status not in COMMITMENT_STATUSES:
            raise BadRequest(f"status must be one of {', '.join(COMMITMENT_STATUSES)}")
        rows = await self.db.read(
            lambda conn: store.list_commitments(
                conn, chat_id=chat_id, status=status, limit=limit, before_id=before_id
            )
        )
        return [
            {
                "id": r["id"],
                "chat_id": r["chat_id"],
                "conversation_id": r["conversation_id"],
                "analysis_id": r["analysis_id"],
                "pass": r["pass"],
                "kind": r["kind"],
                "who": r["who"],
                "what": r["what"],
                "due": r["due"],
                "status": r["status"],
                "created_ns": r["created_ns"],
            }
            for r in rows
        ]

    # -- jobs --------------------------------------------------------------------------------

    async def jobs(
        self, *, state: str | None = None, limit: int = 50, before_id: int | None = None
    ) -> list[store.Job]:
        if state is not None and state not in JOB_STATES:
            raise BadRequest(f"state must be one of {', '.join(JOB_STATES)}")
        return await self.db.read(store.list_jobs, state, limit, before_id)

    async def retry(self, job_id: int) -> store.Job:
        """A dead job back to pending with fresh attempts (its run counts it as pending)."""

        def tx(conn: sqlite3.Connection) -> store.Job:
            job = store.revive(conn, job_id, time.time_ns())
            if job is None:
                existing = store.get_job(conn, job_id)
                if existing is None:
                    raise NotFound(f"no analysis job {job_id}")
                raise BadRequest(f"job {job_id} is {existing.state}, not dead")
            if job.run_id is not None:
                runs.reopen(conn, job.run_id)
            runs.task_event(conn, job, catalogue.TaskStatus, status="pending", retried=True)
            return job

        job = await self.bus.write(tx)
        logger.info("analysis_job_retried", job_id=job_id)
        self.engine.wake()
        return job

    async def retry_all_dead(self, limit: int = 10_000) -> list[int]:
        ids = await self.db.read(store.dead_ids, limit)
        done = []
        for job_id in ids:
            try:
                await self.retry(job_id)
            except (BadRequest, NotFound):
                continue
            done.append(job_id)
        return done


def _config_from(settings: Settings | None) -> Any:
    if settings is None or not settings.llm_model:
        return None
    from chatstats import llm

    return llm.configured(settings)


def _usage(conn: sqlite3.Connection, **ids: Any) -> dict[str, Any]:
    from chatstats import llm

    totals = llm.usage_totals(conn, **ids)
    if totals["unpriced_calls"] and not totals["cost"]:
        totals["cost"] = None  # nothing priced: unknown, not free
    return totals


def run_json(run: store.Run, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_id": run.id,
        "kind": run.kind,
        "status": run.status,
        "passes": run.passes,
        "total": run.total,
        "success": run.success,
        "failed": run.failed,
        "pending": run.pending,
        "percentage": runs.percentage(run),
        "created_ns": run.created_ns,
        "finished_ns": run.finished_ns,
    }
    if usage is not None:
        out["usage"] = usage
    return out


def job_json(job: store.Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "run_id": job.run_id,
        "conversation_id": job.conversation_id,
        "chat_id": job.chat_id,
        "pass": job.pass_name,
        "pass_version": job.pass_version,
        "priority": job.priority,
        "state": job.state,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "not_before_ns": job.not_before_ns,
        "last_error": job.last_error,
        "created_ns": job.created_ns,
        "updated_ns": job.updated_ns,
    }
