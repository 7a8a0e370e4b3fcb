"""Analysis results and the commitments extracted from them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from chatstats.analysis.store.base import Job, _ids

# ---------------------------------------------------------------------------------------------
# Results


def upsert_analysis(
    conn: sqlite3.Connection,
    job: Job,
    result_json: str,
    *,
    model: str | None,
    llm_call_id: int | None,
    now_ns: int,
    sealed_pass: bool = False,
) -> int:
    """Store the result: one row per conversation, pass and version, replaced in place (so
    its id, which commitments point at, stays the same).

    A new result is current, except a sealed pass's stored while its conversation is open:
    a late message reopened it while the call ran, so the result is stale at once and the
    pass runs again after the next seal."""
    row = conn.execute(
        "INSERT INTO analyses (conversation_id, chat_id, pass, pass_version, result, model,"
        " llm_call_id, job_id, run_id, created_ns, stale)"
        " VALUES (:cid, :chat, :pass, :ver, :result, :model, :call, :job, :run, :now,"
        "  :sealed_pass AND EXISTS (SELECT 1 FROM conversations WHERE id = :cid AND sealed = 0))"
        " ON CONFLICT (conversation_id, pass, pass_version) DO UPDATE SET"
        " chat_id = excluded.chat_id, result = excluded.result, model = excluded.model,"
        " llm_call_id = excluded.llm_call_id, job_id = excluded.job_id,"
        " run_id = excluded.run_id, created_ns = excluded.created_ns, stale = excluded.stale"
        " RETURNING id",
        {
            "cid": job.conversation_id,
            "chat": job.chat_id,
            "pass": job.pass_name,
            "ver": job.pass_version,
            "result": result_json,
            "model": model,
            "call": llm_call_id,
            "job": job.id,
            "run": job.run_id,
            "now": now_ns,
            "sealed_pass": int(sealed_pass),
        },
    ).fetchone()
    result_id: int = row[0]
    return result_id


def mark_stale(conn: sqlite3.Connection, conversation_id: int) -> int:
    """The conversation was reopened: every result it has describes fewer messages than it
    now has. Returns how many results were marked."""
    return conn.execute(
        "UPDATE analyses SET stale = 1 WHERE conversation_id = :cid AND stale = 0",
        {"cid": conversation_id},
    ).rowcount


def has_analysis(
    conn: sqlite3.Connection, conversation_id: int, passes: Iterable[tuple[str, int]]
) -> bool:
    """Whether any of these (pass, version) has a result for the conversation."""
    for name, version in passes:
        row = conn.execute(
            "SELECT 1 FROM analyses WHERE conversation_id = :cid AND pass = :p"
            " AND pass_version = :v",
            {"cid": conversation_id, "p": name, "v": version},
        ).fetchone()
        if row is not None:
            return True
    return False


def replace_commitments(
    conn: sqlite3.Connection,
    analysis_id: int,
    job: Job,
    items: Iterable[dict[str, Any]],
    now_ns: int,
) -> int:
    """The conversation's commitments become this result's."""
    conn.execute(
        "DELETE FROM commitments WHERE conversation_id = :cid", {"cid": job.conversation_id}
    )
    rows = [
        {
            "aid": analysis_id,
            "cid": job.conversation_id,
            "chat": job.chat_id,
            "kind": c["kind"],
            "who": c.get("who"),
            "what": c["what"],
            "due": c.get("due"),
            "status": c.get("status") or "unknown",
            "now": now_ns,
        }
        for c in items
    ]
    conn.executemany(
        "INSERT INTO commitments (analysis_id, conversation_id, chat_id, kind, who, what, due,"
        " status, created_ns) VALUES (:aid, :cid, :chat, :kind, :who, :what, :due, :status, :now)",
        rows,
    )
    return len(rows)


def conversation_analyses(conn: sqlite3.Connection, conversation_id: int) -> list[sqlite3.Row]:
    """Results with the usage of the call that made each one."""
    return conn.execute(
        "SELECT a.id, a.pass, a.pass_version, a.result, a.model, a.created_ns,"
        " l.prompt_tokens, l.completion_tokens, l.cost, a.job_id, a.run_id, a.stale"
        " FROM analyses a LEFT JOIN llm_calls l ON l.id = a.llm_call_id"
        " WHERE a.conversation_id = :cid ORDER BY a.pass, a.pass_version DESC",
        {"cid": conversation_id},
    ).fetchall()


def list_commitments(
    conn: sqlite3.Connection,
    *,
    chat_id: int | None,
    status: str | None,
    limit: int,
    before_id: int | None,
) -> list[sqlite3.Row]:
    """Newest first."""
    sql = (
        "SELECT m.id, m.analysis_id, m.conversation_id, m.chat_id, m.kind, m.who, m.what,"
        " m.due, m.status, m.created_ns, a.pass FROM commitments m"
        " JOIN analyses a ON a.id = m.analysis_id WHERE m.id < :before"
    )
    if chat_id is not None:
        sql += " AND m.chat_id = :chat"
    if status is not None:
        sql += " AND m.status = :status"
    sql += " ORDER BY m.id DESC LIMIT :lim"
    return conn.execute(
        sql,
        {"before": before_id or 2**63 - 1, "chat": chat_id, "status": status, "lim": limit},
    ).fetchall()


def conversation_exists(conn: sqlite3.Connection, conversation_id: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM conversations WHERE id = :id", {"id": conversation_id}
    ).fetchone()
    return row is not None


def chat_exists(conn: sqlite3.Connection, chat_id: int) -> bool:
    return (
        conn.execute("SELECT 1 FROM chats WHERE id = :id", {"id": chat_id}).fetchone() is not None
    )


def open_conversations_of_messages(
    conn: sqlite3.Connection, message_ids: Iterable[int]
) -> list[tuple[int, int]]:
    """(conversation_id, chat_id) of the still-open conversations holding these messages."""
    return conn.execute(
        "SELECT DISTINCT c.id, c.chat_id FROM messages m JOIN conversations c"
        " ON c.id = m.conversation_id"
        " WHERE m.id IN (SELECT value FROM json_each(:ids)) AND c.sealed = 0",
        {"ids": _ids(message_ids)},
    ).fetchall()


def conversation_chat(conn: sqlite3.Connection, conversation_id: int) -> int | None:
    row = conn.execute(
        "SELECT chat_id FROM conversations WHERE id = :id", {"id": conversation_id}
    ).fetchone()
    return None if row is None else row[0]
