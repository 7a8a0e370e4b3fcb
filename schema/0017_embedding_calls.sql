-- Embedding calls are accounted in llm_calls like completions (chatstats/context/
-- embed_calls.py): the index build and refreshes (purpose 'index') and each search query's
-- embedding (purpose 'search'), through a configured provider or the bundled model. Never
-- texts: ids, counts, tokens, cost, latency and error codes only.
-- 0013 is the removed conversations, 0015 the statistics packs, 0016 the stats appends.

ALTER TABLE llm_calls ADD COLUMN operation TEXT NOT NULL DEFAULT 'completion';  -- completion | embedding
ALTER TABLE llm_calls ADD COLUMN inputs INTEGER;    -- embedding: texts in the call
ALTER TABLE llm_calls ADD COLUMN attempt INTEGER;   -- embedding: 1 for the first try of a batch, 2.. for retries
CREATE INDEX llm_calls_operation ON llm_calls(operation, model);
