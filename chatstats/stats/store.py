"""SQL of the statistics: the trigger-kept 15-minute buckets (schema 0007), the packs of
schema 0015 and indexed reads.

Every read is bounded by an index or reads a small summary whole (stats_month_packs, ~600
rows): `stats_buckets` for partial months, `messages_chat_date` for one chat's messages at
the edges, `reactions_target` for the tapbacks on them. None scans all messages.
"""

from __future__ import annotations

import sqlite3

BUCKET_NS = 900_000_000_000  # 15 minutes: every real UTC offset is a multiple of it

BUCKET_SIDES_CHAT = (
    "SELECT 0, is_from_me, SUM(messages) AS n FROM stats_buckets"
    " WHERE bucket >= :lo AND bucket < :hi GROUP BY is_from_me"
)
FIRST_BUCKET = "SELECT MIN(bucket) FROM stats_buckets WHERE bucket >= :lo AND bucket <= :hi"
LAST_BUCKET = "SELECT MAX(bucket) FROM stats_buckets WHERE bucket >= :lo AND bucket <= :hi"
CHATS_IN_BUCKET = "SELECT DISTINCT chat_id FROM stats_buckets WHERE bucket = :b"
BUCKET_SIDES = (
    "SELECT is_from_me, SUM(messages) AS n FROM stats_buckets"
    " WHERE bucket >= :lo AND bucket < :hi GROUP BY is_from_me"
)
# Two subqueries: MIN and MAX in one SELECT would lose SQLite's one-seek optimisation.
BUCKET_RANGE = (
    "SELECT (SELECT MIN(bucket) FROM stats_buckets) AS lo,"
    " (SELECT MAX(bucket) FROM stats_buckets) AS hi"
)
# Exact edges: one chat's messages in [a, b) ns, by the chat/date index.
EDGE = (
    "SELECT m.chat_id, m.is_from_me, h.contact_id, m.date_ns FROM messages m"
    " LEFT JOIN handles h ON h.id = m.handle_id"
    " WHERE m.chat_id = :chat AND m.date_ns >= :a AND m.date_ns < :b AND m.kind = 'message'"
)
CHATS_IN_BUCKETS = "SELECT DISTINCT chat_id FROM stats_buckets WHERE bucket >= :lo AND bucket < :hi"
# Index order, stopping at the first row that is a message (MIN() with the kind filter
# would read the whole chat).
FIRST_IN_CHAT = (
    "SELECT date_ns FROM messages WHERE chat_id = :chat AND date_ns >= :a AND date_ns < :b"
    " AND kind = 'message' ORDER BY date_ns LIMIT 1"
)
LAST_IN_CHAT = (
    "SELECT date_ns FROM messages WHERE chat_id = :chat AND date_ns >= :a AND date_ns < :b"
    " AND kind = 'message' ORDER BY date_ns DESC LIMIT 1"
)
CHAT_TITLES = (
    "SELECT id, guid, display_name, chat_identifier, is_group FROM chats"
    " WHERE id IN (SELECT value FROM json_each(:ids))"
)
# As the library lists them (/api/chats titles): by handle id within a chat.
CHAT_PEOPLE = (
    "SELECT cp.chat_id, h.identifier, h.contact_id, c.name FROM chat_participants cp"
    " JOIN handles h ON h.id = cp.handle_id LEFT JOIN contacts c ON c.id = h.contact_id"
    " WHERE cp.chat_id IN (SELECT value FROM json_each(:ids)) ORDER BY cp.chat_id, h.id"
)
CHAT = "SELECT id, is_group FROM chats WHERE id = :id"
CONTACT = "SELECT id FROM contacts WHERE id = :id"
# A chat's messages in time order (messages_chat_date).
CHAT_MESSAGES = (
    "SELECT m.id, m.guid, m.chat_id, m.conversation_id, m.date_ns, m.is_from_me, m.text,"
    " h.contact_id FROM messages m LEFT JOIN handles h ON h.id = m.handle_id"
    " WHERE m.chat_id = :chat AND m.kind = 'message' AND m.date_ns >= :a AND m.date_ns < :b"
    " ORDER BY m.date_ns, m.id"
)
# Chats a contact is in: by participation or by having sent in them.
CONTACT_CHATS = (
    "SELECT c.id, c.is_group FROM chats c WHERE c.id IN ("
    " SELECT p.chat_id FROM chat_participants p JOIN handles h ON h.id = p.handle_id"
    " WHERE h.contact_id = :contact"
    " UNION SELECT DISTINCT y.chat_id FROM stats_years y JOIN handles h ON h.id = y.handle_id"
    " WHERE h.contact_id = :contact)"
)
CONTACT_HANDLES = "SELECT id FROM handles WHERE contact_id = :contact"
# The senders (not me) of a chat's messages, from its packed blocks.
CHAT_SENDERS = (
    "SELECT DISTINCT handle_id FROM stats_blocks WHERE chat_id = :chat AND is_from_me = 0"
)
CHAT_ROWS = (
    "SELECT date_ns, COALESCE(handle_id, 0) AS handle, is_from_me, text, guid, conversation_id"
    " FROM messages WHERE chat_id = :chat AND kind = 'message' AND date_ns >= :a AND date_ns < :b"
    " ORDER BY date_ns, id"
)
# Standing tapbacks on one chat's messages in [a, b): one indexed join, not one query a message.
CHAT_REACTIONS = (
    "SELECT r.target_guid, r.type, r.is_from_me FROM messages m"
    " JOIN reactions r ON r.target_guid = m.guid AND r.active = 1 AND r.is_removal = 0"
    " WHERE m.chat_id = :chat AND m.kind = 'message' AND m.date_ns >= :a AND m.date_ns < :b"
)


def one_value(conn: sqlite3.Connection, sql: str, params: dict[str, object]) -> object:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


MOST_REACTED = (
    "SELECT message_id, chat_id, n FROM stats_reacted WHERE date_ns >= :a AND date_ns < :b"
    " ORDER BY n DESC, date_ns, message_id LIMIT 1"
)
HANDLE_CONTACTS = (
    "SELECT id, contact_id FROM handles WHERE id IN (SELECT value FROM json_each(:ids))"
)

# All-time counts for the live streams.
CHAT_COUNTS = (
    "SELECT chat_id, is_from_me, SUM(messages) FROM stats_years"
    " WHERE chat_id IN (SELECT value FROM json_each(:ids)) GROUP BY chat_id, is_from_me"
)
HANDLES_RECEIVED = (
    "SELECT SUM(y.messages) FROM handles h JOIN stats_years y ON y.handle_id = h.id"
    " WHERE h.contact_id = :contact AND y.is_from_me = 0"
)

# Schema 0015: stats_months packed per (chat, handle, side); a bucket range per key.
# Packs come back concatenated by SQL with their keys beside them (one row, two texts):
# fetching ~600 rows one by one cost ~1.5 ms in sqlite3's row objects, one group_concat ~0.2.
MONTH_PACKS = (
    "SELECT group_concat(printf('%016x%016x%016x%016x', chat_id, handle_id, is_from_me,"
    " length(CAST(packed AS BLOB)) / 16), ''), group_concat(packed, '') FROM stats_month_packs"
)
BUCKET_KEYS = (
    "SELECT chat_id, handle_id, is_from_me, SUM(messages) FROM stats_buckets"
    " WHERE bucket >= :lo AND bucket < :hi GROUP BY chat_id, handle_id, is_from_me"
)
# Schema 0015: a year's buckets per UTC day, its replies per UTC day and side.
BUCKET_DAYS = (
    "SELECT group_concat(packed, '') FROM stats_bucket_days WHERE day >= :d0 AND day < :d1"
)
BUCKET_SIDES_RANGE = (
    "SELECT bucket * 2 + is_from_me, SUM(messages) FROM stats_buckets"
    " WHERE bucket >= :lo AND bucket < :hi GROUP BY bucket, is_from_me"
)
REPLY_DAYS = (
    "SELECT group_concat(packed, '') FROM stats_reply_days"
    " WHERE day >= :d0 AND day < :d1 AND is_from_me = :side AND min_prev_ns >= :a"
)
# Days holding a reply to a message before :a (read exactly instead).
REPLY_DAYS_BEFORE = (
    "SELECT day FROM stats_reply_days"
    " WHERE day >= :d0 AND day < :d1 AND is_from_me = :side AND min_prev_ns < :a"
)
REPLIES_RANGE = (
    "SELECT handle_id, gap_ns FROM stats_replies WHERE is_from_me = :side"
    " AND date_ns >= :x AND date_ns < :y AND date_ns - gap_ns >= :a"
)
# [received, sent] of many bucket ranges at once: :ranges is a JSON list of [lo, hi).
BUCKET_SIDES_MANY = (
    "SELECT r.key, b.is_from_me, SUM(b.messages) FROM json_each(:ranges) AS r"
    " CROSS JOIN stats_buckets b ON b.bucket >= r.value ->> 0 AND b.bucket < r.value ->> 1"
    " GROUP BY r.key, b.is_from_me"
)
