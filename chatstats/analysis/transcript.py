"""A conversation as a compact transcript for a prompt, within a token budget.

Conversations can run to thousands of messages and a prompt has a price per token, so a
transcript is never sent whole when it does not fit: it keeps the beginning (what the
conversation was about, 30% of the budget) and the end (how it stands, the rest), with a
marker saying how many messages were left out between them. Only the messages that can fit
are read from the database, so a huge conversation costs no more to cut than a small one.

Tokens are counted with the real offline tokenizer (chatstats.llm.tokens, cl100k), the same
count the context retrievers use, so `max_tokens` is an exact limit on the text: each line is
charged its own tokens plus its newline (and a date line when the day changes), and the
joined text is counted once more at the end, dropping lines next to the cut in the rare case
a join merged tokens differently. One very long message is cut on its own so it cannot crowd
out the rest.

Speakers: "Me" for the person's own messages, the contact's name when known, otherwise
"Person A", "Person B", ... so phone numbers and e-mail addresses never reach the model.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from chatstats.llm import tokens

HEAD_SHARE = 0.3
MAX_MESSAGE_CHARS = 1200
ME = "Me"

_SELECT = (
    "SELECT m.id, m.date_ns, m.is_from_me, m.handle_id, m.text, m.kind, m.unsent,"
    " m.body_status, c.name,"
    " (SELECT count(*) FROM attachments a WHERE a.message_id = m.id) AS n_attachments"
    " FROM messages m"
    " LEFT JOIN handles h ON h.id = m.handle_id"
    " LEFT JOIN contacts c ON c.id = h.contact_id"
    " WHERE m.conversation_id = :cid"
)
_FORWARD = f"{_SELECT} ORDER BY m.date_ns, m.id"
_BACKWARD = f"{_SELECT} AND (m.date_ns, m.id) > (:ns, :id) ORDER BY m.date_ns DESC, m.id DESC"


@dataclass(frozen=True, slots=True)
class Transcript:
    conversation_id: int
    chat_id: int
    sealed: bool
    text: str
    message_count: int  # messages in the conversation
    included: int  # messages in the text
    omitted: int  # messages cut from the middle
    start_ns: int
    end_ns: int

    @property
    def tokens(self) -> int:
        return tokens.count(self.text)

    @property
    def cut(self) -> bool:
        return self.omitted > 0


def iso_minute(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


class Labels:
    """Speaker labels, stable within one transcript."""

    def __init__(self) -> None:
        self._anonymous: dict[int | None, str] = {}

    def __call__(self, is_from_me: int, handle_id: int | None, name: str | None) -> str:
        if is_from_me:
            return ME
        if name and name.strip():
            return " ".join(name.split())
        label = self._anonymous.get(handle_id)
        if label is None:
            label = f"Person {_letters(len(self._anonymous))}"
            self._anonymous[handle_id] = label
        return label


def _letters(n: int) -> str:
    """0 → A, 25 → Z, 26 → AA: enough for any group chat."""
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(65 + r) + out
    return out


def message_body(row: sqlite3.Row) -> str | None:
    """What the message said, on one line; None when there is nothing worth showing."""
    kind = row["kind"]
    if kind != "message":
        return f"({kind.replace('_', ' ')})"
    if row["unsent"]:
        return "(unsent a message)"
    text: str | None = row["text"]
    if text is not None:
        text = " / ".join(part.strip() for part in text.replace("\ufffc", "").splitlines())
        text = text.strip(" /")
    if not text:
        if row["n_attachments"]:
            n = row["n_attachments"]
            return "[attachment]" if n == 1 else f"[{n} attachments]"
        if row["body_status"] == "corrupt":
            return "[unreadable message]"
        return None
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1].rstrip() + "…"
    if row["n_attachments"]:
        text += " [attachment]"
    return text


class _Line:
    __slots__ = ("cost", "date", "id", "ns", "text")

    def __init__(self, row: sqlite3.Row, text: str) -> None:
        self.id: int = row["id"]
        self.ns: int = row["date_ns"]
        self.date = iso_minute(self.ns)[:10]
        self.text = text
        self.cost = tokens.count(text) + 1  # and its newline


def _date_line(date: str) -> str:
    return f"— {date} —"


def _date_cost(date: str) -> int:
    return tokens.count(_date_line(date)) + 1


def _render(lines: list[_Line], out: list[str], last_date: str | None) -> str | None:
    for line in lines:
        if line.date != last_date:
            out.append(_date_line(line.date))
            last_date = line.date
        out.append(line.text)
    return last_date


def _marker(omitted: int) -> str:
    return f"[… {omitted} message{'' if omitted == 1 else 's'} left out …]"


def _join(head: list[_Line], tail: list[_Line] | None, omitted: int) -> str:
    out: list[str] = []
    _render(head, out, None)
    if tail is not None:
        out.append(_marker(omitted))
        _render(tail, out, None)  # the date again after the cut, so the tail reads on its own
    return "\n".join(out)


def build(conn: sqlite3.Connection, conversation_id: int, max_tokens: int) -> Transcript | None:
    """The conversation's transcript within `max_tokens` (real tokens); None when it does not
    exist. The text may be empty when not even one line fits.

    Runs on a reader connection in one read transaction, so head and tail come from the same
    snapshot even while live sync appends to the conversation.
    """
    budget = max(0, max_tokens)
    # Every line is charged its newline, but the text has one newline fewer than lines.
    room = budget + 1
    conn.execute("BEGIN")
    try:
        conv = conn.execute(
            "SELECT chat_id, sealed, start_ns, end_ns FROM conversations WHERE id = :cid",
            {"cid": conversation_id},
        ).fetchone()
        if conv is None:
            return None
        total = conn.execute(
            "SELECT count(*) FROM messages WHERE conversation_id = :cid", {"cid": conversation_id}
        ).fetchone()[0]
        labels = Labels()

        def line_of(row: sqlite3.Row) -> _Line | None:
            body = message_body(row)
            if body is None:
                return None
            time = iso_minute(row["date_ns"])[11:]
            who = labels(row["is_from_me"], row["handle_id"], row["name"])
            return _Line(row, f"[{time}] {who}: {body}")

        # Read forward until the whole budget is used: if the end comes first, it all fits.
        head: list[_Line] = []
        used = 0
        whole = True
        head_budget = int(room * HEAD_SHARE)
        head_used = 0
        head_rows = 0
        head_key: tuple[int, int] | None = None
        last_date: str | None = None
        for read, row in enumerate(conn.execute(_FORWARD, {"cid": conversation_id}), 1):
            line = line_of(row)
            cost = 0
            if line is not None:
                cost = line.cost + (_date_cost(line.date) if line.date != last_date else 0)
            if used + cost > room:
                whole = False
                break
            used += cost
            if line is not None:
                head.append(line)
                last_date = line.date
            if used <= head_budget:
                head_used, head_rows, head_key = used, read, (row["date_ns"], row["id"])
        tail: list[_Line] | None = None
        tail_rows = 0
        if not whole:
            # Too long: keep the head's share, then read backward from the end for the tail.
            head = [ln for ln in head if head_key is not None and (ln.ns, ln.id) <= head_key]
            marker_room = tokens.count(_marker(total)) + 1
            tail_budget = room - head_used - marker_room
            tail = []
            tail_date: str | None = None
            after = head_key or (-(2**63), -(2**63))
            for row in conn.execute(
                _BACKWARD, {"cid": conversation_id, "ns": after[0], "id": after[1]}
            ):
                line = line_of(row)
                cost = 0
                if line is not None:
                    cost = line.cost + (_date_cost(line.date) if line.date != tail_date else 0)
                if cost > tail_budget:
                    break
                tail_budget -= cost
                tail_rows += 1
                if line is not None:
                    tail.append(line)
                    tail_date = line.date
            tail.reverse()
    finally:
        conn.execute("COMMIT")

    omitted = 0 if tail is None else max(0, total - head_rows - tail_rows)
    text = _join(head, tail, omitted)
    # Lines were charged one by one; a join can merge tokens at a seam, so count the whole and
    # give up lines beside the cut (or at the end) until it fits. Rarely runs more than once.
    while text and tokens.count(text) > budget:
        if tail:
            tail.pop(0)
            omitted += 1
        elif head:
            head.pop()
            omitted += 1
            if tail is None:
                tail = []
        else:
            text = ""
            break
        text = _join(head, tail, omitted)
    return Transcript(
        conversation_id=conversation_id,
        chat_id=conv["chat_id"],
        sealed=bool(conv["sealed"]),
        text=text,
        message_count=total,
        included=len(head) + len(tail or []),
        omitted=omitted,
        start_ns=conv["start_ns"],
        end_ns=conv["end_ns"],
    )
