"""Analysis runs: the counters of a batch of jobs, kept in the same transaction as the job
outcomes they count."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from chatstats.analysis.store.base import _ids

# ---------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    kind: str
    status: str
    passes: list[str]
    total: int
    success: int
    failed: int
    created_ns: int
    finished_ns: int | None

    @property
    def pending(self) -> int:
        return max(0, self.total - self.success - self.failed)


_RUN_COLUMNS = "id, kind, status, passes, total, success, failed, created_ns, finished_ns"


def _run(row: Sequence[Any]) -> Run:
    return Run(
        id=row[0],
        kind=row[1],
        status=row[2],
        passes=msgspec.json.decode(row[3]),
        total=row[4],
        success=row[5],
        failed=row[6],
        created_ns=row[7],
        finished_ns=row[8],
    )


def insert_run(
    conn: sqlite3.Connection, run_id: str, kind: str, passes: list[str], now_ns: int
) -> None:
    conn.execute(
        "INSERT INTO analysis_runs (id, kind, status, passes, created_ns)"
        " VALUES (:id, :kind, 'running', :passes, :now)",
        {"id": run_id, "kind": kind, "passes": _ids(passes), "now": now_ns},
    )


def set_run_total(conn: sqlite3.Connection, run_id: str, total: int) -> None:
    conn.execute("UPDATE analysis_runs SET total = :t WHERE id = :id", {"t": total, "id": run_id})


def count_outcome(conn: sqlite3.Connection, run_id: str, *, success: int, failed: int) -> Run:
    row = conn.execute(
        "UPDATE analysis_runs SET success = success + :s, failed = max(0, failed + :f)"
        f" WHERE id = :id RETURNING {_RUN_COLUMNS}",
        {"s": success, "f": failed, "id": run_id},
    ).fetchone()
    return _run(row)


def set_run_status(
    conn: sqlite3.Connection, run_id: str, status: str, finished_ns: int | None
) -> None:
    conn.execute(
        "UPDATE analysis_runs SET status = :st, finished_ns = :fin WHERE id = :id",
        {"st": status, "fin": finished_ns, "id": run_id},
    )


def get_run(conn: sqlite3.Connection, run_id: str) -> Run | None:
    row = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM analysis_runs WHERE id = :id", {"id": run_id}
    ).fetchone()
    return None if row is None else _run(row)


def list_runs(conn: sqlite3.Connection, limit: int) -> list[Run]:
    return [
        _run(r)
        for r in conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM analysis_runs ORDER BY created_ns DESC, id LIMIT :lim",
            {"lim": limit},
        )
    ]


def run_running_count(conn: sqlite3.Connection, run_id: str) -> int:
    count: int = conn.execute(
        "SELECT count(*) FROM analysis_jobs WHERE run_id = :id AND state = 'running'",
        {"id": run_id},
    ).fetchone()[0]
    return count
