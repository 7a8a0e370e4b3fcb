"""SQL of the analysis domain: jobs, runs, results, commitments, coverage, the consumer cursor.

Every function takes a connection and runs inside the caller's transaction, so the engine
can put a job's completion, its result, its usage record and its events in one commit. Lists
of ids are bound as one JSON array and expanded with `json_each`: constant statements.

Job states: `pending` (waiting, perhaps until `not_before_ns`), `running` (claimed by a
worker), `done`, `dead` (out of attempts or not retryable; listed and retryable by hand).
`pending` and `running` are the live states; at most one live job exists per conversation,
pass and version (a partial unique index), so enqueueing twice is harmless.
"""

# One module per table group; callers keep writing `store.enqueue(...)`, `store.get_run(...)`.
from chatstats.analysis.store.base import *  # noqa: F403
from chatstats.analysis.store.coverage import *  # noqa: F403
from chatstats.analysis.store.cursor import *  # noqa: F403
from chatstats.analysis.store.jobs import *  # noqa: F403
from chatstats.analysis.store.results import *  # noqa: F403
from chatstats.analysis.store.runs import *  # noqa: F403
