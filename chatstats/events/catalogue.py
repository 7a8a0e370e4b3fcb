"""Every event the daemon puts on its log, as one typed catalogue.

Why typed: events are a public surface (SSE clients, the web page, the CLI's `events`
command read them) and a dict built at each call site drifted: `analysis_completed` went out
in two shapes from two places. Each payload here is a tagged msgspec Struct; the tag is the
event's `type` column, the other fields are its `data`. Emitters build a Struct, so a missing
or misspelt field is a type error (mypy) or a validation error (at append), never a silent
new shape.

Compatibility: events already stored decode with the defaults of fields added later, and
`decode` returns None for a type the catalogue does not know (the log itself stays generic:
tests and future producers may append other types), so reading old logs never fails.

Payloads hold ids, counts, statuses and error classes: never message text or names.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class Payload(msgspec.Struct, kw_only=True, tag_field="type"):
    """Base of every catalogued event payload."""


# -- ingest and live sync ----------------------------------------------------------------------


class MessagesSynced(Payload, tag="messages_synced"):
    chat_id: int
    new_message_ids: list[int] = []
    changed_message_ids: list[int] = []
    conversation_ids: list[int] = []


class ConversationReopened(Payload, tag="conversation_reopened"):
    chat_id: int
    conversation_id: int
    last_message_time: str | None = None
    message_count: int = 0


class ConversationRemoved(Payload, tag="conversation_removed"):
    """Older messages arrived and merged this conversation into another (a fresh split):
    its id is never reused; what was analysed under it goes, `merged_into` is re-analysed."""

    chat_id: int
    conversation_id: int
    merged_into: int | None = None


class ConversationSealed(Payload, tag="conversation_sealed"):
    chat_id: int
    conversation_id: int
    last_message_time: str | None = None
    message_count: int = 0


class ConversationReady(Payload, tag="conversation_ready_for_analysis"):
    chat_id: int
    conversation_id: int
    start_time: str | None = None
    end_time: str | None = None
    message_count: int = 0


# -- analysis runs -----------------------------------------------------------------------------


class RunStarting(Payload, tag="run_starting"):
    run_id: str
    kind: str
    passes: list[str] = []
    message: str = "queueing analysis"
    percentage: float = 0
    status: str = "starting"
    running: bool = True


class RunSeeded(Payload, tag="run_seeded"):
    run_id: str
    total: int
    pending: int
    per_pass: dict[str, int] = {}
    percentage: float = 0


class Timings(msgspec.Struct, kw_only=True):
    latency_ms: float | None = None


class AnalysisCompleted(Payload, tag="analysis_completed"):
    """One job finished (or died). The same shape on the chat's scope, once per job, and on
    the run's scope (throttled), where the run's counters say how far the run has got; the
    counters are null for a job outside any run."""

    chat_id: int | None = None
    conversation_id: int | None = None
    pass_: str | None = msgspec.field(default=None, name="pass")
    pass_version: int | None = None
    status: Literal["success", "failed"] = "success"
    analysis_id: int | None = None
    run_id: str | None = None
    total: int | None = None
    success: int | None = None
    failed: int | None = None
    pending: int | None = None
    processing: int | None = None
    percentage: float | None = None
    timings: Timings | None = None


class RunComplete(Payload, tag="run_complete"):
    run_id: str
    total: int
    success: int
    failed: int
    percentage: float = 100
    is_complete: bool = True


class CommitmentsUpdated(Payload, tag="commitments_updated"):
    chat_id: int
    conversation_id: int
    analysis_id: int
    pass_: str = msgspec.field(name="pass")
    count: int = 0
    open: int = 0


# -- one analysis job's lifecycle (scope task:{id}) --------------------------------------------


class _Task(Payload):
    task_id: int
    conversation_id: int
    chat_id: int
    pass_: str = msgspec.field(name="pass")


class TaskStatus(_Task, tag="status"):
    status: str
    attempt: int | None = None
    retried: bool | None = None
    error: str | None = None


class TaskProgress(_Task, tag="progress"):
    progress: float
    status: str
    message: str | None = None


class TaskCompleted(_Task, tag="completed"):
    message: str = "analysis stored"
    result: dict[str, Any] = {}


class TaskRetry(_Task, tag="retry"):
    error: str
    retry_count: int
    max_retries: int
    retry_in_s: float


class TaskFailed(_Task, tag="failed"):
    error: str
    permanent: bool = True
    attempts: int = 0


# -- the vector index --------------------------------------------------------------------------


class _IndexState(Payload):
    model: str
    dim: int
    items: int = 0
    pending: int = 0
    building: bool = False
    progress: float = 0
    built_at: int | None = None  # unix seconds


class IndexProgress(_IndexState, tag="index_progress"):
    pass


class IndexReady(_IndexState, tag="index_ready"):
    pass


# -- chatbot turns (scope thread:{id}, run_id = workflow id) -----------------------------------


class _Workflow(Payload):
    thread_id: int
    workflow_id: str


class WorkflowStarted(_Workflow, tag="workflow_started"):
    """A turn began: its user message is stored."""

    user_message_id: int
    model: str | None = None


class ModelResponse(_Workflow, tag="model_response"):
    """One LLM call of the turn ended, with its accounting (`outcome` as in llm_calls)."""

    step: int
    outcome: str
    call_id: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None
    latency_ms: float | None = None


class ToolCalled(_Workflow, tag="tool_called"):
    """One tool call ran; `error` is the stream's `tool_result` error code, or null."""

    step: int
    tool: str
    count: int = 0
    error: str | None = None
    ms: float = 0


class _WorkflowEnd(_Workflow):
    """Sums over the turn's recorded LLM calls, as its assistant message carries them."""

    message_id: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None  # null when a call used tokens without a known price
    response_time_ms: float | None = None  # null for a turn a crash cut (closed at restart)
    steps: int = 0
    llm_calls: int = 0
    tool_calls: int = 0


class WorkflowCompleted(_WorkflowEnd, tag="workflow_completed"):
    pass


class WorkflowFailed(_WorkflowEnd, tag="workflow_failed"):
    error_code: str | None = None
    partial: bool = False


EventPayload = (
    MessagesSynced
    | ConversationReopened
    | ConversationRemoved
    | ConversationSealed
    | ConversationReady
    | RunStarting
    | RunSeeded
    | AnalysisCompleted
    | RunComplete
    | CommitmentsUpdated
    | TaskStatus
    | TaskProgress
    | TaskCompleted
    | TaskRetry
    | TaskFailed
    | IndexProgress
    | IndexReady
    | WorkflowStarted
    | ModelResponse
    | ToolCalled
    | WorkflowCompleted
    | WorkflowFailed
)

CATALOGUE: dict[str, type[Payload]] = {
    cls.__struct_config__.tag: cls for cls in EventPayload.__args__
}


def type_of(payload: Payload) -> str:
    tag = payload.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def data_of(payload: Payload) -> dict[str, Any]:
    """The payload's fields as stored in the log's `data` column (the tag is the type column)."""
    data: dict[str, Any] = msgspec.to_builtins(payload)
    data.pop("type", None)
    return data


def check(type: str, data: Any) -> dict[str, Any]:
    """`data` in its catalogued shape for a known `type` (defaults filled in); a shape that
    does not fit raises ValueError naming the field, never a silent new shape. Types the
    catalogue does not know pass through unchanged."""
    cls = CATALOGUE.get(type)
    if cls is None:
        return dict(data)
    try:
        payload = msgspec.convert({**data, "type": type}, EventPayload)
    except msgspec.ValidationError as exc:
        raise ValueError(f"event {type!r} does not fit its catalogued shape: {exc}") from None
    return data_of(payload)


def decode(type: str, data: dict[str, Any]) -> EventPayload | None:
    """The typed payload of a stored event; None for a type outside the catalogue or a row
    that no longer fits (an old log is read, never rejected)."""
    if type not in CATALOGUE:
        return None
    try:
        payload: EventPayload = msgspec.convert({**data, "type": type}, EventPayload)
    except msgspec.ValidationError:
        return None
    return payload
