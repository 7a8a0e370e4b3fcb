"""The six context retrievers: each packs the best content it has for a scope into a budget.

Why exact budgets: what a retriever returns goes into a prompt next to other context, and a
budget that is off by a third either wastes the window or overflows it. Every piece is counted
with the real offline tokenizer (chatstats.llm.tokens, cl100k), pieces are added whole while
they fit (prose may be cut at a token boundary, JSON never is), and the joined text is counted
once more at the end: `count(text) <= budget` holds for every answer.

"Best" per retriever:
- `convos`: whole conversations, newest first (with a query: the ones holding the best search
  hits first, via the hybrid search's public `ranked_search`); the first one that no longer
  fits whole is given cut (its start and its end) when enough room is left.
- `analyses`: the passes' results, newest conversation first, rendered field by field; a result
  too long whole is shortened to its summary, and smaller results further down still get in
  (token-aware: nothing is left unused that something could fill).
- `artifacts`: the chatbot's documents about the chat or contact, newest first, the last one
  cut to the room left.
- `raw_conversation`: one conversation's transcript (analysis.transcript.build, the passes'
  own, so the same text and the same count).
- `chat_text`: the most recent messages as lines, as many as fit, read oldest first.
- `user_name`: who is who: the user's name (the AddressBook's "me" card) and the other people
  in scope, by name only (never a phone number or an address).

Nothing here logs content: ids, counts and token figures only.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatstats.analysis import transcript
from chatstats.context import store
from chatstats.context.search import ranked_search
from chatstats.errors import BadRequest, ChatStatsError
from chatstats.llm import tokens

SEP = "\n\n"
MIN_PART = 60  # tokens: below this a cut piece says too little to be worth its place
SEARCH_HITS = 200
MAX_DROPPED = 50  # dropped pieces listed per retriever (the count says how many in all)
SCOPES = ("chat", "contact", "conversation")


@dataclass(frozen=True)
class Scope:
    """What the context is about. `chat_ids`: the chats read (one chat; every chat of a
    contact; a conversation's chat)."""

    chat_id: int | None = None
    contact_id: int | None = None
    conversation_id: int | None = None
    chat_ids: tuple[int, ...] = ()
    query: str | None = None

    @property
    def kinds(self) -> set[str]:
        out = set()
        if self.chat_id is not None:
            out.add("chat")
        if self.contact_id is not None:
            out.add("contact")
        if self.conversation_id is not None:
            out.add("conversation")
        return out


@dataclass
class Retrieved:
    """One retriever's section: a heading and the pieces that fit, with what did not."""

    retriever: str
    budget: int
    heading: str
    parts: list[str] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    dropped_count: int = 0
    sep: str = SEP  # between pieces: one token, "\n\n" or "\n"
    _used: int = 0
    _prepend: bool = False  # chat_text reads newest first but shows oldest first

    @property
    def text(self) -> str:
        return self.sep.join([self.heading, *self.parts]) if self.parts else ""

    @property
    def tokens(self) -> int:
        return tokens.count(self.text) if self.parts else 0

    def room(self) -> int:
        """Tokens left for the next piece's own text (its separator set aside)."""
        overhead = 1 if self.parts else tokens.count(self.heading) + 1  # a separator: 1 token
        return self.budget - self._used - overhead

    def _cost(self, text: str) -> int:
        """What adding `text` adds to the count of the whole: counted with its neighbour, as
        a separator can merge with the punctuation before it (":\n" is one token)."""
        if not self.parts:
            return tokens.count(self.heading + self.sep + text)
        if self._prepend:
            first = self.parts[0]
            return tokens.count(text + self.sep + first) - tokens.count(first)
        last = self.parts[-1]
        return tokens.count(last + self.sep + text) - tokens.count(last)

    def add(self, text: str, kind: str, item_id: int | None, *, cut: bool = False) -> bool:
        text = text.strip()
        if not text:
            return False
        cost = self._cost(text)
        if self._used + cost > self.budget:
            return False
        self._used += cost
        item = {"kind": kind, "id": item_id, "tokens": tokens.count(text), "cut": cut}
        if self._prepend:
            self.parts.insert(0, text)
            self.items.insert(0, item)
        else:
            self.parts.append(text)
            self.items.append(item)
        return True

    def drop(self, kind: str, item_id: int | None, reason: str, cost: int | None = None) -> None:
        self.dropped_count += 1
        if len(self.dropped) < MAX_DROPPED:
            self.dropped.append({"kind": kind, "id": item_id, "tokens": cost, "reason": reason})

    def pop_one(self) -> bool:
        """Give up the least valuable piece (the oldest for chat_text, else the last)."""
        if not self.parts:
            return False
        at = 0 if self._prepend else -1
        self.parts.pop(at)
        item = self.items.pop(at)
        self._used = tokens.count(self.text) if self.parts else 0
        self.drop(item["kind"], item["id"], "budget", item["tokens"])
        return True

    def finish(self) -> Retrieved:
        """Hold the joined text to the budget exactly (a seam can merge tokens)."""
        while self.parts and tokens.count(self.text) > self.budget:
            self.pop_one()
        return self


@dataclass
class Context:
    """What retrievers need besides the connection: the vector index, when one is loaded."""

    index: Callable[[], Any] = lambda: None


# ---------------------------------------------------------------------------------------------
# Helpers


def clip(text: str, budget: int) -> str:
    """The longest start of `text` within `budget` tokens, with "…" when cut."""
    if budget <= 0:
        return ""
    if tokens.count(text) <= budget:
        return text
    enc = tokens.encoding()
    ids = enc.encode_ordinary(text)
    keep = max(0, budget - 1)
    while keep > 0:
        out = enc.decode(ids[:keep]).rstrip("\ufffd").rstrip() + "…"
        if tokens.count(out) <= budget:
            return out
        keep -= 1
    return ""


def _minute(ns: int) -> str:
    return transcript.iso_minute(ns)


def _conversation_heading(row: sqlite3.Row) -> str:
    n = row["message_count"]
    return (
        f"Conversation {row['id']} ({_minute(row['start_ns'])} to {_minute(row['end_ns'])} UTC,"
        f" {n} message{'' if n == 1 else 's'}):"
    )


def _int_param(params: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise BadRequest(f"params.{name} must be an integer from {lo} to {hi}")
    return value


def _names_param(params: dict[str, Any], name: str) -> list[str] | None:
    value = params.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= 50
        or not all(isinstance(v, str) and 0 < len(v) <= 100 for v in value)
    ):
        raise BadRequest(f"params.{name} must be a list of 1 to 50 names")
    return value


def _bool_param(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f"params.{name} must be true or false")
    return value


# ---------------------------------------------------------------------------------------------
# The retrievers


def convos(
    conn: sqlite3.Connection, scope: Scope, budget: int, params: dict[str, Any], ctx: Context
) -> Retrieved:
    most = _int_param(params, "max_conversations", 20, 1, 500)
    cap = _int_param(params, "per_conversation_tokens", 1_000_000, MIN_PART, 1_000_000)
    out = Retrieved("convos", budget, "Conversations, newest first:")
    chats = list(scope.chat_ids)
    candidates = _relevant_conversations(conn, scope, most, ctx) if scope.query else []
    if candidates:
        out.heading = "Conversations, most relevant first:"
    seen = {r["id"] for r in candidates}
    if len(candidates) < most:
        extra = [r for r in store.conversations(conn, chats, most) if r["id"] not in seen]
        candidates += extra[: most - len(candidates)]
    out.dropped_count = max(0, store.count_conversations(conn, chats) - len(candidates))
    for row in candidates:
        room = min(cap, out.room())
        # Cut only the first, or when enough room is left for a cut to say something.
        if not _add_transcript(conn, out, row, room, room >= MIN_PART or not out.parts):
            out.drop("conversation", row["id"], "budget")
    return out.finish()


def _add_transcript(
    conn: sqlite3.Connection, out: Retrieved, row: sqlite3.Row, room: int, allow_cut: bool = True
) -> bool:
    """The conversation as heading + transcript in `room` tokens, as much as fits. The seam
    after the heading's colon can merge tokens, so the transcript is first offered a little
    more than the plain difference, then less by what the whole piece overflowed."""
    heading = _conversation_heading(row)
    give = room - tokens.count(heading) + 2
    for _ in range(4):
        if give <= 0:
            return False
        built = transcript.build(conn, row["id"], give)
        if built is None or not built.text or (built.cut and not allow_cut):
            return False
        piece = f"{heading}\n{built.text}"
        if out.add(piece, "conversation", row["id"], cut=built.cut):
            return True
        give -= max(1, tokens.count(piece) - room)
    return False


def _relevant_conversations(
    conn: sqlite3.Connection, scope: Scope, most: int, ctx: Context
) -> list[sqlite3.Row]:
    """Conversations in scope ordered by their best hybrid-search hit for the query."""
    assert scope.query is not None
    try:
        hits = ranked_search(
            conn,
            ctx.index(),
            scope.query,
            "hybrid",
            chat_id=scope.chat_id if len(scope.chat_ids) == 1 else None,
            limit=SEARCH_HITS,
        )
    except ChatStatsError:  # a query with no searchable word: fall back to the newest
        return []
    chats = set(scope.chat_ids)
    order: list[int] = []
    for message, _score, _matched in hits:
        cid = message.conversation_id
        if cid is not None and message.chat_id in chats and cid not in order:
            order.append(cid)
        if len(order) >= most:
            break
    rows = {r["id"]: r for r in store.conversations_by_ids(conn, order)}
    return [rows[c] for c in order if c in rows]


def _render_value(value: Any) -> str:
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(" ".join(str(v).split()) for v in value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _summary_of(result: dict[str, Any]) -> str | None:
    for key in ("summary", "description", "text"):
        if isinstance(result.get(key), str) and result[key].strip():
            return f"- {key}: {_render_value(result[key])}"
    first = next((k for k, v in result.items() if isinstance(v, str) and v.strip()), None)
    return None if first is None else f"- {first}: {_render_value(result[first])}"


def analyses(
    conn: sqlite3.Connection, scope: Scope, budget: int, params: dict[str, Any], ctx: Context
) -> Retrieved:
    most = _int_param(params, "max_items", 30, 1, 1000)
    passes = _names_param(params, "passes")
    fields = _names_param(params, "fields")
    stale = _bool_param(params, "include_stale", True)
    out = Retrieved("analyses", budget, "What the analyses found, newest conversation first:")
    rows = store.analyses(
        conn,
        chat_ids=None if scope.conversation_id is not None else list(scope.chat_ids),
        conversation_id=scope.conversation_id,
        passes=passes,
        include_stale=stale,
        limit=most,
    )
    for row in rows:
        try:
            result = json.loads(row["result"])
        except ValueError:
            out.drop("analysis", row["id"], "unreadable")
            continue
        if not isinstance(result, dict):
            result = {"result": result}
        shown = {k: v for k, v in result.items() if fields is None or k in fields}
        if not shown:
            out.drop("analysis", row["id"], "no_fields")
            continue
        head = (
            f"Conversation {row['conversation_id']} ({_minute(row['start_ns'])} UTC,"
            f" {row['message_count']} messages), {row['pass']} v{row['pass_version']}"
            f"{' (stale)' if row['stale'] else ''}:"
        )
        whole = "\n".join([head, *(f"- {k}: {_render_value(v)}" for k, v in shown.items())])
        if out.add(whole, "analysis", row["id"]):
            continue
        summary = _summary_of(shown)
        room = out.room() - tokens.count(head) - 1
        if summary is not None and room >= MIN_PART // 3:
            short = clip(summary, room)
            if short and out.add(f"{head}\n{short}", "analysis", row["id"], cut=True):
                continue
        out.drop("analysis", row["id"], "budget", tokens.count(whole))
    return out.finish()


def artifacts(
    conn: sqlite3.Connection, scope: Scope, budget: int, params: dict[str, Any], ctx: Context
) -> Retrieved:
    most = _int_param(params, "max_items", 10, 1, 200)
    out = Retrieved("artifacts", budget, "Documents the assistant wrote about this, newest first:")
    for row in store.documents(conn, list(scope.chat_ids), scope.contact_id, most):
        head = f"Document {row['id']} “{' '.join(row['title'].split())}” ({_minute(row['created_ns'])} UTC):"
        whole = f"{head}\n{row['content'].strip()}"
        if out.add(whole, "document", row["id"]):
            continue
        room = out.room() - tokens.count(head) - 1
        if room >= MIN_PART:
            part = clip(row["content"].strip(), room)
            if part and out.add(f"{head}\n{part}", "document", row["id"], cut=True):
                continue
        out.drop("document", row["id"], "budget", tokens.count(whole))
    return out.finish()


def raw_conversation(
    conn: sqlite3.Connection, scope: Scope, budget: int, params: dict[str, Any], ctx: Context
) -> Retrieved:
    out = Retrieved("raw_conversation", budget, "The conversation:")
    if scope.conversation_id is not None:
        rows = store.conversations_by_ids(conn, [scope.conversation_id])
    else:
        rows = store.conversations(conn, list(scope.chat_ids), 1)
    if not rows:
        return out
    if not _add_transcript(conn, out, rows[0], out.room()):
        out.drop("conversation", rows[0]["id"], "budget")
    return out.finish()


def chat_text(
    conn: sqlite3.Connection, scope: Scope, budget: int, params: dict[str, Any], ctx: Context
) -> Retrieved:
    most = _int_param(params, "max_messages", 2000, 1, 100_000)
    out = Retrieved("chat_text", budget, "The most recent messages, oldest first (times UTC):")
    out._prepend = True
    out.sep = "\n"  # a transcript reads line by line
    chats = list(scope.chat_ids)
    labels = transcript.Labels()
    read = 0
    full = False
    for row in store.recent_messages(conn, chats, most):
        read += 1
        body = transcript.message_body(row)
        if body is None:
            continue
        who = labels(row["is_from_me"], row["handle_id"], row["name"])
        line = f"[{_minute(row['date_ns'])}] {who}: {body}"
        if full or not out.add(line, "message", row["id"]):
            full = True  # contiguous: once one does not fit, older ones are left out
            out.drop("message", row["id"], "budget")
    out.dropped_count += max(0, store.count_messages(conn, chats) - read)
    return out.finish()


def user_name(
    conn: sqlite3.Connection, scope: Scope, budget: int, params: dict[str, Any], ctx: Context
) -> Retrieved:
    out = Retrieved("user_name", budget, "Who is who:")
    me = store.me_name(conn)
    if me:
        line = f"The user is {' '.join(me.split())}; their own messages are labelled “Me”."
    else:
        line = "The user's own messages are labelled “Me”."
    if not out.add(line, "user", None):
        out.drop("user", None, "budget")
    if scope.contact_id is not None:
        name = store.contact_name(conn, scope.contact_id)
        about = f"This is about {' '.join(name.split())}." if name else None
        if about and not out.add(about, "contact", scope.contact_id):
            out.drop("contact", scope.contact_id, "budget")
    if scope.chat_ids:
        people = store.participants(conn, list(scope.chat_ids))
        names, unnamed = [], 0
        for p in people:
            if p["name"].strip():
                names.append(" ".join(p["name"].split()))
            else:
                unnamed += 1
        if unnamed:
            names.append(f"{unnamed} unnamed {'person' if unnamed == 1 else 'people'}")
        if names:
            listed = "Other people here: " + ", ".join(dict.fromkeys(names)) + "."
            if not out.add(listed, "participants", None):
                room = out.room()
                if room < 12 or not out.add(clip(listed, room), "participants", None, cut=True):
                    out.drop("participants", None, "budget")
    return out.finish()


Retriever = Callable[[sqlite3.Connection, Scope, int, dict[str, Any], Context], Retrieved]

# name -> (function, its params, the scopes it can read)
RETRIEVERS: dict[str, tuple[Retriever, frozenset[str]]] = {
    "convos": (convos, frozenset({"max_conversations", "per_conversation_tokens"})),
    "analyses": (analyses, frozenset({"max_items", "passes", "fields", "include_stale"})),
    "artifacts": (artifacts, frozenset({"max_items"})),
    "raw_conversation": (raw_conversation, frozenset()),
    "chat_text": (chat_text, frozenset({"max_messages"})),
    "user_name": (user_name, frozenset()),
}


def check_params(name: str, params: dict[str, Any]) -> None:
    """Unknown retriever or parameter: a 400 naming it."""
    if name not in RETRIEVERS:
        raise BadRequest(f"unknown retriever {name[:40]!r}; known: {', '.join(RETRIEVERS)}")
    unknown = sorted(set(params) - RETRIEVERS[name][1])
    if unknown:
        raise BadRequest(f"retriever {name} takes no parameter {unknown[0][:40]!r}")


def run(
    name: str,
    conn: sqlite3.Connection,
    scope: Scope,
    budget: int,
    params: dict[str, Any],
    ctx: Context,
) -> Retrieved:
    check_params(name, params)
    fn = RETRIEVERS[name][0]
    if budget <= 0:
        return Retrieved(name, max(0, budget), "")
    return fn(conn, scope, budget, params, ctx)
