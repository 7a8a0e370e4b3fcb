"""Coverage: which conversations have (or lack) a current analysis of each pass."""

from __future__ import annotations

import sqlite3

from chatstats.analysis.store.base import DEAD, PENDING, RUNNING, STATES
from chatstats.analysis.store.jobs import PassRef

# ---------------------------------------------------------------------------------------------
# Coverage


def coverage(conn: sqlite3.Connection, p: PassRef, chat_id: int | None) -> dict[str, int]:
    """For one pass: conversations it applies to, how many have its current result (a stale
    one, left from before a reopen, is not current), and the state of the jobs of those
    that do not."""
    sealed = 1 if p.trigger == "sealed" else 0
    chat_clause = "" if chat_id is None else " AND c.chat_id = :chat"
    params = {"sealed": sealed, "pass": p.name, "ver": p.version, "chat": chat_id}
    eligible = conn.execute(
        f"SELECT count(*) FROM conversations c WHERE c.sealed = :sealed{chat_clause}", params
    ).fetchone()[0]
    analysed, stale = conn.execute(
        "SELECT count(*) FILTER (WHERE NOT a.stale), count(*) FILTER (WHERE a.stale)"
        " FROM analyses a JOIN conversations c ON c.id = a.conversation_id"
        f" WHERE a.pass = :pass AND a.pass_version = :ver AND c.sealed = :sealed{chat_clause}",
        params,
    ).fetchone()
    jobs = dict.fromkeys(STATES, 0)
    for state, n in conn.execute(
        "SELECT j.state, count(DISTINCT j.conversation_id) FROM analysis_jobs j"
        " JOIN conversations c ON c.id = j.conversation_id"
        f" WHERE j.pass = :pass AND j.pass_version = :ver AND c.sealed = :sealed{chat_clause}"
        " AND j.state IN ('pending', 'running', 'dead')"
        " AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.conversation_id = j.conversation_id"
        "  AND a.pass = j.pass AND a.pass_version = j.pass_version AND a.stale = 0)"
        " GROUP BY j.state",
        params,
    ):
        jobs[state] = n
    older = conn.execute(
        "SELECT count(DISTINCT a.conversation_id) FROM analyses a"
        " JOIN conversations c ON c.id = a.conversation_id"
        f" WHERE a.pass = :pass AND a.pass_version < :ver AND c.sealed = :sealed{chat_clause}"
        " AND NOT EXISTS (SELECT 1 FROM analyses b WHERE b.conversation_id = a.conversation_id"
        "  AND b.pass = a.pass AND b.pass_version = :ver)",
        params,
    ).fetchone()[0]
    return {
        "conversations": eligible,
        "analysed": analysed,
        "missing": max(0, eligible - analysed),
        "stale": stale,
        "queued": jobs[PENDING] + jobs[RUNNING],
        "dead": jobs[DEAD],
        "older_version_only": older,
    }


def missing(
    conn: sqlite3.Connection, p: PassRef, chat_id: int | None, limit: int
) -> list[sqlite3.Row]:
    """Conversations the pass applies to that lack its current result (or have a stale one),
    newest first, with the state of their newest job for it (None: never queued)."""
    chat_clause = "" if chat_id is None else " AND c.chat_id = :chat"
    return conn.execute(
        "SELECT c.id, c.chat_id, c.start_ns, c.end_ns, c.message_count,"
        " (SELECT j.state FROM analysis_jobs j WHERE j.conversation_id = c.id"
        "  AND j.pass = :pass AND j.pass_version = :ver ORDER BY j.id DESC LIMIT 1) AS job_state"
        f" FROM conversations c WHERE c.sealed = :sealed{chat_clause}"
        " AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.conversation_id = c.id"
        "  AND a.pass = :pass AND a.pass_version = :ver AND a.stale = 0)"
        " ORDER BY c.start_ns DESC, c.id DESC LIMIT :lim",
        {
            "sealed": 1 if p.trigger == "sealed" else 0,
            "pass": p.name,
            "ver": p.version,
            "chat": chat_id,
            "lim": limit,
        },
    ).fetchall()
