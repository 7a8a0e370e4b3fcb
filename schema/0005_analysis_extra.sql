-- Analysis, second part: what the engine needed beyond 0004.

-- A live pass asked again while its job is running (new messages arrived mid-call): the job
-- finishes with what it read, then a fresh job is queued in the same transaction, so the
-- newest messages are never left unanalysed.
ALTER TABLE analysis_jobs ADD COLUMN rerun INTEGER NOT NULL DEFAULT 0;

-- "Does this conversation already have a job for this pass?" (backfill, coverage, missing).
CREATE INDEX analysis_jobs_conversation ON analysis_jobs(conversation_id, pass, pass_version);

-- Coverage counts per pass, without a scan of every result.
CREATE INDEX analyses_pass ON analyses(pass, pass_version, conversation_id);

-- A new result replaces the conversation's commitments.
CREATE INDEX commitments_conversation ON commitments(conversation_id);
