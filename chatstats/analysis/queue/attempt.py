"""Stage 1 of a job: build the transcript and call the model, holding no database
connection or transaction, under the limit on calls in flight; then hand the answer to
stage 2 (`persistence`) or the failure to the retry policy.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import anyio
import msgspec

from chatstats.analysis import store
from chatstats.analysis import transcript as transcripts
from chatstats.analysis.queue.errors import InvalidAnswer, Unrunnable, frames_of, schema_path
from chatstats.analysis.queue.persistence import JobTransactions
from chatstats.analysis.queue.retry import RetryPolicy
from chatstats.analysis.queue.state import logger


def _with_output_limit(config: Any, max_tokens: int | None) -> Any:
    if max_tokens is None or config is None or not hasattr(config, "max_output_tokens"):
        return config
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.replace(config, max_output_tokens=max_tokens)
    if isinstance(config, msgspec.Struct):
        return msgspec.structs.replace(config, max_output_tokens=max_tokens)
    return config


class CallStage(RetryPolicy, JobTransactions):
    """Runs one attempt of a claimed job."""

    async def _attempt(self, job: store.Job, records: list[Any]) -> bool:
        """One attempt at a claimed job. True once its outcome is committed."""
        p = self.passes.get(job.pass_name)
        if p is None or p.version != job.pass_version:
            await self._failed(job, p, Unrunnable("pass_unavailable"), records)
            return True
        text = await self._db.read(transcripts.build, job.conversation_id, p.max_transcript_tokens)
        if text is None:
            await self._failed(job, p, Unrunnable("conversation_missing"), records)
            return True
        messages = p.render(
            text.text or "(no messages with text)",
            message_count=text.message_count,
            start_time=transcripts.iso_minute(text.start_ns),
            end_time=transcripts.iso_minute(text.end_ns),
        )
        assert self._limiter is not None and self._call is not None
        began = time.monotonic()
        try:
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await anyio.sleep(pause)
            async with self._limiter:
                self.in_flight += 1
                self.counters["calls"] += 1
                try:
                    result = await self._call(
                        _with_output_limit(self.config, p.max_output_tokens),
                        messages,
                        json_schema=p.schema,
                        schema_name=p.name,
                        purpose="analysis",
                        record=records.append,
                        job_id=job.id,
                        run_id=job.run_id,
                        conversation_id=job.conversation_id,
                    )
                finally:
                    self.in_flight -= 1
        except Exception as exc:
            if getattr(exc, "outcome", None) is None:
                logger.error(
                    "analysis_call_crashed",
                    job_id=job.id,
                    error_type=type(exc).__name__,
                    where=frames_of(exc),
                )
            await self._failed(job, p, exc, records)
            return True
        latency_ms = (time.monotonic() - began) * 1000
        try:
            parsed = getattr(result, "parsed", None)
            normalised = p.normalised(parsed if parsed is not None else result.content)
        except (msgspec.ValidationError, msgspec.DecodeError, TypeError) as exc:
            await self._failed(job, p, InvalidAnswer(schema_path(exc)), records)
            return True
        rerun = await self._bus.write(
            self._complete_tx, job, p, normalised, result, records, latency_ms, self._clock()
        )
        self.counters["completed"] += 1
        logger.info(
            "analysis_job_done",
            job_id=job.id,
            pass_name=job.pass_name,
            conversation_id=job.conversation_id,
            attempt=job.attempts,
            ms=round(latency_ms),
        )
        if rerun:
            self.wake()
        return True
