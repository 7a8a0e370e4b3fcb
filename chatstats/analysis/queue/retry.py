"""Retry policy: exponential backoff with jitter, Retry-After honoured (and capped) and
pausing new calls, dead after `max_attempts`; the attempt's accounting is written with the
retry or the death, never dropped.
"""

from __future__ import annotations

import time
from typing import Any

from chatstats.analysis import store
from chatstats.analysis.passes import Pass
from chatstats.analysis.queue.errors import InvalidAnswer, Unrunnable
from chatstats.analysis.queue.persistence import JobTransactions
from chatstats.analysis.queue.state import logger

MAX_RETRY_AFTER_S = 600.0  # the longest Retry-After we wait for


class RetryPolicy(JobTransactions):
    """Decides what happens after a failed attempt (written by the job transactions)."""

    def _backoff_s(self, attempt: int, retry_after: float | None) -> float:
        base, cap = self._backoff
        delay: float = min(cap, base * 2 ** max(0, attempt - 1))
        delay = delay / 2 + self._rng() * delay / 2  # "equal jitter": never less than half
        if retry_after is not None and retry_after > 0:
            delay = max(delay, float(retry_after) * (1 + 0.1 * self._rng()))
        return delay

    async def _failed(
        self, job: store.Job, p: Pass | None, exc: Exception, records: list[Any]
    ) -> None:
        outcome = getattr(exc, "outcome", None) or "error"
        retryable = bool(getattr(exc, "retryable", False))
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            # A provider's Retry-After is honoured, within reason: an HTTP-date years away
            # (or a bogus header) must not stall analysis for good.
            retry_after = min(float(retry_after), MAX_RETRY_AFTER_S)
        if outcome == "not_configured":
            await self._bus.write(self._release_tx, job, records, self._clock())
            self._paused_until = time.monotonic() + 30.0
            return
        error = f"{outcome}: {exc.where}" if isinstance(exc, InvalidAnswer) else outcome
        if not isinstance(exc, InvalidAnswer) and not isinstance(exc, Unrunnable):
            error = f"{outcome}: {type(exc).__name__}"
        elif isinstance(exc, Unrunnable):
            error = str(exc)
        now_ns = self._clock()
        if retryable and job.attempts < job.max_attempts:
            delay = self._backoff_s(job.attempts, retry_after)
            if outcome == "rate_limited" and retry_after:
                self._paused_until = max(self._paused_until, time.monotonic() + float(retry_after))
            not_before = now_ns + int(delay * 1e9)
            await self._bus.write(self._retry_tx, job, records, exc, error, not_before, now_ns)
            self.counters["retried"] += 1
            self.wake()  # the dispatcher re-reads when the earliest backoff ends
            logger.info(
                "analysis_job_retry",
                job_id=job.id,
                outcome=outcome,
                attempt=job.attempts,
                retry_in_s=round(delay, 2),
            )
        else:
            await self._bus.write(self._dead_tx, job, records, exc, error, now_ns)
            self.counters["dead"] += 1
            logger.warning(
                "analysis_job_dead",
                job_id=job.id,
                pass_name=job.pass_name,
                outcome=outcome,
                attempts=job.attempts,
            )
