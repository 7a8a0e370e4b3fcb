"""Tapbacks: what each person's reaction to each message part is *now*.

Apple stores reactions as rows: 2000–2007 add one, 3000–3007 remove one. Per target
message part and sender, a newer add replaces the older (changing 👍 to ❤️ writes only the
new add), and a removal clears the sender's reaction of that type. Every row is kept (with
`is_removal`), and `active` marks the reactions a person sees, so the API reads only those.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

import msgspec


class Tapback(NamedTuple):
    guid: str
    target_guid: str
    part: int
    type: str
    emoji: str | None
    is_removal: bool
    handle_id: int | None
    is_from_me: int
    date_ns: int


class _Current(NamedTuple):
    db_id: int | None  # set for rows already in the database
    new_index: int | None  # set for rows inserted by this call
    type: str
    date_ns: int


# (target guid, part, is_from_me, handle id or None for the owner): one reaction slot.
_Key = tuple[str, int, int, int | None]


def _key(t: Tapback | sqlite3.Row) -> _Key:
    return (t[1], t[2], t[7], None if t[7] else t[6])


def apply_tapbacks(conn: sqlite3.Connection, tapbacks: Sequence[Tapback]) -> int:
    """Insert tapback rows and update which reactions are active; returns rows inserted."""
    if not tapbacks:
        return 0
    targets = msgspec.json.encode(sorted({t.target_guid for t in tapbacks})).decode()
    state: dict[_Key, _Current] = {}
    for row in conn.execute(
        "SELECT id, target_guid, part, type, emoji, is_removal, handle_id, is_from_me, date_ns"
        " FROM reactions WHERE active = 1 AND target_guid IN (SELECT value FROM json_each(:t))",
        {"t": targets},
    ):
        state[_key(row)] = _Current(row[0], None, row[3], row[8])

    rows: list[list[object]] = []
    deactivate: list[int] = []

    def retire(cur: _Current) -> None:
        if cur.db_id is not None:
            deactivate.append(cur.db_id)
        elif cur.new_index is not None:
            rows[cur.new_index][-1] = 0

    for t in sorted(tapbacks, key=lambda t: t.date_ns):  # stable: ROWID order breaks ties
        key = _key(t)
        cur = state.get(key)
        active = 0
        if not t.is_removal:
            if cur is None or cur.date_ns <= t.date_ns:
                if cur is not None:
                    retire(cur)
                state[key] = _Current(None, len(rows), t.type, t.date_ns)
                active = 1
        elif cur is not None and cur.type == t.type and cur.date_ns <= t.date_ns:
            retire(cur)
            del state[key]
        rows.append(
            [
                t.guid,
                t.target_guid,
                t.part,
                t.type,
                t.emoji,
                int(t.is_removal),
                t.handle_id,
                t.is_from_me,
                t.date_ns,
                active,
            ]
        )
    if deactivate:
        conn.executemany("UPDATE reactions SET active = 0 WHERE id = ?", [(i,) for i in deactivate])
    before = conn.total_changes
    conn.executemany(
        "INSERT INTO reactions (guid, target_guid, part, type, emoji, is_removal, handle_id,"
        " is_from_me, date_ns, active) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(guid) DO NOTHING",
        rows,
    )
    return conn.total_changes - before
