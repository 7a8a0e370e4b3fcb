"""Analysis: passes as files, a durable job queue, LLM calls with their usage, runs, backfill."""
