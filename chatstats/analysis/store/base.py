"""What every analysis table module shares: job states, the Job row, id lists as JSON."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

PENDING, RUNNING, DONE, DEAD = "pending", "running", "done", "dead"
LIVE_STATES = (PENDING, RUNNING)
TERMINAL_STATES = (DONE, DEAD)
STATES = (PENDING, RUNNING, DONE, DEAD)

# Jobs from runs and backfills wait behind those triggered by new and sealed conversations.
BULK_PRIORITY_OFFSET = 1000

_json = msgspec.json.Encoder()


def _ids(values: Iterable[Any]) -> str:
    return _json.encode(list(values)).decode()


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    run_id: str | None
    conversation_id: int
    chat_id: int
    pass_name: str
    pass_version: int
    priority: int
    state: str
    attempts: int
    max_attempts: int
    not_before_ns: int
    last_error: str | None
    created_ns: int
    updated_ns: int
    rerun: bool


_JOB_COLUMNS = (
    "id, run_id, conversation_id, chat_id, pass, pass_version, priority, state, attempts,"
    " max_attempts, not_before_ns, last_error, created_ns, updated_ns, rerun"
)


def _job(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0],
        run_id=row[1],
        conversation_id=row[2],
        chat_id=row[3],
        pass_name=row[4],
        pass_version=row[5],
        priority=row[6],
        state=row[7],
        attempts=row[8],
        max_attempts=row[9],
        not_before_ns=row[10],
        last_error=row[11],
        created_ns=row[12],
        updated_ns=row[13],
        rerun=bool(row[14]),
    )
