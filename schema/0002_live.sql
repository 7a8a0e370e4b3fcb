-- Live sync: the event log (replaces Redis Streams), seal timers (replaces the Redis sorted
-- set), and the cursors beyond ROWID that catch rows Messages.app updates in place.

-- Append-only event log. `id` is the stream id clients resume from (Last-Event-ID).
-- `data` is JSON with ids and counts, never message text or names.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    stream     TEXT NOT NULL,
    scope      TEXT NOT NULL,
    type       TEXT NOT NULL,
    run_id     TEXT,
    data       TEXT NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE INDEX events_stream ON events(stream, id);
CREATE INDEX events_scope ON events(scope, id);

-- One timer per open conversation: due when 90 minutes have passed after its last message.
CREATE TABLE seal_timers (
    conversation_id INTEGER PRIMARY KEY REFERENCES conversations(id),
    chat_id         INTEGER NOT NULL REFERENCES chats(id),
    due_ns          INTEGER NOT NULL
);
CREATE INDEX seal_timers_due ON seal_timers(due_ns);
CREATE INDEX seal_timers_chat ON seal_timers(chat_id);

-- Cursors over columns Messages.app updates after inserting a row, in Apple's own units
-- (ns since 2001), so they compare directly with chat.db. last_edit_ns (0001) is one too.
ALTER TABLE sources ADD COLUMN last_retract_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sources ADD COLUMN last_read_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sources ADD COLUMN last_delivered_ns INTEGER NOT NULL DEFAULT 0;
