"""Conversation grouping for a batch: new messages join, extend or reopen conversations,
or start new ones with seal timers; system events join the conversation whose span holds
them. The splitting rule itself is `chatstats.ingest.conversations`.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Any

import msgspec

from chatstats import log
from chatstats.events import bus as event_log
from chatstats.events import catalogue
from chatstats.ingest import conversations as conv
from chatstats.ingest import sealer
from chatstats.ingest.batch.base import BatchState

logger = log.get(__name__)


class ConversationRows(BatchState):
    """Files the batch's messages and events into conversations."""

    def assign_conversations_early(self) -> list[tuple[int, list[int]]]:
        """Plan conversations for `new_points` before their rows exist: creates the
        conversations and seal timers and returns (conversation id, its message ids) for the
        caller to write with the rows. Only for a load whose points are final."""
        timers, assign = self._plan_conversations()
        self._early_timers = timers
        return assign

    def conversations_planned(self, timers: bool) -> None:
        """The load planned and wrote conversations itself (ingest/plan.py); `timers`: some
        were left open."""
        self._early_timers = timers

    def _assign_conversations(self) -> bool:
        timers, assign = self._plan_conversations()
        self.conn.executemany(
            "UPDATE messages SET conversation_id = ? WHERE id = ?",
            ((cid, mid) for cid, ids in assign for mid in ids),
        )
        return timers

    def _plan_conversations(self) -> tuple[bool, list[tuple[int, list[int]]]]:
        conn = self.conn
        # Past every id ever given: a merged-away conversation's id is never reused.
        next_cid = conn.execute(
            "SELECT max((SELECT COALESCE(MAX(id), 0) FROM conversations),"
            " (SELECT COALESCE(MAX(id), 0) FROM removed_conversations)) + 1"
        ).fetchone()[0]
        conv_rows: list[tuple[Any, ...]] = []
        assign: list[tuple[int, list[int]]] = []  # per conversation, not per message
        open_convs: dict[int, tuple[int, int]] = {}  # conversation id → (chat id, end_ns)
        # For placing system events: per chat, the spans (start, end, id) this plan created,
        # extended or kept, and the stretches of time (chat, id, after, up to) it newly
        # covered, where events ingested earlier may now lie inside a conversation.
        spans: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        covered: list[tuple[int, int, int, int]] = []
        sealed_before = self.now_ns - conv.GAP_NS

        def create(chat_id: int, group: conv.Group) -> int:
            nonlocal next_cid
            sealed = self.seal_expired and group.end_ns < sealed_before
            conv_rows.append(
                (
                    next_cid,
                    chat_id,
                    group.start_ns,
                    group.end_ns,
                    len(group.message_ids),
                    int(sealed),
                    self.now_ns if sealed else None,
                )
            )
            assign.append((next_cid, group.message_ids))
            spans[chat_id].append((group.start_ns, group.end_ns, next_cid))
            covered.append((chat_id, next_cid, group.start_ns - 1, group.end_ns))
            if not sealed:
                open_convs[next_cid] = (chat_id, group.end_ns)
            cid: int = next_cid
            next_cid += 1
            self.counters.conversations_created += 1
            return cid

        # chats.last_message_ns still describes the chat before this batch (refreshed later).
        newest = dict(
            conn.execute(
                "SELECT id, last_message_ns FROM chats WHERE id IN (SELECT value FROM json_each(:c))",
                {"c": msgspec.json.encode(list(self.new_points)).decode()},
            ).fetchall()
        )
        for chat_id, points in self.new_points.items():
            points.sort()
            newest_before = newest.get(chat_id)
            if newest_before is None or points[0].date_ns >= newest_before:
                last = conn.execute(
                    "SELECT id, start_ns, end_ns, message_count, sealed FROM conversations"
                    " WHERE chat_id = :c ORDER BY end_ns DESC, id DESC LIMIT 1",
                    {"c": chat_id},
                ).fetchone()
                open_ = (
                    conv.Open(last[0], last[1], last[2], last[3], bool(last[4])) if last else None
                )
                plan = conv.append(open_, points)
                if plan.extend is not None:
                    cid, end_ns, ids = plan.extend
                    conn.execute(
                        "UPDATE conversations SET end_ns = :e, message_count = message_count + :n"
                        " WHERE id = :id",
                        {"e": end_ns, "n": len(ids), "id": cid},
                    )
                    if plan.reopen:
                        self._reopen(cid, chat_id)
                    assign.append((cid, ids))
                    open_convs[cid] = (chat_id, end_ns)
                    spans[chat_id].append((last[1], end_ns, cid))
                    covered.append((chat_id, cid, last[2], end_ns))
                for group in plan.create:
                    create(chat_id, group)
                continue
            # Older messages arrived: fresh split of the whole chat, keeping unchanged ids.
            rows = conn.execute(
                "SELECT date_ns, id, conversation_id FROM messages"
                " WHERE chat_id = :c AND kind = 'message'",
                {"c": chat_id},
            ).fetchall()
            existing: dict[int, set[int]] = defaultdict(set)
            for _d, mid, cid in rows:
                if cid is not None:
                    existing[cid].add(mid)
            plan_r = conv.reconcile(
                conv.split(sorted(conv.Point(d, mid) for d, mid, _c in rows)),
                {k: frozenset(v) for k, v in existing.items()},
            )
            for cid, group in plan_r.keep:
                spans[chat_id].append((group.start_ns, group.end_ns, cid))
            for cid, group in plan_r.grow:
                # Older messages reached into it (or merged others into it): same id, new
                # span; open again, with a timer, even if it was sealed.
                conn.execute(
                    "UPDATE conversations SET start_ns = :s, end_ns = :e, message_count = :n"
                    " WHERE id = :id",
                    {
                        "s": group.start_ns,
                        "e": group.end_ns,
                        "n": len(group.message_ids),
                        "id": cid,
                    },
                )
                self._reopen(cid, chat_id)
                assign.append((cid, group.message_ids))
                open_convs[cid] = (chat_id, group.end_ns)
                spans[chat_id].append((group.start_ns, group.end_ns, cid))
                covered.append((chat_id, cid, group.start_ns - 1, group.end_ns))
            now_in: dict[int, int] = {}  # message id → its conversation after the split
            for cid, group in plan_r.grow:
                now_in.update(dict.fromkeys(group.message_ids, cid))
            for group in plan_r.create:
                now_in.update(dict.fromkeys(group.message_ids, create(chat_id, group)))
            if plan_r.delete:
                self._remove(chat_id, {d: now_in.get(min(existing[d])) for d in plan_r.delete})
        conn.executemany(
            "INSERT INTO conversations (id, chat_id, start_ns, end_ns, message_count, sealed,"
            " sealed_at_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
            conv_rows,
        )
        for cid, (chat_id, end_ns) in open_convs.items():
            sealer.schedule(conn, cid, chat_id, end_ns)
        assign.extend(self._place_events(spans, covered))
        return bool(open_convs), assign

    def _remove(self, chat_id: int, merged_into: dict[int, int | None]) -> None:
        """Conversations a fresh split merged into others: their rows and timers go, a
        tombstone keeps each id from reuse and says where its messages went, and
        `conversation_removed` tells the analysis side to drop what it stored under them
        (the conversation they joined is reopened and analysed again when sealed)."""
        conn = self.conn
        ids_json = msgspec.json.encode(sorted(merged_into)).decode()
        conn.execute(
            "DELETE FROM seal_timers WHERE conversation_id IN (SELECT value FROM json_each(:ids))",
            {"ids": ids_json},
        )
        conn.execute(
            "UPDATE messages SET conversation_id = NULL WHERE conversation_id IN"
            " (SELECT value FROM json_each(:ids))",
            {"ids": ids_json},
        )
        conn.execute(
            "DELETE FROM conversations WHERE id IN (SELECT value FROM json_each(:ids))",
            {"ids": ids_json},
        )
        for cid, into in sorted(merged_into.items()):
            conn.execute(
                "INSERT OR REPLACE INTO removed_conversations (id, chat_id, merged_into,"
                " removed_ns) VALUES (:id, :chat, :into, :now)",
                {"id": cid, "chat": chat_id, "into": into, "now": self.now_ns},
            )
            # A conversation merged into earlier had this one as its target: follow on.
            conn.execute(
                "UPDATE removed_conversations SET merged_into = :into WHERE merged_into = :id",
                {"id": cid, "into": into},
            )
            removed = catalogue.ConversationRemoved(
                chat_id=chat_id, conversation_id=cid, merged_into=into
            )
            event_log.append(conn, removed, scope=f"chat:{chat_id}")
        self.counters.conversations_removed += len(merged_into)
        logger.info("conversations_merged_away", chat_id=chat_id, count=len(merged_into))

    def _reopen(self, conversation_id: int, chat_id: int) -> None:
        """A message within 90 minutes of a sealed conversation joined it: reopen it (its
        timer is set with the other open conversations')."""
        if sealer.reopen(self.conn, conversation_id, chat_id) is not None:
            self.counters.conversations_reopened += 1

    def _place_events(
        self,
        spans: dict[int, list[tuple[int, int, int]]],
        covered: list[tuple[int, int, int, int]],
    ) -> list[tuple[int, list[int]]]:
        """System events belong to the conversation whose span holds them, or to none: they
        never open, extend or count in one. Runs once the plan's conversations exist.

        Returns (conversation id, event ids) for this batch's events; events ingested earlier
        that a conversation's span now reaches are attached here. A first load (nothing
        before it, and no indexes) needs only the spans it just made.
        """
        conn = self.conn
        earlier = self.first_new_id > 1
        if earlier:
            for chat_id, cid, after_ns, upto_ns in covered:
                conn.execute(
                    "UPDATE messages SET conversation_id = :cid WHERE chat_id = :c"
                    " AND date_ns > :a AND date_ns <= :u AND kind <> 'message' AND id < :first",
                    {
                        "cid": cid,
                        "c": chat_id,
                        "a": after_ns,
                        "u": upto_ns,
                        "first": self.first_new_id,
                    },
                )
        out: list[tuple[int, list[int]]] = []
        for chat_id, events in self.new_events.items():
            known = sorted(spans.get(chat_id, ()))
            starts = [k[0] for k in known]
            members: dict[int, list[int]] = defaultdict(list)
            for date_ns, mid in events:
                i = bisect.bisect_right(starts, date_ns) - 1
                if i >= 0 and known[i][1] >= date_ns:
                    members[known[i][2]].append(mid)
                    continue
                if not earlier:
                    continue
                # Spans do not overlap: only the latest one starting at or before it can hold it.
                row = conn.execute(
                    "SELECT id, end_ns FROM conversations WHERE chat_id = :c AND start_ns <= :d"
                    " ORDER BY start_ns DESC, id DESC LIMIT 1",
                    {"c": chat_id, "d": date_ns},
                ).fetchone()
                if row is not None and row[1] >= date_ns:
                    members[row[0]].append(mid)
            out.extend(members.items())
        return out
