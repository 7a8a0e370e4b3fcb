-- iMessage domain: written only by ingest (import, live tail, contacts).
-- Apple's GUIDs are the natural keys, so replays of the same rows are harmless.
-- Times are Unix epoch nanoseconds (Apple's 2001-based ns or seconds converted once, exactly).

CREATE TABLE contacts (
    id              INTEGER PRIMARY KEY,
    name            TEXT,                 -- NULL: nameless (only an identifier is known)
    ab_key          TEXT UNIQUE,          -- AddressBook identity; NULL for contacts made from a handle
    is_me           INTEGER NOT NULL DEFAULT 0,
    message_count   INTEGER NOT NULL DEFAULT 0,
    last_message_ns INTEGER
);

-- Every normalised identifier (E.164 phone, case-folded email) and match key of a contact.
CREATE TABLE contact_identifiers (
    identifier TEXT PRIMARY KEY,
    contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX contact_identifiers_contact ON contact_identifiers(contact_id);

-- chat.db handles: one row per (address, service), as Apple keeps them.
CREATE TABLE handles (
    id         INTEGER PRIMARY KEY,
    identifier TEXT NOT NULL,             -- handle.id exactly as Apple stores it
    service    TEXT NOT NULL DEFAULT '',
    contact_id INTEGER REFERENCES contacts(id),
    UNIQUE (identifier, service)
);
CREATE INDEX handles_contact ON handles(contact_id);

CREATE TABLE chats (
    id              INTEGER PRIMARY KEY,
    guid            TEXT NOT NULL UNIQUE,
    chat_identifier TEXT,
    service         TEXT,
    display_name    TEXT,
    is_group        INTEGER NOT NULL,
    message_count   INTEGER NOT NULL DEFAULT 0,
    last_message_ns INTEGER,
    last_message_id INTEGER
);
CREATE INDEX chats_recent ON chats(last_message_ns, id);

CREATE TABLE chat_participants (
    chat_id   INTEGER NOT NULL REFERENCES chats(id),
    handle_id INTEGER NOT NULL REFERENCES handles(id),
    PRIMARY KEY (chat_id, handle_id)
) WITHOUT ROWID;

-- Conversations: runs of a chat's messages with no gap over 90 minutes.
CREATE TABLE conversations (
    id            INTEGER PRIMARY KEY,
    chat_id       INTEGER NOT NULL REFERENCES chats(id),
    start_ns      INTEGER NOT NULL,
    end_ns        INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    sealed        INTEGER NOT NULL DEFAULT 0,
    sealed_at_ns  INTEGER
);
CREATE INDEX conversations_chat ON conversations(chat_id, start_ns);

-- Messages and system events (renames, membership). Tapbacks live in `reactions`.
CREATE TABLE messages (
    id                INTEGER PRIMARY KEY,
    guid              TEXT NOT NULL,
    chat_id           INTEGER REFERENCES chats(id),           -- NULL: orphan row (no chat in chat.db)
    conversation_id   INTEGER REFERENCES conversations(id),
    handle_id         INTEGER REFERENCES handles(id),         -- sender; NULL when from me
    is_from_me        INTEGER NOT NULL,
    date_ns           INTEGER NOT NULL,
    text              TEXT,
    subject           TEXT,
    service           TEXT,
    kind              TEXT NOT NULL DEFAULT 'message',
    group_title       TEXT,
    other_handle_id   INTEGER REFERENCES handles(id),
    reply_to_guid     TEXT,
    reply_to_part     INTEGER,
    edited            INTEGER NOT NULL DEFAULT 0,
    unsent            INTEGER NOT NULL DEFAULT 0,
    date_edited_ns    INTEGER,
    is_read           INTEGER NOT NULL DEFAULT 0,
    date_read_ns      INTEGER,
    is_delivered      INTEGER NOT NULL DEFAULT 0,
    date_delivered_ns INTEGER,
    is_sent           INTEGER NOT NULL DEFAULT 0,
    balloon           TEXT,
    effect            TEXT,
    is_audio          INTEGER NOT NULL DEFAULT 0,
    body_status       TEXT NOT NULL DEFAULT 'ok',             -- ok | none | corrupt
    source_rowid      INTEGER
);
-- GUID uniqueness as an index, not a column constraint, so a race-mode load into an empty
-- table can build it once at the end (chat.db's own GUIDs are unique) instead of inserting
-- 300k random UUIDs into a B-tree one by one.
CREATE UNIQUE INDEX messages_guid ON messages(guid);
CREATE INDEX messages_chat_date ON messages(chat_id, date_ns, id);
CREATE INDEX messages_conversation ON messages(conversation_id, date_ns);
CREATE INDEX messages_handle ON messages(handle_id);

-- Tapbacks, with Apple's add/remove history; `active` is what a person sees now.
CREATE TABLE reactions (
    id          INTEGER PRIMARY KEY,
    guid        TEXT NOT NULL UNIQUE,
    target_guid TEXT NOT NULL,
    part        INTEGER NOT NULL DEFAULT 0,
    type        TEXT NOT NULL,
    emoji       TEXT,
    is_removal  INTEGER NOT NULL,
    handle_id   INTEGER REFERENCES handles(id),
    is_from_me  INTEGER NOT NULL,
    date_ns     INTEGER NOT NULL,
    active      INTEGER NOT NULL
);
CREATE INDEX reactions_target ON reactions(target_guid, part);

CREATE TABLE attachments (
    id            INTEGER PRIMARY KEY,
    guid          TEXT NOT NULL UNIQUE,
    message_id    INTEGER REFERENCES messages(id),
    position      INTEGER NOT NULL DEFAULT 0,
    filename      TEXT,
    transfer_name TEXT,
    mime_type     TEXT,
    uti           TEXT,
    total_bytes   INTEGER NOT NULL DEFAULT 0,
    is_sticker    INTEGER NOT NULL DEFAULT 0,
    created_ns    INTEGER
);
CREATE INDEX attachments_message ON attachments(message_id, position);

-- Full-text index over message text; ingest keeps it in step (no triggers: bulk loads rebuild).
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);

-- One row per source database (a Mac's chat.db or an iPhone backup's sms.db): its cursors.
CREATE TABLE sources (
    id                    INTEGER PRIMARY KEY,
    path                  TEXT NOT NULL UNIQUE,
    kind                  TEXT NOT NULL,              -- chatdb | backup
    last_message_rowid    INTEGER NOT NULL DEFAULT 0,
    last_attachment_rowid INTEGER NOT NULL DEFAULT 0,
    last_edit_ns          INTEGER NOT NULL DEFAULT 0,
    imported_at_ns        INTEGER
);

-- Each import run; a row left 'running' means the process died and its transaction rolled back.
CREATE TABLE import_runs (
    id             INTEGER PRIMARY KEY,
    source_id      INTEGER REFERENCES sources(id),
    state          TEXT NOT NULL,                     -- running | complete | failed
    started_ns     INTEGER NOT NULL,
    finished_ns    INTEGER,
    summary        TEXT                               -- JSON counts, never message content
);
