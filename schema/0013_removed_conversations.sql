-- Conversations a fresh split merged into another (older messages arrived between them).
-- A tombstone, not history: it keeps the id from ever being given to a new conversation
-- (analyses, citations and caches keyed by it would silently point at other messages) and
-- says where its messages went, so a link to it can be followed.
CREATE TABLE removed_conversations (
    id          INTEGER PRIMARY KEY,
    chat_id     INTEGER NOT NULL,
    merged_into INTEGER,
    removed_ns  INTEGER NOT NULL
);
