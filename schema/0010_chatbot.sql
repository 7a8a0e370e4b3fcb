-- The AI chatbot's own domain: threads, their messages and contexts, documents, reads, and
-- one workflow row per turn. Never shares a table or an id space with the iMessage data
-- (chats, messages, conversations, contacts); chat_id / contact_id / conversation_id here
-- are references into it, not copies.

CREATE TABLE threads (
    id            INTEGER PRIMARY KEY,
    title         TEXT NOT NULL DEFAULT '',
    -- Aggregates over thread_messages, changed in the transaction that inserts a message.
    message_count INTEGER NOT NULL DEFAULT 0,
    total_tokens  INTEGER NOT NULL DEFAULT 0,
    total_cost    REAL NOT NULL DEFAULT 0.0,
    created_ns    INTEGER NOT NULL,
    updated_ns    INTEGER NOT NULL
);

-- Which chats or contacts a thread is about (exactly one of the two per row); changeable.
CREATE TABLE thread_contexts (
    id         INTEGER PRIMARY KEY,
    thread_id  INTEGER NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    chat_id    INTEGER,
    contact_id INTEGER,
    created_ns INTEGER NOT NULL,
    CHECK ((chat_id IS NULL) <> (contact_id IS NULL))
);
CREATE UNIQUE INDEX thread_contexts_unique
    ON thread_contexts(thread_id, coalesce(chat_id, 0), coalesce(contact_id, 0));

CREATE TABLE thread_messages (
    id                INTEGER PRIMARY KEY,
    thread_id         INTEGER NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    workflow_id       TEXT,                   -- the turn that wrote it (thread_workflows.id)
    role              TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content           TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'complete',  -- complete | partial | error
    error_code        TEXT,                   -- why a turn ended early; never content
    model             TEXT,
    provider          TEXT,
    -- Sums over the turn's llm_calls rows (llm_calls.run_id = workflow_id).
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    total_tokens      INTEGER,
    cost              REAL,                   -- NULL when a call used tokens without a price
    response_time_ms  REAL,
    tool_calls        INTEGER NOT NULL DEFAULT 0,
    citations         TEXT NOT NULL DEFAULT '[]',  -- JSON [{message_guid} | {conversation_id}]
    created_ns        INTEGER NOT NULL
);
CREATE INDEX thread_messages_thread ON thread_messages(thread_id, id);

-- One row per turn, written when it starts and when it ends: the durable side of the
-- workflow tracking (the in-memory side is chatstats.metrics). A row left 'running' by a
-- crash is closed at the next start, with whatever its recorded calls cost.
CREATE TABLE thread_workflows (
    id                   TEXT PRIMARY KEY,    -- hex; also llm_calls.run_id of its calls
    thread_id            INTEGER NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    user_message_id      INTEGER NOT NULL,
    assistant_message_id INTEGER,
    status               TEXT NOT NULL,       -- running | completed | failed
    error_code           TEXT,
    model                TEXT,
    steps                INTEGER NOT NULL DEFAULT 0,
    llm_calls            INTEGER NOT NULL DEFAULT 0,
    tool_calls           INTEGER NOT NULL DEFAULT 0,
    prompt_tokens        INTEGER NOT NULL DEFAULT 0,
    completion_tokens    INTEGER NOT NULL DEFAULT 0,
    cost                 REAL,
    response_time_ms     REAL,
    started_ns           INTEGER NOT NULL,
    finished_ns          INTEGER
);
CREATE INDEX thread_workflows_running ON thread_workflows(status) WHERE status = 'running';
CREATE INDEX thread_workflows_thread ON thread_workflows(thread_id);
CREATE INDEX llm_calls_thread ON llm_calls(thread_id);

-- Artifacts the assistant writes (the create_document tool).
CREATE TABLE documents (
    id          INTEGER PRIMARY KEY,
    thread_id   INTEGER REFERENCES threads(id) ON DELETE SET NULL,
    workflow_id TEXT,
    title       TEXT NOT NULL,
    content     TEXT NOT NULL,
    created_ns  INTEGER NOT NULL
);

-- The thread's contexts when the document was made: a snapshot, never updated.
CREATE TABLE document_contexts (
    id          INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    chat_id     INTEGER,
    contact_id  INTEGER,
    CHECK ((chat_id IS NULL) <> (contact_id IS NULL))
);
CREATE INDEX document_contexts_document ON document_contexts(document_id);

CREATE TABLE document_reads (
    id          INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    read_ns     INTEGER NOT NULL
);
CREATE INDEX document_reads_document ON document_reads(document_id);
