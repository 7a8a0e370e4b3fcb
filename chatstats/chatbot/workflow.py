"""The durable side of a turn: the transactions that write its rows and its events.

Each function runs inside one write transaction on the writer connection, so what it
writes commits together: the user's message with the workflow row and `workflow_started`;
an LLM call's accounting row with `model_response`; a tool call's `tool_called`; and the
assistant message (usage summed in SQL over the turn's `llm_calls`), the thread's
aggregates, the finished workflow row and `workflow_completed` or `workflow_failed`.
Events carry ids, counts, codes and times only.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from chatstats import llm
from chatstats.chatbot import store
from chatstats.events import catalogue
from chatstats.events.bus import append

# The turn's events are catalogued payloads (chatstats.events.catalogue), on scope
# `thread:{id}` with run_id = the workflow id.


def start_tx(
    conn: sqlite3.Connection,
    workflow_id: str,
    thread_id: int,
    content: str,
    model: str | None,
) -> dict[str, Any] | None:
    if not store.thread_exists(conn, thread_id):
        return None
    now = time.time_ns()
    user = store.insert_message(
        conn,
        thread_id=thread_id,
        workflow_id=workflow_id,
        role="user",
        content=content,
        now_ns=now,
    )
    store.start_workflow(conn, workflow_id, thread_id, user["id"], model, now)
    append(
        conn,
        catalogue.WorkflowStarted(
            thread_id=thread_id, workflow_id=workflow_id, user_message_id=user["id"], model=model
        ),
        scope=f"thread:{thread_id}",
        run_id=workflow_id,
    )
    return user


def record_tx(conn: sqlite3.Connection, rec: llm.CallRecord, thread_id: int, workflow_id: str,
    step: int,
) -> int:  # fmt: skip
    call_id = llm.record_call(conn, rec)
    append(
        conn,
        catalogue.ModelResponse(
            thread_id=thread_id,
            workflow_id=workflow_id,
            step=step,
            call_id=call_id,
            outcome=rec.outcome,
            prompt_tokens=rec.prompt_tokens,
            completion_tokens=rec.completion_tokens,
            total_tokens=rec.total_tokens,
            cost=rec.cost,
            latency_ms=rec.latency_ms,
        ),
        scope=f"thread:{thread_id}",
        run_id=workflow_id,
    )
    return call_id


def tool_tx(
    conn: sqlite3.Connection,
    thread_id: int,
    workflow_id: str,
    step: int,
    name: str,
    count: int,
    error: str | None,
    ms: float,
) -> None:
    append(
        conn,
        catalogue.ToolCalled(
            thread_id=thread_id,
            workflow_id=workflow_id,
            step=step,
            tool=name,
            count=count,
            error=error,
            ms=ms,
        ),
        scope=f"thread:{thread_id}",
        run_id=workflow_id,
    )


def finish_tx(
    conn: sqlite3.Connection,
    workflow_id: str,
    thread_id: int,
    content: str,
    status: str,
    error_code: str | None,
    model: str | None,
    steps: int,
    tool_calls: int,
    citations: list[dict[str, Any]],
    response_time_ms: float | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The assistant message with the turn's summed usage, the aggregates, the workflow
    row and its closing event: one transaction, so none can exist without the others."""
    now = time.time_ns()
    usage = store.turn_usage(conn, workflow_id)
    msg = store.insert_message(
        conn,
        thread_id=thread_id,
        workflow_id=workflow_id,
        role="assistant",
        content=content,
        now_ns=now,
        status=status,
        error_code=error_code,
        model=model,
        provider=usage["provider"],
        usage=usage,
        response_time_ms=response_time_ms,
        tool_calls=tool_calls,
        citations=citations,
    )
    final = "completed" if status == "complete" else "failed"
    store.finish_workflow(
        conn,
        workflow_id,
        status=final,
        error_code=error_code,
        assistant_message_id=msg["id"],
        steps=steps,
        tool_calls=tool_calls,
        usage=usage,
        response_time_ms=response_time_ms,
        now_ns=now,
    )
    sums: dict[str, Any] = {
        "thread_id": thread_id,
        "workflow_id": workflow_id,
        "message_id": msg["id"],
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
        "cost": usage["cost"],
        "response_time_ms": response_time_ms,
        "steps": steps,
        "llm_calls": usage["calls"],
        "tool_calls": tool_calls,
    }
    end: catalogue.Payload
    if final == "completed":
        end = catalogue.WorkflowCompleted(**sums)
    else:
        end = catalogue.WorkflowFailed(**sums, error_code=error_code, partial=status == "partial")
    append(conn, end, scope=f"thread:{thread_id}", run_id=workflow_id)
    return msg, usage


# -- tools --------------------------------------------------------------------------------
