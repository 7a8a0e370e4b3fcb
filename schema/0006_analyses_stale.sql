-- A late message reopened the conversation after it was sealed (ingest/tracker.py): the
-- results describe fewer messages than it now has. They stay readable, marked stale, count
-- as missing for coverage and backfill, and are replaced when the passes run again.
ALTER TABLE analyses ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;
