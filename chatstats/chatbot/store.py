"""The chatbot's tables (schema 0010): threads, messages, contexts, documents, workflows.

Plain functions over a connection, each meant to run inside the caller's transaction (the
writer's for writes). The chatbot never writes iMessage tables; it only checks that a chat
or contact a context names exists. Rows come back as plain dicts with `*_ns` times; the API
turns them into ISO strings.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

Context = dict[str, int]  # {"chat_id": n} or {"contact_id": n}

_MESSAGE_COLUMNS = (
    "id, thread_id, workflow_id, role, content, status, error_code, model, provider,"
    " prompt_tokens, completion_tokens, total_tokens, cost, response_time_ms, tool_calls,"
    " citations, created_ns"
)


# ---------------------------------------------------------------------------------------------
# Threads and contexts


def missing_context(conn: sqlite3.Connection, contexts: Iterable[Context]) -> str | None:
    """The first context naming no chat or contact of the library, as an error message."""
    for ctx in contexts:
        for key, table in (("chat_id", "chats"), ("contact_id", "contacts")):
            if key in ctx:
                # `table` is one of two constants above, never input.
                row = conn.execute(f"SELECT 1 FROM {table} WHERE id = :id", {"id": ctx[key]})
                if row.fetchone() is None:
                    return f"no {key.removesuffix('_id')} {ctx[key]}"
    return None


def create_thread(
    conn: sqlite3.Connection, title: str, contexts: list[Context], now_ns: int
) -> int:
    cur = conn.execute(
        "INSERT INTO threads (title, created_ns, updated_ns) VALUES (:title, :now, :now)",
        {"title": title, "now": now_ns},
    )
    thread_id = int(cur.lastrowid or 0)
    set_contexts(conn, thread_id, contexts, now_ns)
    return thread_id


def set_contexts(
    conn: sqlite3.Connection, thread_id: int, contexts: list[Context], now_ns: int
) -> None:
    """Replace the thread's contexts (duplicates collapse)."""
    conn.execute("DELETE FROM thread_contexts WHERE thread_id = :t", {"t": thread_id})
    conn.executemany(
        "INSERT OR IGNORE INTO thread_contexts (thread_id, chat_id, contact_id, created_ns)"
        " VALUES (:t, :chat_id, :contact_id, :now)",
        [
            {"t": thread_id, "chat_id": c.get("chat_id"), "contact_id": c.get("contact_id"),
             "now": now_ns}
            for c in contexts
        ],
    )  # fmt: skip


def update_thread(
    conn: sqlite3.Connection,
    thread_id: int,
    title: str | None,
    contexts: list[Context] | None,
    now_ns: int,
) -> bool:
    if not thread_exists(conn, thread_id):
        return False
    if title is not None:
        conn.execute(
            "UPDATE threads SET title = :title, updated_ns = :now WHERE id = :id",
            {"title": title, "now": now_ns, "id": thread_id},
        )
    if contexts is not None:
        set_contexts(conn, thread_id, contexts, now_ns)
        conn.execute(
            "UPDATE threads SET updated_ns = :now WHERE id = :id", {"now": now_ns, "id": thread_id}
        )
    return True


def thread_exists(conn: sqlite3.Connection, thread_id: int) -> bool:
    row = conn.execute("SELECT 1 FROM threads WHERE id = :id", {"id": thread_id}).fetchone()
    return row is not None


def contexts_of(conn: sqlite3.Connection, table: str, key: str, owner_id: int) -> list[Context]:
    # `table` and `key` are constants of this module's callers, never input.
    rows = conn.execute(
        f"SELECT chat_id, contact_id FROM {table} WHERE {key} = :id ORDER BY id", {"id": owner_id}
    ).fetchall()
    return [{"chat_id": r[0]} if r[0] is not None else {"contact_id": r[1]} for r in rows]


def thread(conn: sqlite3.Connection, thread_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT id, title, message_count, total_tokens, total_cost, created_ns, updated_ns"
        " FROM threads WHERE id = :id",
        {"id": thread_id},
    ).fetchone()
    if row is None:
        return None
    out = dict(row)
    out["contexts"] = contexts_of(conn, "thread_contexts", "thread_id", thread_id)
    return out


def threads(conn: sqlite3.Connection, limit: int, before_id: int | None) -> list[dict[str, Any]]:
    """Newest first, by id (stable under new messages, so `before_id` pages cleanly)."""
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM threads WHERE id < :before ORDER BY id DESC LIMIT :limit",
            {"before": before_id or 2**63 - 1, "limit": limit},
        )
    ]
    return [t for t in (thread(conn, i) for i in ids) if t is not None]


# ---------------------------------------------------------------------------------------------
# Messages and aggregates


def insert_message(
    conn: sqlite3.Connection,
    *,
    thread_id: int,
    workflow_id: str | None,
    role: str,
    content: str,
    now_ns: int,
    status: str = "complete",
    error_code: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    usage: dict[str, Any] | None = None,
    response_time_ms: float | None = None,
    tool_calls: int = 0,
    citations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Insert a message and move the thread's aggregates by exactly its own numbers."""
    u = usage or {}
    cur = conn.execute(
        "INSERT INTO thread_messages (thread_id, workflow_id, role, content, status, error_code,"
        " model, provider, prompt_tokens, completion_tokens, total_tokens, cost,"
        " response_time_ms, tool_calls, citations, created_ns) VALUES (:thread_id,"
        " :workflow_id, :role, :content, :status, :error_code, :model, :provider,"
        " :prompt_tokens, :completion_tokens, :total_tokens, :cost, :response_time_ms,"
        " :tool_calls, :citations, :now)",
        {
            "thread_id": thread_id,
            "workflow_id": workflow_id,
            "role": role,
            "content": content,
            "status": status,
            "error_code": error_code,
            "model": model,
            "provider": provider,
            "prompt_tokens": u.get("prompt_tokens"),
            "completion_tokens": u.get("completion_tokens"),
            "total_tokens": u.get("total_tokens"),
            "cost": u.get("cost"),
            "response_time_ms": response_time_ms,
            "tool_calls": tool_calls,
            "citations": json.dumps(citations or []),
            "now": now_ns,
        },
    )
    message_id = int(cur.lastrowid or 0)
    conn.execute(
        "UPDATE threads SET message_count = message_count + 1,"
        " total_tokens = total_tokens + coalesce(:tokens, 0),"
        " total_cost = total_cost + coalesce(:cost, 0.0), updated_ns = :now WHERE id = :id",
        {"tokens": u.get("total_tokens"), "cost": u.get("cost"), "now": now_ns, "id": thread_id},
    )
    found = message(conn, message_id)
    assert found is not None
    return found


def _message_row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["citations"] = json.loads(out["citations"] or "[]")
    return out


def message(conn: sqlite3.Connection, message_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM thread_messages WHERE id = :id", {"id": message_id}
    ).fetchone()
    return None if row is None else _message_row(row)


def messages(
    conn: sqlite3.Connection, thread_id: int, limit: int, after_id: int | None
) -> list[dict[str, Any]]:
    """Oldest first, like a transcript; `after_id` continues after a message."""
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM thread_messages WHERE thread_id = :t AND id > :after"
        " ORDER BY id LIMIT :limit",
        {"t": thread_id, "after": after_id or 0, "limit": limit},
    ).fetchall()
    return [_message_row(r) for r in rows]


def history(
    conn: sqlite3.Connection, thread_id: int, before_id: int, limit: int
) -> list[tuple[str, str]]:
    """(role, content) of the newest `limit` messages before `before_id`, oldest first;
    answers that failed without any text are left out (they told the model nothing)."""
    rows = conn.execute(
        "SELECT role, content FROM thread_messages WHERE thread_id = :t AND id < :before"
        " AND content != '' ORDER BY id DESC LIMIT :limit",
        {"t": thread_id, "before": before_id, "limit": limit},
    ).fetchall()
    return [(r[0], r[1]) for r in reversed(rows)]


def turn_usage(conn: sqlite3.Connection, workflow_id: str) -> dict[str, Any]:
    """Sums over the turn's recorded LLM calls: what its assistant message carries.

    `cost` is None when some call used tokens without a known price (the model has none),
    so a lower bound is never shown as the total.
    """
    row = conn.execute(
        "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
        " coalesce(sum(total_tokens), 0), coalesce(sum(cost), 0.0),"
        " coalesce(sum(cost IS NULL AND coalesce(total_tokens, 0) > 0), 0),"
        " max(provider) FROM llm_calls WHERE run_id = :w",
        {"w": workflow_id},
    ).fetchone()
    return {
        "calls": row[0],
        "prompt_tokens": row[1],
        "completion_tokens": row[2],
        "total_tokens": row[3],
        "cost": None if row[5] else float(row[4]),
        "provider": row[6],
    }


# ---------------------------------------------------------------------------------------------
# Workflows (one per turn)


def start_workflow(
    conn: sqlite3.Connection,
    workflow_id: str,
    thread_id: int,
    user_message_id: int,
    model: str | None,
    now_ns: int,
) -> None:
    conn.execute(
        "INSERT INTO thread_workflows (id, thread_id, user_message_id, status, model,"
        " started_ns) VALUES (:id, :t, :m, 'running', :model, :now)",
        {"id": workflow_id, "t": thread_id, "m": user_message_id, "model": model, "now": now_ns},
    )


def finish_workflow(
    conn: sqlite3.Connection,
    workflow_id: str,
    *,
    status: str,
    error_code: str | None,
    assistant_message_id: int,
    steps: int,
    tool_calls: int,
    usage: dict[str, Any],
    response_time_ms: float | None,
    now_ns: int,
) -> None:
    conn.execute(
        "UPDATE thread_workflows SET status = :status, error_code = :error_code,"
        " assistant_message_id = :mid, steps = :steps, llm_calls = :calls,"
        " tool_calls = :tool_calls, prompt_tokens = :prompt, completion_tokens = :completion,"
        " cost = :cost, response_time_ms = :ms, finished_ns = :now WHERE id = :id",
        {
            "status": status,
            "error_code": error_code,
            "mid": assistant_message_id,
            "steps": steps,
            "calls": usage["calls"],
            "tool_calls": tool_calls,
            "prompt": usage["prompt_tokens"],
            "completion": usage["completion_tokens"],
            "cost": usage["cost"],
            "ms": response_time_ms,
            "now": now_ns,
            "id": workflow_id,
        },
    )


def workflow(conn: sqlite3.Connection, workflow_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT * FROM thread_workflows WHERE id = :id", {"id": workflow_id}
    ).fetchone()
    return None if row is None else dict(row)


def running_workflows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM thread_workflows WHERE status = 'running' ORDER BY started_ns"
    ).fetchall()
    return [dict(r) for r in rows]


# ---------------------------------------------------------------------------------------------
# Documents


_DOCUMENT_COLUMNS = (
    "d.id, d.thread_id, d.workflow_id, d.title, d.content, d.created_ns,"
    " (SELECT count(*) FROM document_reads r WHERE r.document_id = d.id) AS read_count,"
    " (SELECT max(read_ns) FROM document_reads r WHERE r.document_id = d.id) AS last_read_ns"
)


def create_document(
    conn: sqlite3.Connection,
    thread_id: int,
    workflow_id: str | None,
    title: str,
    content: str,
    now_ns: int,
) -> int:
    """The document, and a snapshot of its thread's contexts as they are now."""
    cur = conn.execute(
        "INSERT INTO documents (thread_id, workflow_id, title, content, created_ns)"
        " VALUES (:t, :w, :title, :content, :now)",
        {"t": thread_id, "w": workflow_id, "title": title, "content": content, "now": now_ns},
    )
    document_id = int(cur.lastrowid or 0)
    conn.execute(
        "INSERT INTO document_contexts (document_id, chat_id, contact_id)"
        " SELECT :d, chat_id, contact_id FROM thread_contexts WHERE thread_id = :t ORDER BY id",
        {"d": document_id, "t": thread_id},
    )
    return document_id


def document(conn: sqlite3.Connection, document_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {_DOCUMENT_COLUMNS} FROM documents d WHERE d.id = :id", {"id": document_id}
    ).fetchone()
    if row is None:
        return None
    out = dict(row)
    out["contexts"] = contexts_of(conn, "document_contexts", "document_id", document_id)
    return out


def documents(
    conn: sqlite3.Connection, limit: int, before_id: int | None, thread_id: int | None
) -> list[dict[str, Any]]:
    """Newest first, without their content (a list; the content is one GET away)."""
    rows = conn.execute(
        f"SELECT {_DOCUMENT_COLUMNS} FROM documents d WHERE d.id < :before"
        " AND (:t IS NULL OR d.thread_id = :t) ORDER BY d.id DESC LIMIT :limit",
        {"before": before_id or 2**63 - 1, "t": thread_id, "limit": limit},
    ).fetchall()
    out = []
    for row in rows:
        item = dict(row)
        del item["content"]
        item["contexts"] = contexts_of(conn, "document_contexts", "document_id", item["id"])
        out.append(item)
    return out


def read_document(conn: sqlite3.Connection, document_id: int, now_ns: int) -> bool:
    if conn.execute("SELECT 1 FROM documents WHERE id = :id", {"id": document_id}).fetchone():
        conn.execute(
            "INSERT INTO document_reads (document_id, read_ns) VALUES (:d, :now)",
            {"d": document_id, "now": now_ns},
        )
        return True
    return False
