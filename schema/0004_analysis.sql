-- Analysis: every LLM call accounted, durable jobs, runs, results, commitments.
-- Replaces Celery + Redis: jobs are rows; the in-memory priority queue only dispatches them.

-- One row per LLM call, whatever asked for it (analysis, chatbot). Never prompts or outputs.
CREATE TABLE llm_calls (
    id                INTEGER PRIMARY KEY,
    purpose           TEXT NOT NULL,          -- analysis | chatbot | ...
    job_id            INTEGER,
    run_id            TEXT,
    conversation_id   INTEGER,
    thread_id         INTEGER,
    model             TEXT NOT NULL,
    provider          TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    total_tokens      INTEGER,
    cost              REAL,                   -- USD; NULL when the model has no known price
    latency_ms        REAL NOT NULL,
    outcome           TEXT NOT NULL,          -- ok | rate_limited | server_error | timeout | invalid_output | error
    error             TEXT,                   -- error class / status only, never content
    created_ns        INTEGER NOT NULL
);
CREATE INDEX llm_calls_run ON llm_calls(run_id);
CREATE INDEX llm_calls_conversation ON llm_calls(conversation_id);
CREATE INDEX llm_calls_job ON llm_calls(job_id);

CREATE TABLE analysis_runs (
    id          TEXT PRIMARY KEY,             -- run id (hex)
    kind        TEXT NOT NULL,                -- global | historic | backfill | sealed | live
    status      TEXT NOT NULL,                -- running | complete
    passes      TEXT NOT NULL,                -- JSON list of pass names
    total       INTEGER NOT NULL DEFAULT 0,
    success     INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    created_ns  INTEGER NOT NULL,
    finished_ns INTEGER
);

CREATE TABLE analysis_jobs (
    id              INTEGER PRIMARY KEY,
    run_id          TEXT REFERENCES analysis_runs(id),
    conversation_id INTEGER NOT NULL,
    chat_id         INTEGER NOT NULL,
    pass            TEXT NOT NULL,
    pass_version    INTEGER NOT NULL,
    priority        INTEGER NOT NULL,         -- lower runs first
    state           TEXT NOT NULL,            -- pending | running | done | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    not_before_ns   INTEGER NOT NULL DEFAULT 0,  -- backoff and Retry-After
    last_error      TEXT,                     -- class / status only
    created_ns      INTEGER NOT NULL,
    updated_ns      INTEGER NOT NULL
);
-- At most one live job per conversation, pass and version.
CREATE UNIQUE INDEX analysis_jobs_live ON analysis_jobs(conversation_id, pass, pass_version)
    WHERE state IN ('pending', 'running');
CREATE INDEX analysis_jobs_ready ON analysis_jobs(state, priority, not_before_ns, id);
CREATE INDEX analysis_jobs_run ON analysis_jobs(run_id, state);

-- One result per conversation, pass and version (live passes replace theirs as it grows).
CREATE TABLE analyses (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL,
    chat_id         INTEGER NOT NULL,
    pass            TEXT NOT NULL,
    pass_version    INTEGER NOT NULL,
    result          TEXT NOT NULL,            -- JSON, validated against the pass's schema
    model           TEXT,
    llm_call_id     INTEGER REFERENCES llm_calls(id),
    job_id          INTEGER,
    run_id          TEXT,
    created_ns      INTEGER NOT NULL,
    UNIQUE (conversation_id, pass, pass_version)
);
CREATE INDEX analyses_chat ON analyses(chat_id, pass);

CREATE TABLE commitments (
    id              INTEGER PRIMARY KEY,
    analysis_id     INTEGER NOT NULL REFERENCES analyses(id) ON DELETE CASCADE,
    conversation_id INTEGER NOT NULL,
    chat_id         INTEGER NOT NULL,
    kind            TEXT NOT NULL,            -- promise | request
    who             TEXT,
    what            TEXT NOT NULL,
    due             TEXT,
    status          TEXT NOT NULL,            -- open | done | cancelled | unknown
    created_ns      INTEGER NOT NULL
);
CREATE INDEX commitments_chat ON commitments(chat_id, status);

-- Where each in-process consumer of the event log has read up to, so a restart resumes
-- exactly after the last event it handled (the event and its effects commit together).
CREATE TABLE event_cursors (
    name    TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
);
