"""The analysis queue: durable job rows, an in-memory dispatcher, N workers, two stages.

Replaces Celery and Redis. A job is a row of `analysis_jobs`; the bounded
`asyncio.PriorityQueue` only holds the ids of the next few due jobs, refilled from the table a
page at a time (periodically, when workers run it low, and at once when code in this process
enqueues). So memory stays flat however many jobs are pending, and a crash loses nothing: the
table is the queue.

A worker takes an id and claims the job with one `UPDATE … WHERE state = 'pending' RETURNING`
(a job is never run twice at once). Then the seeds' two stages:

1. call the model, holding no database connection or transaction, under a limit on LLM
   calls in flight (workers outnumber that limit, so claiming and persisting overlap calls);
2. in one write transaction: the call's accounting record, the result (an upsert on
   conversation, pass and version, so a replayed job never stores a result twice), the job's
   completion, the run's counters and the events.

A failed attempt's accounting record is written in the transaction that schedules its retry
or marks the job dead, so no usage is ever dropped. Retries back off exponentially with
jitter and honour Retry-After (which also pauses new calls, since the provider asked every
caller to wait). Jobs left `running` by a crash go back to `pending` at startup.

Shutdown is two-phase: stop dispatching, give calls in flight a grace period, then cancel;
a cancelled job is handed back (its attempt refunded) before the task ends.

The package keeps those concerns apart: `engine` schedules (dispatcher, workers, shutdown),
`attempt` is stage 1 (the call), `retry` the retry policy, `persistence` the write
transactions, `errors` what a failed attempt is, and `state` the engine's settings.
"""

from chatstats.analysis.queue.engine import Engine
from chatstats.analysis.queue.errors import InvalidAnswer
from chatstats.analysis.queue.retry import MAX_RETRY_AFTER_S
from chatstats.analysis.queue.state import LIVE_DEBOUNCE_SECONDS

__all__ = ["LIVE_DEBOUNCE_SECONDS", "MAX_RETRY_AFTER_S", "Engine", "InvalidAnswer"]
