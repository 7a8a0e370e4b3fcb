"""The chatbot's read-only tools: what the model may ask of the history, and what it gets back.

Why here, as plain sync functions over one read-only connection: the chatbot's turn loop and
`chatstats mcp` (a separate process, with or without the daemon) offer the same five tools,
so both call `run_read_tool` and neither can drift from CONTRACT.md's names and arguments.
Each tool calls the existing services (hybrid search, the library's message reading, the
analysis store, the statistics) and never has SQL of its own.

Arguments come from a model, so every one is checked against the tool's JSON Schema (the
same schema the model is shown) and anything off is a ToolError whose text is safe to send
back to it: it names arguments and ids, never message text. Output is compact JSON held
under `max_tokens` by a real token count (chatstats.llm.tokens), dropping whole items (never
cutting JSON) and saying how many were left out, so a result can't crowd out the turn.

Nothing here logs arguments or results: ids, counts and token figures only.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatstats import log
from chatstats.analysis import store as analysis_store
from chatstats.analysis.passes import prompts_dir
from chatstats.analysis.service import COMMITMENT_STATUSES
from chatstats.config import Settings
from chatstats.context.index import VectorIndex
from chatstats.context.search import parse_time, ranked_search
from chatstats.errors import BadRequest, NotFound
from chatstats.library import store as library_store
from chatstats.library.service import (
    MAX_QUERY_CHARS,
    Message,
    _build_messages,
    _conversation,
    _conversation_messages,
)
from chatstats.llm import tokens
from chatstats.stats import service as stats_service
from chatstats.stats import store as stats_store
from chatstats.stats.zone import resolve as resolve_zone

logger = log.get(__name__)

DEFAULT_LIMIT = 10
MAX_LIMIT = 50
MIN_BUDGET = 100  # tokens: below this not even one message fits with its envelope
MAX_TEXT_CHARS = 1200  # one message's text; a pasted essay must not fill the budget alone
HEAD_SHARE = 0.3  # of a long conversation's budget, for how it began (the rest: its end)
CONVERSATION_READ = 200  # messages read from each end of a conversation at most
MAX_SCOPE = 20  # contexts of a thread searched one by one

_ID: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": library_store.MAX_ID}
_TIME: dict[str, Any] = {"type": "string", "maxLength": 64, "format": "date-time"}
_LIMIT: dict[str, Any] = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_LIMIT,
    "default": DEFAULT_LIMIT,
}


class ToolError(Exception):
    """Bad arguments, unknown ids or an unknown tool: str(e) is safe to show the model (no
    message text, no contact names)."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema object for the arguments


@dataclass
class ToolOutput:
    content: str  # compact JSON text for the model, bounded to max_tokens
    count: int  # hits / items returned
    citations: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Scope:
    """A thread's contexts: the default filter when a call's arguments name no chat or contact."""

    chat_ids: tuple[int, ...] = ()
    contact_ids: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.chat_ids or self.contact_ids)


def _schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_SCHEMAS: dict[str, dict[str, Any]] = {
    "search_messages": _schema(
        {
            "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS},
            "chat_id": _ID,
            "contact_id": _ID,
            "since": _TIME,
            "until": _TIME,
            "limit": _LIMIT,
        },
        ("query",),
    ),
    "get_conversation": _schema({"conversation_id": _ID}, ("conversation_id",)),
    "list_commitments": _schema(
        {
            "chat_id": _ID,
            "status": {"type": "string", "enum": list(COMMITMENT_STATUSES)},
            "limit": _LIMIT,
        }
    ),
    "get_analyses": _schema({"conversation_id": _ID}, ("conversation_id",)),
    "get_stats": _schema({"chat_id": _ID, "contact_id": _ID, "since": _TIME, "until": _TIME}),
}


def tools_dir() -> Path:
    """The tools' descriptions for the model: prompts/tools/<name>.md, beside the pass files."""
    return prompts_dir() / "tools"


def _load_tools() -> dict[str, Tool]:
    """Read at import: a missing description is a broken install, better found at start."""
    return {
        name: Tool(name, (tools_dir() / f"{name}.md").read_text().strip(), schema)
        for name, schema in _SCHEMAS.items()
    }


READ_TOOLS: dict[str, Tool] = _load_tools()


# ---------------------------------------------------------------------------------------------
# Arguments


def _check(tool: Tool, arguments: Any) -> dict[str, Any]:
    """The arguments checked against the tool's schema (the subset of JSON Schema used above),
    defaults filled in. Messages name the argument, never echo its value."""
    if not isinstance(arguments, dict):
        raise ToolError(f"{tool.name}: arguments must be a JSON object")
    props: dict[str, Any] = tool.parameters["properties"]
    for name in arguments:
        if name not in props:
            shown = name if isinstance(name, str) and len(name) <= 40 else "(unnamed)"
            raise ToolError(f"{tool.name}: unknown argument {shown!r}")
    out: dict[str, Any] = {}
    for name, spec in props.items():
        value = arguments.get(name)
        if value is None:
            if name in tool.parameters["required"]:
                raise ToolError(f"{tool.name}: {name} is required")
            out[name] = spec.get("default")
            continue
        if spec["type"] == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ToolError(f"{tool.name}: {name} must be an integer")
            if not spec["minimum"] <= value <= spec["maximum"]:
                raise ToolError(
                    f"{tool.name}: {name} must be from {spec['minimum']} to {spec['maximum']}"
                )
        elif spec["type"] == "string":
            if not isinstance(value, str):
                raise ToolError(f"{tool.name}: {name} must be a string")
            lo, hi = spec.get("minLength", 0), spec.get("maxLength", MAX_QUERY_CHARS)
            if not lo <= len(value) <= hi:
                raise ToolError(f"{tool.name}: {name} must be {lo} to {hi} characters")
            if "enum" in spec and value not in spec["enum"]:
                raise ToolError(f"{tool.name}: {name} must be one of {', '.join(spec['enum'])}")
        out[name] = value
    return out


def _time(args: dict[str, Any], name: str) -> int | None:
    try:
        return parse_time(args[name], name)
    except BadRequest as exc:
        raise ToolError(str(exc)) from None


def _span(args: dict[str, Any]) -> tuple[int | None, int | None]:
    since, until = _time(args, "since"), _time(args, "until")
    if since is not None and until is not None and since >= until:
        raise ToolError("since must be before until")
    return since, until


# ---------------------------------------------------------------------------------------------
# Shapes for the model: short keys, no phone numbers or e-mail addresses (as transcripts)


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_TEXT_CHARS:
        return text
    return text[:MAX_TEXT_CHARS] + "…"


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "guid": m.guid,
        "chat_id": m.chat_id,
        "conversation_id": m.conversation_id,
        "time": _iso(m.date_ns),
        "from": "me" if m.is_from_me else (m.sender.name if m.sender else None) or "them",
    }
    if not m.is_from_me and m.sender is not None and m.sender.contact_id is not None:
        out["contact_id"] = m.sender.contact_id
    out["text"] = _clip(m.text)
    if m.attachments:
        out["attachments"] = [a.mime_type or "file" for a in m.attachments]
    if m.reactions:
        out["reactions"] = [("me:" if r.is_from_me else "") + r.type for r in m.reactions]
    if m.edited:
        out["edited"] = True
    if m.reply_to_guid:
        out["reply_to"] = m.reply_to_guid
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _fit(
    envelope: dict[str, Any],
    key: str,
    items: list[dict[str, Any]],
    max_tokens: int,
    *,
    ends: bool = False,
    unread: int = 0,
) -> tuple[str, list[int]]:
    """`envelope` with as many of `items` under `key` as fit in `max_tokens` (counted on the
    final text), and which items were kept. Drops from the end, or (`ends`) from the middle
    keeping HEAD_SHARE of the room for the first items; says how many were left out
    (plus `unread`: items that were never read, such as the middle of a long conversation)."""
    sizes = [tokens.count(_dumps(item)) + 1 for item in items]
    room = max_tokens - tokens.count(_dumps({**envelope, key: [], "omitted": len(items) + unread}))
    keep: list[int]
    if ends:
        # The first item always opens the head if it fits at all: how it began matters.
        head_room = max(int(room * HEAD_SHARE), sizes[0] if sizes else 0)
        used, head = 0, []
        for i, size in enumerate(sizes):
            if used + size > head_room:
                break
            head.append(i)
            used += size
        tail: list[int] = []
        for i in range(len(items) - 1, (head[-1] if head else -1), -1):
            if used + sizes[i] > room:
                break
            tail.append(i)
            used += sizes[i]
        keep = head + tail[::-1]
    else:
        keep, used = [], 0
        for i, size in enumerate(sizes):
            if used + size > room:
                break
            keep.append(i)
            used += size
    while True:  # the sum of parts is close to the whole; the whole is what must fit
        body = {**envelope, key: [items[i] for i in keep]}
        if len(keep) < len(items) or unread:
            body["omitted"] = len(items) - len(keep) + unread
        text = _dumps(body)
        if tokens.count(text) <= max_tokens or not keep:
            return text, keep
        keep.pop(len(keep) // 2 if ends else -1)


def _scoped(args: dict[str, Any], scope: Scope | None) -> list[tuple[str, int]]:
    """The contexts a call is about: its own chat_id/contact_id, else the thread's scope
    (at most MAX_SCOPE), else none (everything)."""
    named = [(k, args[k]) for k in ("chat_id", "contact_id") if args.get(k) is not None]
    if named or not scope:
        return named
    return (
        [("chat_id", c) for c in scope.chat_ids] + [("contact_id", k) for k in scope.contact_ids]
    )[:MAX_SCOPE]


def _need_contact(conn: sqlite3.Connection, contact_id: int) -> None:
    if library_store.contact_cursor(conn, contact_id) is None:
        raise ToolError(f"no contact {contact_id}")


# ---------------------------------------------------------------------------------------------
# The tools


def _search_messages(conn: sqlite3.Connection, args: dict[str, Any], ctx: _Context) -> ToolOutput:
    since, until = _span(args)
    if not args["query"].split():
        raise ToolError("search_messages: query must contain at least one word")
    contexts = _scoped(args, ctx.scope)
    for kind, value in contexts:
        if kind == "contact_id":
            _need_contact(conn, value)
    limit = args["limit"]
    # Named together, chat and contact narrow one search (their messages in that chat); the
    # scope's contexts are searched one by one and merged (any of them).
    named = {k: args[k] for k in ("chat_id", "contact_id") if args[k] is not None}
    runs: list[dict[str, Any]] = (
        [named] if named else [{kind: value} for kind, value in contexts] or [{}]
    )
    hits: dict[int, tuple[Message, float, list[str]]] = {}
    for filters in runs:
        for m, score, matched in ranked_search(
            conn,
            ctx.index,
            args["query"],
            "hybrid",
            since_ns=since,
            until_ns=until,
            limit=limit,
            **filters,
        ):
            if m.id not in hits or hits[m.id][1] < score:
                hits[m.id] = (m, score, matched)
    best = sorted(hits.values(), key=lambda h: (-h[1], -h[0].date_ns))[:limit]
    envelope: dict[str, Any] = {"mode": "hybrid" if ctx.index is not None else "text"}
    if ctx.index is None:
        envelope["note"] = (
            "the vector index is not loaded, so these are word matches only; rephrase with"
            " words the messages would use"
        )
    items = [{**_message(m), "score": score, "matched": matched} for m, score, matched in best]
    text, kept = _fit(envelope, "hits", items, ctx.max_tokens)
    return ToolOutput(
        text,
        len(kept),
        [{"message_guid": best[i][0].guid, "chat_id": best[i][0].chat_id} for i in kept],
    )


def _get_conversation(conn: sqlite3.Connection, args: dict[str, Any], ctx: _Context) -> ToolOutput:
    cid = args["conversation_id"]
    conv = _conversation(conn, cid)
    messages = _conversation_messages(conn, cid, CONVERSATION_READ, None, None)
    if conv.message_count > len(messages):  # a long one: its end too, read backward
        rows = library_store.conversation_messages(
            conn,
            cid,
            CONVERSATION_READ,
            (stats_service.MAX_NS, library_store.MAX_ID),
            backward=True,
        )
        seen = {m.id for m in messages}
        messages += [m for m in _build_messages(conn, rows[::-1]) if m.id not in seen]
    unread = max(0, conv.message_count - len(messages))
    envelope = {
        "conversation_id": conv.id,
        "chat_id": conv.chat_id,
        "start": _iso(conv.start_ns),
        "end": _iso(conv.end_ns),
        "message_count": conv.message_count,
        "sealed": conv.sealed,
    }
    items = [_message(m) for m in messages]
    for item in items:  # the envelope says which chat and conversation
        del item["chat_id"], item["conversation_id"]
    text, kept = _fit(envelope, "messages", items, ctx.max_tokens, ends=True, unread=unread)
    return ToolOutput(text, len(kept), [{"conversation_id": conv.id, "chat_id": conv.chat_id}])


def _commitment_chats(conn: sqlite3.Connection, kind: str, value: int) -> list[int]:
    if kind == "chat_id":
        if not analysis_store.chat_exists(conn, value):
            raise ToolError(f"no chat {value}")
        return [value]
    _need_contact(conn, value)
    return [r["id"] for r in conn.execute(stats_store.CONTACT_CHATS, {"contact": value})]


def _list_commitments(conn: sqlite3.Connection, args: dict[str, Any], ctx: _Context) -> ToolOutput:
    contexts = _scoped(args, ctx.scope)
    chats: list[int | None] = []
    for kind, value in contexts:
        chats += [c for c in _commitment_chats(conn, kind, value) if c not in chats]
    rows: dict[int, sqlite3.Row] = {}
    for chat in chats if contexts else [None]:
        for r in analysis_store.list_commitments(
            conn, chat_id=chat, status=args["status"], limit=args["limit"], before_id=None
        ):
            rows[r["id"]] = r
    newest = sorted(rows.values(), key=lambda r: -r["id"])[: args["limit"]]
    items = [
        {
            "id": r["id"],
            "chat_id": r["chat_id"],
            "conversation_id": r["conversation_id"],
            "kind": r["kind"],
            "who": r["who"],
            "what": r["what"],
            "due": r["due"],
            "status": r["status"],
            "noted": _iso(r["created_ns"]),
        }
        for r in newest
    ]
    text, kept = _fit({}, "commitments", items, ctx.max_tokens)
    cited = dict.fromkeys((newest[i]["conversation_id"], newest[i]["chat_id"]) for i in kept)
    return ToolOutput(
        text, len(kept), [{"conversation_id": c, "chat_id": chat} for c, chat in cited]
    )


def _get_analyses(conn: sqlite3.Connection, args: dict[str, Any], ctx: _Context) -> ToolOutput:
    cid = args["conversation_id"]
    if not analysis_store.conversation_exists(conn, cid):
        raise ToolError(f"no conversation {cid}")
    items = []
    for r in analysis_store.conversation_analyses(conn, cid):
        try:
            result = json.loads(r["result"])
        except ValueError:
            continue  # never stored so (results are validated), but never a crash either
        items.append(
            {
                "pass": r["pass"],
                "version": r["pass_version"],
                "result": result,
                "stale": bool(r["stale"]),
                "made": _iso(r["created_ns"]),
            }
        )
    text, kept = _fit({"conversation_id": cid}, "analyses", items, ctx.max_tokens)
    return ToolOutput(text, len(kept), [{"conversation_id": cid}] if kept else [])


def _compact_figures(fig: dict[str, Any]) -> dict[str, Any]:
    """The figures without the per-day and per-hour tables (hundreds of numbers a model can't
    use well): the busiest days and hours stand in for them."""
    out = {k: v for k, v in fig.items() if k not in ("by_day", "hour_of_week", "timezone")}
    if "by_day" in fig:
        days = sorted(fig["by_day"], key=lambda d: (-(d["sent"] + d["received"]), d["date"]))
        out["busiest_days"] = days[:3]
        out["active_days"] = len(fig["by_day"])
    if "hour_of_week" in fig:
        hours = [sum(day[h] for day in fig["hour_of_week"]) for h in range(24)]
        out["busiest_hours"] = sorted(range(24), key=lambda h: (-hours[h], h))[:3]
    return out


def _get_stats(conn: sqlite3.Connection, args: dict[str, Any], ctx: _Context) -> ToolOutput:
    since, until = _span(args)
    lo = stats_service.MIN_NS if since is None else since
    hi = stats_service.MAX_NS if until is None else until
    zone = ctx.zone()
    today = datetime.now(zone).date()
    if args["chat_id"] is not None and args["contact_id"] is not None:
        raise ToolError("get_stats: give chat_id or contact_id, not both")
    items = []
    for kind, value in _scoped(args, ctx.scope) or [("", 0)]:
        if kind == "chat_id":
            fig = stats_service.chat_stats(conn, zone, value, lo, hi, today)
        elif kind == "contact_id":
            fig = stats_service.contact_stats(conn, zone, value, lo, hi, today)
        else:
            fig = stats_service.overview(conn, zone, lo, hi)
        items.append({"of": {kind: value} if kind else "everything", **_compact_figures(fig)})
    text, kept = _fit({"timezone": zone.key}, "stats", items, ctx.max_tokens)
    return ToolOutput(text, len(kept), [])


@dataclass
class _Context:
    settings: Settings
    scope: Scope | None
    max_tokens: int
    index: VectorIndex | None

    def zone(self) -> Any:
        try:
            return resolve_zone(self.settings.timezone)
        except BadRequest as exc:
            raise ToolError(str(exc)) from None


_RUN: dict[str, Callable[[sqlite3.Connection, dict[str, Any], _Context], ToolOutput]] = {
    "search_messages": _search_messages,
    "get_conversation": _get_conversation,
    "list_commitments": _list_commitments,
    "get_analyses": _get_analyses,
    "get_stats": _get_stats,
}


def run_read_tool(
    conn: sqlite3.Connection,
    name: str,
    arguments: dict[str, Any],
    *,
    settings: Settings,
    scope: Scope | None = None,
    max_tokens: int = 2000,
    index: Any = None,
) -> ToolOutput:
    """Run one read-only tool on `conn` (a read-only connection the caller owns; any read
    transaction a service opened is rolled back before returning). `index` is the vector
    index: a loaded VectorIndex (`saved_index()`), or the daemon's SearchIndex
    (`state.search_index`, used once it is ready); without one, search falls back to ranked
    word matches and says so in its content.

    Raises ToolError for an unknown tool, bad arguments or ids that name nothing."""
    if max_tokens < MIN_BUDGET:
        raise ValueError(f"max_tokens must be at least {MIN_BUDGET}")
    tool = READ_TOOLS.get(name) if isinstance(name, str) else None
    if tool is None:
        shown = name if isinstance(name, str) and len(name) <= 40 else "(unnamed)"
        raise ToolError(f"unknown tool {shown!r}; tools: {', '.join(READ_TOOLS)}")
    args = _check(tool, arguments)
    ctx = _Context(settings, scope, max_tokens, _vector_index(index))
    try:
        out = _RUN[name](conn, args, ctx)
    except (BadRequest, NotFound) as exc:  # the services' own checks: ids and syntax only
        raise ToolError(f"{name}: {exc.message}") from None
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    logger.debug("chatbot_tool", tool=name, count=out.count, citations=len(out.citations))
    return out


def _vector_index(index: Any) -> VectorIndex | None:
    """A VectorIndex as given, or the daemon's SearchIndex's once it is ready (while it
    builds, searching it would miss most messages: words are better then)."""
    if index is None or isinstance(index, VectorIndex):
        return index
    ready = getattr(index, "ready", None)
    inner = getattr(index, "index", None)
    if ready is None or not isinstance(inner, VectorIndex):
        raise TypeError("index must be a VectorIndex or a SearchIndex")
    return inner if ready.is_set() else None


def saved_index(settings: Settings) -> VectorIndex | None:
    """The vector index the daemon last saved in the data directory, loaded for reading (for a
    process without the daemon, like `chatstats mcp`), or None if there is none for the
    configured model. Never builds or saves: readers don't write."""
    from chatstats.context import embed

    index = VectorIndex(Path(settings.data_dir), embed.from_settings(settings))
    return index if index.load() else None
