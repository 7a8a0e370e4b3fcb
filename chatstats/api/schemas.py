"""The wire shapes of every route, as msgspec types: what `/openapi.json` is generated from.

The route modules build their answers as dicts (they predate this file and are edited by
several hands at once), so these Structs describe the answers rather than produce them. The
tests keep the two honest: every route's real answer on the sample library is validated
against the schema generated from here, and a property-based run against the daemon checks
every status and body it sends. Answer Structs forbid unknown fields (`additionalProperties:
false`), so a field added to an answer without being added here fails those tests instead of
going undocumented. Open-ended values (an analysis pass's result, an event's data, a metric's
gauge) are typed `Any` on purpose.

`OPERATIONS` maps (method, Starlette path) to one `Op`: adding a route's description is one
entry there; the coverage test fails for any route of the router without one (and for an
entry whose route is gone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta

from chatstats.api.common import STATIC_FILES, BackfillRequest, PreviewBody, RunRequest

MAX_ID = 2**63 - 1

Id = Annotated[int, Meta(ge=1, le=MAX_ID, description="a row id")]
Limit = Annotated[int, Meta(ge=1, le=500, description="items per page (default 50)")]
Time = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
# A date-time or a date alone: the routes read ISO 8601 as Python does, which also takes a
# date without a time (and a few forms RFC 3339 lacks, such as a space for the T).
QueryTime = Annotated[
    str,
    Meta(
        extra_json_schema={"anyOf": [{"format": "date-time"}, {"format": "date"}]},
        description="an ISO 8601 time, e.g. 2024-01-31T12:00:00Z (without an offset: UTC)",
    ),
]
Day = Annotated[str, Meta(extra_json_schema={"format": "date"})]


class Wire(msgspec.Struct, forbid_unknown_fields=True):
    """Base of the answer shapes: every field is required unless it has a default."""


# ---------------------------------------------------------------------------------------------
# Errors


class ErrorDetail(Wire):
    code: str
    message: str


class Error(Wire):
    """Every 4xx/5xx answer. `message` is for people; `code` is for programs."""

    error: ErrorDetail


# ---------------------------------------------------------------------------------------------
# iMessage data


class Person(Wire):
    """Who sent or is in a chat: a contact (`contact_id`, `name`) or just a handle."""

    contact_id: int | None
    name: str | None
    identifier: str | None


class Chat(Wire):
    id: int
    guid: str
    title: str
    is_group: bool
    service: str | None
    participants: list[Person]
    message_count: int
    last_message_time: Time | None


class Reaction(Wire):
    """A tapback standing on a message (tapbacks are not messages)."""

    type: str
    emoji: str | None
    is_from_me: bool
    sender: Person | None


class Attachment(Wire):
    filename: str | None
    transfer_name: str | None
    mime_type: str | None
    total_bytes: int


class Message(Wire):
    """A message as the chat messages route serves it; `kind` is `message` or a system event."""

    id: int
    guid: str
    chat_id: int | None
    conversation_id: int | None
    text: str | None
    timestamp: Time
    is_from_me: bool
    sender: Person | None
    reply_to_guid: str | None
    edited: bool
    unsent: bool
    kind: str
    group_title: str | None
    reactions: list[Reaction]
    attachments: list[Attachment]


class SearchHit(Message):
    """A search result: `score` and `matched` come with `mode=semantic` and `mode=hybrid`."""

    score: float | None = None
    matched: list[Literal["text", "semantic"]] | None = None


class Contact(Wire):
    id: int
    name: str | None
    identifiers: list[str]
    message_count: int
    last_message_time: Time | None


class Conversation(Wire):
    """A run of messages by the 90-minute rule; `sealed` once 90 minutes have passed."""

    id: int
    chat_id: int
    start_time: Time
    end_time: Time
    message_count: int
    sealed: bool


class Counts(Wire):
    chats: int
    messages: int
    contacts: int
    conversations: int


class ImportStatus(Wire):
    state: Literal["idle", "running", "complete", "failed"]
    phase: str | None
    done: int
    total: int
    error: str | None
    last_summary: dict[str, Any] | None


class TailStatus(Wire):
    """The live tail of chat.db."""

    state: str
    error: str | None
    watcher: bool
    batches: int
    messages: int
    changed: int
    last_sync_ns: int | None


class SealerStatus(Wire):
    next_due_time: Time | None
    rounds: int
    sealed: int


class JobCounts(Wire):
    pending: int
    running: int
    done: int
    dead: int


class HealthAnalysis(Wire):
    state: str
    message: str | None
    model: str | None
    jobs: JobCounts
    in_flight: int
    pass_errors: list[str]


class Health(Wire, rename={"import_": "import"}):
    """Readiness and progress; the one route that needs no token."""

    status: Literal["ok"]
    version: str
    pid: int
    uptime_s: float
    import_: ImportStatus
    live: TailStatus | None
    sealer: SealerStatus | None
    analysis: HealthAnalysis | None
    counts: Counts


class EmbeddingUsage(Wire):
    """What the index model's embedding calls cost so far (every call, build, live updates
    and search queries, as rows of the LLM call accounting); `cost` in USD, null when the
    calls used tokens and the model has no price (the bundled model costs 0)."""

    calls: int
    prompt_tokens: int
    cost: float | None
    latency_ms: float
    failed_calls: int


class IndexStatus(Wire):
    """The vector index behind `mode=semantic` and `mode=hybrid`; `built_at` in epoch seconds."""

    model: str | None
    dim: int
    items: int
    pending: int
    building: bool
    progress: float
    built_at: int | None
    usage: EmbeddingUsage


# ---------------------------------------------------------------------------------------------
# Analysis


class Pass(Wire):
    name: str
    version: int
    category: str
    priority: int
    trigger: Literal["live", "sealed"]
    enabled: bool
    description: str | None
    stores: str | None
    file: str | None


class EngineCounters(Wire):
    completed: int
    retried: int
    dead: int
    calls: int
    recovered: int


class AnalysisStatus(Wire):
    state: str
    message: str | None
    model: str | None
    jobs: JobCounts
    queued_in_memory: int
    in_flight: int
    workers: int
    concurrency: int
    counters: EngineCounters
    consumer_cursor: int | None
    passes: int
    pass_errors: list[str]


class RunStarted(Wire):
    run_id: str
    kind: str
    status: Literal["running", "complete"]
    passes: list[str]
    total: int
    success: int
    failed: int
    pending: int
    percentage: float
    created_at: Time | None
    finished_at: Time | None


class RunUsage(Wire):
    """Sums over the run's LLM calls; `cost` is null when no call was priced."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None
    calls: int
    failed_calls: int
    unpriced_calls: int


class Run(RunStarted):
    usage: RunUsage


class PassCoverage(Wire, rename={"pass_": "pass"}):
    pass_: str
    version: int
    trigger: Literal["live", "sealed"]
    enabled: bool
    conversations: int
    analysed: int
    missing: int
    stale: int
    queued: int
    dead: int
    older_version_only: int
    percentage: float


class Coverage(Wire):
    chat_id: int | None
    passes: list[PassCoverage]
    jobs: JobCounts


class MissingConversation(Wire):
    conversation_id: int
    chat_id: int
    start_time: Time
    end_time: Time
    message_count: int
    job_state: str | None


class PassMissing(Wire, rename={"pass_": "pass"}):
    pass_: str
    version: int
    missing: int
    conversations: list[MissingConversation]


class Backfill(Wire):
    """What was (or, with `dry_run`, would be) queued; `run_id` is null when nothing was."""

    dry_run: bool
    passes: dict[str, int]
    total: int
    run_id: str | None


class AnalysisUsage(Wire):
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None


class Analysis(Wire, rename={"pass_": "pass"}):
    """One pass's result on a conversation; `result` follows the pass's own JSON schema."""

    id: int
    pass_: str
    pass_version: int
    result: Any
    model: str | None
    usage: AnalysisUsage
    created_at: Time | None
    job_id: int | None
    run_id: str | None
    stale: bool


class Commitment(Wire, rename={"pass_": "pass"}):
    id: int
    chat_id: int
    conversation_id: int
    analysis_id: int
    pass_: str
    kind: str
    who: str | None
    what: str
    due: str | None
    status: str
    created_at: Time | None


class Job(Wire, rename={"pass_": "pass"}):
    id: int
    run_id: str | None
    conversation_id: int
    chat_id: int
    pass_: str
    pass_version: int
    priority: int
    state: Literal["pending", "running", "done", "dead"]
    attempts: int
    max_attempts: int
    not_before_at: Time | None
    last_error: str | None
    created_at: Time | None
    updated_at: Time | None


# ---------------------------------------------------------------------------------------------
# Statistics


class YearCount(Wire):
    year: int
    sent: int
    received: int


class TopChat(Wire):
    chat_id: int
    title: str
    messages: int


class Overview(Wire):
    timezone: str
    messages: int
    sent: int
    received: int
    chats: int
    contacts: int
    first_message_time: Time | None
    last_message_time: Time | None
    by_year: list[YearCount]
    top_chats: list[TopChat]


class SenderCount(Wire):
    contact_id: int | None
    is_from_me: bool
    messages: int
    words: int


class DayCount(Wire):
    date: Day
    sent: int
    received: int


class ConversationFigures(Wire):
    count: int
    started_by_me: int
    started_by_them: int
    median_messages: float | None


class Latency(Wire):
    """Seconds; `median_s` and `p90_s` are null when `n` is 0."""

    n: int
    median_s: float | None
    p90_s: float | None


class ResponseTimes(Wire):
    me: Latency
    them: Latency


class Reactions(Wire):
    given: dict[str, int]
    received: dict[str, int]


class Streaks(Wire):
    longest_days: int
    longest_start: Day | None
    current_days: int


HourOfWeek = Annotated[
    list[Annotated[list[int], Meta(min_length=24, max_length=24)]],
    Meta(min_length=7, max_length=7, description="[local weekday, Monday = 0][local hour]"),
]


class Figures(Wire):
    """The statistics of one chat or one contact."""

    timezone: str
    messages: int
    sent: int
    received: int
    first_message_time: Time | None
    last_message_time: Time | None
    by_sender: list[SenderCount]
    by_day: list[DayCount]
    hour_of_week: HourOfWeek
    conversations: ConversationFigures
    response_times: ResponseTimes
    reactions: Reactions
    streaks: Streaks


class PersonCount(Wire):
    contact_id: int
    messages: int


class Responder(Wire):
    contact_id: int
    median_s: float


class MostReacted(Wire):
    message_id: int
    chat_id: int | None
    reactions: int


class PreviousYear(Wire):
    year: int
    messages: int
    sent: int
    received: int


class Wrapped(Wire):
    """The year in messages."""

    timezone: str
    year: int
    messages: int
    sent: int
    received: int
    chats: int
    contacts: int
    top_chats: list[TopChat]
    top_people: list[PersonCount]
    fastest_responder: Responder | None
    most_reacted_message: MostReacted | None
    busiest_day: DayCount | None
    streaks: Streaks
    response_times: ResponseTimes
    top_hour: Annotated[int, Meta(ge=0, le=23)] | None
    previous_year: PreviousYear


# ---------------------------------------------------------------------------------------------
# Metrics


class LatencyFigures(Wire):
    count: int
    total: int
    lifetime_mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None


class HubQueue(Wire):
    topic: str
    pending: int
    maxsize: int
    dropped: int


class HubStats(Wire):
    subscribers: dict[str, int]
    published: dict[str, int]
    delivered: dict[str, int]
    dropped: dict[str, int]
    errors: int
    queues: list[HubQueue]


class EventLogFigures(Wire):
    last_id: int
    notifications: int


class SSEFigures(Wire):
    open_streams: int


class Metrics(Wire):
    """Runtime figures (ids and counts only), also sent every few seconds by /api/metrics/stream."""

    uptime_s: float
    window_s: float
    counters: dict[str, float]
    gauges: dict[str, Any]
    latencies: dict[str, LatencyFigures]
    time: Time
    hub: HubStats
    event_log: EventLogFigures
    sse: SSEFigures


# ---------------------------------------------------------------------------------------------
# The web page


class SessionRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: str


class Session(Wire):
    signed_in: bool


# ---------------------------------------------------------------------------------------------
# Parameters (each field is one query parameter; all are optional, and empty counts as absent)


class Paging(msgspec.Struct):
    limit: Limit | None = None
    before_id: Annotated[
        Id | None, Meta(description="the id of the last item of the previous page")
    ] = None
    cursor: Annotated[
        str | None, Meta(description='the cursor of a `Link: rel="next"` (stable paging)')
    ] = None


class ConversationsQuery(Paging):
    chat_id: Id | None = None


class TranscriptQuery(msgspec.Struct):
    limit: Limit | None = None
    after_id: Annotated[Id | None, Meta(description="reads on after this message")] = None
    before_id: Annotated[Id | None, Meta(description="reads back before this message")] = None


class SearchQuery(Paging):
    q: Annotated[str | None, Meta(description="words (mode=text: each taken literally)")] = None
    mode: Literal["text", "semantic", "hybrid"] | None = None
    chat_id: Id | None = None
    contact_id: Id | None = None
    since: QueryTime | None = None
    until: QueryTime | None = None


class LimitQuery(msgspec.Struct):
    limit: Limit | None = None


class ChatFilter(msgspec.Struct):
    chat_id: Id | None = None


class MissingQuery(msgspec.Struct, rename={"pass_": "pass"}):
    chat_id: Id | None = None
    pass_: str | None = None
    limit: Limit | None = None


class CommitmentsQuery(msgspec.Struct):
    chat_id: Id | None = None
    status: Literal["open", "done", "cancelled", "unknown"] | None = None
    limit: Limit | None = None
    before_id: Id | None = None


class JobsQuery(msgspec.Struct):
    state: Literal["pending", "running", "done", "dead"] | None = None
    limit: Limit | None = None
    before_id: Id | None = None


class TimeRange(msgspec.Struct):
    since: QueryTime | None = None
    until: QueryTime | None = None


class WrappedQuery(msgspec.Struct):
    year: Annotated[int, Meta(ge=1971, le=2261, description="default: this year")] | None = None


StartId = Annotated[
    str, Meta(pattern=r"^([0-9]{1,19}|\$|0-0)$", description="an event id, 0 (all kept) or $ (new)")
]
Text200 = Annotated[str, Meta(max_length=200)]


class EventQuery(msgspec.Struct):
    scope: Annotated[
        list[Text200] | None,
        Meta(description="scopes to keep (repeat or comma-separate): global, chat:N, task:ID, …"),
    ] = None
    run_id: Text200 | None = None
    start_id: StartId | None = None


class EventHeaders(msgspec.Struct, rename={"last_event_id": "Last-Event-ID"}):
    last_event_id: Annotated[StartId | None, Meta(description="wins over start_id")] = None


class MetricsStreamQuery(msgspec.Struct):
    interval: (
        Annotated[float, Meta(ge=0.1, le=3600, description="seconds between snapshots (default 2)")]
        | None
    ) = None


class PathId(msgspec.Struct):
    id: Id


class StatsPathId(msgspec.Struct):
    id: Id


class PathRunId(msgspec.Struct):
    run_id: Annotated[str, Meta(pattern=r"^[0-9a-f]{1,64}$")]


class PathChatId(msgspec.Struct):
    chat_id: Id


class PathStreamKey(msgspec.Struct):
    stream_key: Text200


# The files the page ships (any other path is a 404), so a generated request can hit one.
# Built from a runtime set, so the checker sees only that it is a string.
if TYPE_CHECKING:
    StaticFile = str
else:
    StaticFile = Literal[tuple(sorted(STATIC_FILES))]


class PathStatic(msgspec.Struct):
    path: StaticFile


# ---------------------------------------------------------------------------------------------
# AI chatbot


class ChatbotContext(Wire, omit_defaults=True):
    chat_id: int | None = None
    contact_id: int | None = None


class Citation(Wire, omit_defaults=True):
    message_guid: str | None = None
    conversation_id: int | None = None


class Thread(Wire):
    id: int
    title: str | None
    contexts: list[ChatbotContext]
    message_count: int
    total_tokens: int
    total_cost: float | None
    created_at: Time
    updated_at: Time


class ThreadMessage(Wire):
    """A user or assistant message; token and cost fields sum every LLM call of the turn."""

    id: int
    thread_id: int
    workflow_id: str | None
    role: Literal["user", "assistant"]
    content: str
    status: str
    error_code: str | None
    model: str | None
    provider: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost: float | None
    response_time_ms: float | None
    tool_calls: int | None
    citations: list[Citation]
    created_at: Time


class Document(Wire):
    id: int
    thread_id: int | None
    title: str
    contexts: list[ChatbotContext]
    read_count: int
    last_read_at: Time | None
    created_at: Time
    content: str | None = None


class ThreadRequest(msgspec.Struct, forbid_unknown_fields=True):
    title: str | None = None
    contexts: list[ChatbotContext] | None = None


class TurnRequest(msgspec.Struct, forbid_unknown_fields=True):
    content: str


SSE_TURN = (
    "`turn_started {thread_id, user_message_id}`, then any number of `tool_call {id, name, "
    "arguments}`, `tool_result {id, name, count}` and `delta {text}`, then exactly one of "
    "`message {the stored assistant message}` or `error {code, message}`."
)


# ---------------------------------------------------------------------------------------------
# Context retrievers


class DefinitionStep(Wire):
    """One retriever of a definition: its share of what is left of the budget (null: an
    equal part among the retrievers still to run) and its own parameters."""

    retriever: str
    share: float | None
    params: dict[str, Any]


class ContextDefinition(Wire):
    name: str
    title: str
    description: str
    scopes: list[Literal["chat", "contact", "conversation"]]
    retrievers: list[DefinitionStep]
    seeded_at_ns: int


class ContextItem(Wire):
    """A piece in the text: `tokens` its own count, `cut` when shortened to fit."""

    retriever: str
    kind: str
    id: int | None
    tokens: int
    cut: bool


class ContextDropped(Wire):
    """A piece left out (`budget`: it did not fit; `unreadable`, `no_fields`)."""

    retriever: str
    kind: str
    id: int | None
    tokens: int | None
    reason: str


class RetrieverUsage(Wire):
    name: str
    budget_tokens: int
    tokens: int
    items: int
    dropped: int


class ContextPreview(Wire):
    """`tokens` is the cl100k count of `text`, never above `budget_tokens`."""

    definition: str | None
    budget_tokens: int
    tokens: int
    text: str
    items: list[ContextItem]
    retrievers: list[RetrieverUsage]
    dropped: list[ContextDropped]


# ---------------------------------------------------------------------------------------------
# Operations

JSON = "application/json"
SSE = "text/event-stream"
HTML = "text/html"
ANY = "*/*"

SSE_LIVE = (
    "Events `initial` (the first page, newest first: `limit`, `complete`, `next_cursor`), "
    "`ready`, then `update` per change, `heartbeat`, and `error {code, message}` before closing."
)
SSE_BUS = (
    "Event-log events as `event: <type>` with `id:` the event id and data "
    "`{id, scope, type, run_id, data, created_at}`; `reset {requested_id, first_id}` when "
    "the position asked for is gone; `heartbeat`. Reconnect with `Last-Event-ID` to resume."
)


@dataclass(frozen=True)
class Op:
    """One operation of the document.

    `answer`: the type of a 200's JSON body (None: not JSON, see `media`). `query`, `path`,
    `headers`: Structs whose fields are the parameters. `errors`: statuses besides the ones
    every operation can answer (403 for a foreign Host, 401 without the token unless `open`,
    400 when it takes parameters or a body, 404 when it has path parameters).
    """

    summary: str
    tag: str
    answer: Any = None
    media: str = JSON
    query: type | None = None
    path: type | None = None
    headers: type | None = None
    body: type | None = None
    errors: tuple[int, ...] = ()
    open: bool = False
    paged: bool = False
    description: str | None = None


OPERATIONS: dict[tuple[str, str], Op] = {
    # iMessage data
    ("GET", "/api/health"): Op(
        "Readiness, import and live-sync progress", "imessage", Health, open=True
    ),
    ("GET", "/api/chats"): Op(
        "Chats, newest activity first", "imessage", list[Chat], query=Paging, paged=True
    ),
    ("GET", "/api/chats/{id:int}"): Op("One chat", "imessage", Chat, path=PathId),
    ("GET", "/api/chats/{id:int}/messages"): Op(
        "A chat's messages, newest first",
        "imessage",
        list[Message],
        query=Paging,
        path=PathId,
        paged=True,
    ),
    ("GET", "/api/contacts"): Op(
        "Contacts, most recently heard from first",
        "imessage",
        list[Contact],
        query=Paging,
        paged=True,
    ),
    ("GET", "/api/conversations"): Op(
        "Conversations, newest start first",
        "imessage",
        list[Conversation],
        query=ConversationsQuery,
        paged=True,
        errors=(404,),
    ),
    ("GET", "/api/conversations/{id:int}"): Op(
        "One conversation", "imessage", Conversation, path=PathId
    ),
    ("GET", "/api/conversations/{id:int}/messages"): Op(
        "A conversation's messages, oldest first",
        "imessage",
        list[Message],
        query=TranscriptQuery,
        path=PathId,
    ),
    ("GET", "/api/search"): Op(
        "Search messages: words (text, paged) or meaning (semantic, hybrid; best first)",
        "search",
        list[SearchHit],
        query=SearchQuery,
        paged=True,
        errors=(404, 503),
    ),
    ("GET", "/api/index/status"): Op("The vector index", "search", IndexStatus),
    ("GET", "/api/context/definitions"): Op(
        "Context definitions (seeded from a file at start)", "search", list[ContextDefinition]
    ),
    ("POST", "/api/context/preview"): Op(
        "What a context definition (or a list of retrievers) puts into a prompt, in a budget",
        "search",
        ContextPreview,
        body=PreviewBody,
        errors=(404,),
    ),
    # analysis
    ("GET", "/api/analysis/passes"): Op("Analysis passes", "analysis", list[Pass]),
    ("GET", "/api/analysis/status"): Op(
        "The analysis engine and its queue", "analysis", AnalysisStatus
    ),
    ("GET", "/api/analysis/runs"): Op(
        "Analysis runs, newest first", "analysis", list[RunStarted], query=LimitQuery
    ),
    ("POST", "/api/analysis/runs"): Op(
        "Start a run of passes over conversations lacking them",
        "analysis",
        RunStarted,
        body=RunRequest,
        errors=(404,),
    ),
    ("GET", "/api/analysis/runs/{run_id}"): Op(
        "One run's progress and usage", "analysis", Run, path=PathRunId
    ),
    ("GET", "/api/analysis/coverage"): Op(
        "Coverage per pass", "analysis", Coverage, query=ChatFilter, errors=(404,)
    ),
    ("GET", "/api/analysis/missing"): Op(
        "Conversations lacking each pass",
        "analysis",
        list[PassMissing],
        query=MissingQuery,
        errors=(404,),
    ),
    ("POST", "/api/analysis/backfill"): Op(
        "Queue passes over the conversations lacking them",
        "analysis",
        Backfill,
        body=BackfillRequest,
        errors=(404,),
    ),
    ("GET", "/api/conversations/{id:int}/analyses"): Op(
        "A conversation's analyses", "analysis", list[Analysis], path=PathId
    ),
    ("GET", "/api/commitments"): Op(
        "Commitments, newest first", "analysis", list[Commitment], query=CommitmentsQuery
    ),
    ("GET", "/api/analysis/jobs"): Op(
        "Analysis jobs, newest first", "analysis", list[Job], query=JobsQuery
    ),
    ("POST", "/api/analysis/jobs/{id:int}/retry"): Op(
        "Retry a dead job", "analysis", Job, path=PathId
    ),
    # statistics
    ("GET", "/api/stats/overview"): Op(
        "Statistics of the whole history", "stats", Overview, query=TimeRange
    ),
    ("GET", "/api/stats/chats/{id}"): Op(
        "Statistics of one chat", "stats", Figures, query=TimeRange, path=StatsPathId
    ),
    ("GET", "/api/stats/contacts/{id}"): Op(
        "Statistics of one contact over every chat they are in",
        "stats",
        Figures,
        query=TimeRange,
        path=StatsPathId,
    ),
    ("GET", "/api/stats/wrapped"): Op("The year in messages", "stats", Wrapped, query=WrappedQuery),
    # metrics and this document
    ("GET", "/api/metrics"): Op("Runtime metrics", "metrics", Metrics),
    ("GET", "/openapi.json"): Op("This document", "metrics", dict[str, Any]),
    # streams
    ("GET", "/api/live-sync/stream/chat/{chat_id:int}/messages"): Op(
        "A chat's messages, live", "streams", media=SSE, path=PathChatId, description=SSE_LIVE
    ),
    ("GET", "/api/live-sync/stream/chats"): Op(
        "The chat list, live", "streams", media=SSE, description=SSE_LIVE
    ),
    ("GET", "/api/live-sync/stream/contacts"): Op(
        "The contact list, live", "streams", media=SSE, description=SSE_LIVE
    ),
    ("GET", "/api/analysis/streaming/queue/stream"): Op(
        "The analysis event stream, from now",
        "streams",
        media=SSE,
        query=EventQuery,
        headers=EventHeaders,
        description=SSE_BUS,
    ),
    ("GET", "/api/analysis/streaming/redis_stream/{stream_key}"): Op(
        "Any event stream by name, from the oldest kept event",
        "streams",
        media=SSE,
        query=EventQuery,
        headers=EventHeaders,
        path=PathStreamKey,
        errors=(),
        description=SSE_BUS,
    ),
    ("GET", "/api/metrics/stream"): Op(
        "Runtime metrics every `interval` seconds",
        "streams",
        media=SSE,
        query=MetricsStreamQuery,
        description="Events `metrics` (data: the answer of /api/metrics) and `heartbeat`.",
    ),
    # the web page
    ("GET", "/"): Op("The web page", "web", media=HTML, open=True),
    ("GET", "/static/{path:path}"): Op(
        "The web page's files", "web", media=ANY, path=PathStatic, open=True
    ),
    ("POST", "/api/session"): Op(
        "Trade the token for a session cookie (Origin must match Host)",
        "web",
        Session,
        body=SessionRequest,
        open=True,
        errors=(401,),
    ),
    ("DELETE", "/api/session"): Op("Drop the session cookie", "web", Session),
    # AI chatbot
    ("GET", "/api/chatbot/threads"): Op("Chatbot threads, newest first", "chatbot", list[Thread]),
    ("POST", "/api/chatbot/threads"): Op(
        "Start a thread", "chatbot", Thread, body=ThreadRequest, errors=(404,)
    ),
    ("GET", "/api/chatbot/threads/{id:int}"): Op("One thread", "chatbot", Thread, path=PathId),
    ("PATCH", "/api/chatbot/threads/{id:int}"): Op(
        "Rename a thread or change its contexts", "chatbot", Thread, path=PathId, body=ThreadRequest
    ),
    ("GET", "/api/chatbot/threads/{id:int}/messages"): Op(
        "A thread's messages, oldest first", "chatbot", list[ThreadMessage], path=PathId
    ),
    ("POST", "/api/chatbot/threads/{id:int}/messages"): Op(
        "Ask: one turn, answered as a stream",
        "streams",  # a stream like the others (and not fuzzed: each example would be a turn)
        media=SSE,
        path=PathId,
        body=TurnRequest,
        errors=(409, 503),
        description=SSE_TURN,
    ),
    ("GET", "/api/chatbot/documents"): Op(
        "Documents the assistant wrote", "chatbot", list[Document]
    ),
    ("GET", "/api/chatbot/documents/{id:int}"): Op(
        "One document, with its content", "chatbot", Document, path=PathId
    ),
    ("POST", "/api/chatbot/documents/{id:int}/read"): Op(
        "Mark a document read", "chatbot", Document, path=PathId
    ),
}
