-- Context definitions: named recipes of retrievers that pack context into a token budget
-- (chatstats/context/definitions.py). Seeded from prompts/context/definitions.toml at every
-- start; the seed is idempotent (one row per name, replaced when the file changes).
-- 0011 is taken by the statistics summaries.

CREATE TABLE context_definitions (
    name        TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    scopes      TEXT NOT NULL,              -- JSON list of "chat" | "contact" | "conversation"
    retrievers  TEXT NOT NULL,              -- JSON list of {retriever, share, params}
    position    INTEGER NOT NULL,           -- order in the file
    source_hash TEXT NOT NULL,              -- sha256 of the entry as seeded
    seeded_ns   INTEGER NOT NULL
);
