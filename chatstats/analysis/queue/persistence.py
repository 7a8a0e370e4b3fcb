"""The engine's write transactions, run on the writer connection: claim a job, complete it
(result, accounting, run counters, events), schedule a retry, mark it dead, hand it back.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from chatstats.analysis import runs, store
from chatstats.analysis.passes import Pass, commitments_of
from chatstats.analysis.queue.errors import InvalidAnswer, Unrunnable
from chatstats.analysis.queue.state import EngineState
from chatstats.events import bus as events
from chatstats.events import catalogue


class JobTransactions(EngineState):
    """Claims, completes, retries, kills and releases jobs, one transaction each."""

    def _write_records(
        self, conn: sqlite3.Connection, records: list[Any], *, invalid: str | None = None
    ) -> int | None:
        """Insert the attempt's accounting records; the last one's id."""
        assert self._record_call is not None
        call_id = None
        for rec in records:
            call_id = self._record_call(conn, rec)
        if invalid is not None and call_id is not None:
            # The call itself succeeded, but its answer failed the pass's schema.
            conn.execute(
                "UPDATE llm_calls SET outcome = 'invalid_output', error = :err WHERE id = :id",
                {"err": invalid, "id": call_id},
            )
        return call_id

    def _claim_tx(self, conn: sqlite3.Connection, job_id: int, now_ns: int) -> store.Job | None:
        job = store.claim(conn, job_id, now_ns)
        if job is not None and job.attempts > job.max_attempts:
            # Its earlier attempts never finished (the process died each time): a job that
            # takes the daemon down must not do so forever.
            self._dead_tx(conn, job, [], Unrunnable("interrupted"), "interrupted", now_ns)
            return None
        if job is not None:
            runs.task_event(conn, job, catalogue.TaskStatus, status="running", attempt=job.attempts)
            runs.task_event(
                conn,
                job,
                catalogue.TaskProgress,
                progress=0.0,
                status="running",
                message="calling the model",
            )
        return job

    def _complete_tx(
        self,
        conn: sqlite3.Connection,
        job: store.Job,
        p: Pass,
        normalised: Any,
        result: Any,
        records: list[Any],
        latency_ms: float,
        now_ns: int,
    ) -> bool:
        if store.conversation_chat(conn, job.conversation_id) is None:
            # Merged into another while the model answered: the usage is kept, the result
            # would describe messages that now belong to a conversation analysed anew.
            self._dead_tx(
                conn,
                job,
                records,
                Unrunnable("conversation_removed"),
                "conversation_removed",
                now_ns,
            )
            return False
        call_id = self._write_records(conn, records)
        rerun = store.finish(conn, job, now_ns)
        if rerun is None:
            # No longer this worker's claim (recovered by a restart elsewhere): the usage is
            # kept above, the job's new owner stores the result.
            return False
        result_json = msgspec.json.encode(normalised).decode()
        analysis_id = store.upsert_analysis(
            conn,
            job,
            result_json,
            model=getattr(result, "model", None),
            llm_call_id=call_id if call_id is not None else getattr(result, "call_id", None),
            now_ns=now_ns,
            sealed_pass=p.trigger == "sealed",
        )
        if p.stores == "commitments":
            self._store_commitments(conn, job, p, analysis_id, normalised, now_ns)
        runs.task_event(conn, job, catalogue.TaskProgress, progress=1.0, status="done")
        runs.task_event(
            conn,
            job,
            catalogue.TaskCompleted,
            message="analysis stored",
            result={"analysis_id": analysis_id},
        )
        runs.job_finished(
            conn,
            job,
            status="success",
            analysis_id=analysis_id,
            now_ns=now_ns,
            throttle=self.throttle,
            latency_ms=latency_ms,
        )
        if rerun:
            store.enqueue(
                conn,
                job.conversation_id,
                job.chat_id,
                store.PassRef(p.name, p.version, p.priority, p.trigger),
                now_ns=now_ns,
                max_attempts=self.max_attempts,
                not_before_ns=now_ns + int(self.live_debounce_s * 1e9),
            )
        return rerun

    def _store_commitments(
        self,
        conn: sqlite3.Connection,
        job: store.Job,
        p: Pass,
        analysis_id: int,
        normalised: Any,
        now_ns: int,
    ) -> None:
        """A sealed pass's commitments replace the conversation's; a live pass's only stand in
        until the conversation has a sealed pass's result."""
        if p.trigger == "live":
            sealed = [
                (q.name, q.version)
                for q in self.passes.passes.values()
                if q.stores == "commitments" and q.trigger == "sealed"
            ]
            if store.has_analysis(conn, job.conversation_id, sealed):
                return
        items = msgspec.to_builtins(commitments_of(normalised))
        n = store.replace_commitments(conn, analysis_id, job, items, now_ns)
        updated = catalogue.CommitmentsUpdated(
            chat_id=job.chat_id,
            conversation_id=job.conversation_id,
            analysis_id=analysis_id,
            pass_=p.name,
            count=n,
            open=sum(1 for c in items if c.get("status") == "open"),
        )
        events.append(conn, updated, scope=f"commitments:{job.chat_id}")

    def _retry_tx(
        self,
        conn: sqlite3.Connection,
        job: store.Job,
        records: list[Any],
        exc: Exception,
        error: str,
        not_before_ns: int,
        now_ns: int,
    ) -> None:
        invalid = error if isinstance(exc, InvalidAnswer) else None
        self._write_records(conn, records, invalid=invalid)
        if store.reschedule(conn, job, not_before_ns=not_before_ns, error=error, now_ns=now_ns):
            runs.task_event(
                conn,
                job,
                catalogue.TaskRetry,
                error=error,
                retry_count=job.attempts,
                max_retries=job.max_attempts - 1,
                retry_in_s=round((not_before_ns - now_ns) / 1e9, 3),
            )

    def _dead_tx(
        self,
        conn: sqlite3.Connection,
        job: store.Job,
        records: list[Any],
        exc: Exception,
        error: str,
        now_ns: int,
    ) -> None:
        invalid = error if isinstance(exc, InvalidAnswer) else None
        self._write_records(conn, records, invalid=invalid)
        if not store.bury(conn, job, error=error, now_ns=now_ns):
            return
        runs.task_event(
            conn, job, catalogue.TaskFailed, error=error, permanent=True, attempts=job.attempts
        )
        runs.task_event(conn, job, catalogue.TaskStatus, status="dead", error=error)
        runs.job_finished(conn, job, status="failed", now_ns=now_ns, throttle=self.throttle)

    def _release_tx(
        self, conn: sqlite3.Connection, job: store.Job, records: list[Any], now_ns: int
    ) -> None:
        self._write_records(conn, records)
        if store.release(conn, job, now_ns):
            runs.task_event(conn, job, catalogue.TaskStatus, status="pending")
