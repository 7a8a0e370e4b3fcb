-- Statistics: message counts and words per (chat, sender handle, side, 15-minute UTC bucket),
-- kept by triggers in the same transaction as the message rows, so the historical import,
-- live batches, edits, unsends and re-imports all stay in step without touching ingest code.
-- Buckets are 15 minutes of UTC so any IANA zone (every real offset is a multiple of 15
-- minutes) is applied at query time, daylight saving included, with no re-import.
-- The sender is the handle, not the contact: a contact merge moves handles, and the query
-- joins handles, so merges need no rewrite here. handle_id 0 stands for "from me".
-- Word counts use cs_words(text), registered on every app connection (chatstats.db.connect).

CREATE TABLE stats_buckets (
    chat_id    INTEGER NOT NULL,
    bucket     INTEGER NOT NULL,          -- date_ns / 900e9, floor (UTC)
    handle_id  INTEGER NOT NULL,          -- 0: me or unknown sender
    is_from_me INTEGER NOT NULL,
    messages   INTEGER NOT NULL,
    words      INTEGER NOT NULL,
    PRIMARY KEY (bucket, chat_id, handle_id, is_from_me)
) WITHOUT ROWID;
CREATE INDEX stats_buckets_handle ON stats_buckets(handle_id, bucket);

-- The same counts per UTC calendar month (YYYYMM), so a whole-history total reads a few
-- thousand rows; the partial months at the ends of a range come from stats_buckets.
CREATE TABLE stats_months (
    month      INTEGER NOT NULL,
    chat_id    INTEGER NOT NULL,
    handle_id  INTEGER NOT NULL,
    is_from_me INTEGER NOT NULL,
    messages   INTEGER NOT NULL,
    PRIMARY KEY (month, chat_id, handle_id, is_from_me)
) WITHOUT ROWID;

CREATE TRIGGER stats_message_insert AFTER INSERT ON messages
WHEN NEW.kind = 'message' AND NEW.chat_id IS NOT NULL
BEGIN
    INSERT INTO stats_buckets (chat_id, bucket, handle_id, is_from_me, messages, words)
    VALUES (NEW.chat_id, NEW.date_ns / 900000000000, COALESCE(NEW.handle_id, 0),
            NEW.is_from_me, 1, cs_words(NEW.text))
    ON CONFLICT (chat_id, bucket, handle_id, is_from_me) DO UPDATE
    SET messages = messages + 1, words = words + excluded.words;
    INSERT INTO stats_months (month, chat_id, handle_id, is_from_me, messages)
    VALUES (CAST(strftime('%Y%m', NEW.date_ns / 1000000000, 'unixepoch') AS INTEGER), NEW.chat_id, COALESCE(NEW.handle_id, 0), NEW.is_from_me, 1)
    ON CONFLICT (month, chat_id, handle_id, is_from_me) DO UPDATE SET messages = messages + 1;
END;

CREATE TRIGGER stats_message_delete AFTER DELETE ON messages
WHEN OLD.kind = 'message' AND OLD.chat_id IS NOT NULL
BEGIN
    UPDATE stats_buckets SET messages = messages - 1, words = words - cs_words(OLD.text)
    WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me;
    DELETE FROM stats_buckets
    WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me
      AND messages <= 0;
    UPDATE stats_months SET messages = messages - 1
    WHERE month = CAST(strftime('%Y%m', OLD.date_ns / 1000000000, 'unixepoch') AS INTEGER) AND chat_id = OLD.chat_id
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me;
    DELETE FROM stats_months
    WHERE month = CAST(strftime('%Y%m', OLD.date_ns / 1000000000, 'unixepoch') AS INTEGER) AND chat_id = OLD.chat_id
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me AND messages <= 0;
END;

CREATE TRIGGER stats_message_update_old AFTER UPDATE OF text, chat_id, date_ns, handle_id, is_from_me, kind ON messages
WHEN OLD.kind = 'message' AND OLD.chat_id IS NOT NULL
BEGIN
    UPDATE stats_buckets SET messages = messages - 1, words = words - cs_words(OLD.text)
    WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me;
    DELETE FROM stats_buckets
    WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me
      AND messages <= 0;
    UPDATE stats_months SET messages = messages - 1
    WHERE month = CAST(strftime('%Y%m', OLD.date_ns / 1000000000, 'unixepoch') AS INTEGER) AND chat_id = OLD.chat_id
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me;
    DELETE FROM stats_months
    WHERE month = CAST(strftime('%Y%m', OLD.date_ns / 1000000000, 'unixepoch') AS INTEGER) AND chat_id = OLD.chat_id
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me AND messages <= 0;
END;

CREATE TRIGGER stats_message_update_new AFTER UPDATE OF text, chat_id, date_ns, handle_id, is_from_me, kind ON messages
WHEN NEW.kind = 'message' AND NEW.chat_id IS NOT NULL
BEGIN
    INSERT INTO stats_buckets (chat_id, bucket, handle_id, is_from_me, messages, words)
    VALUES (NEW.chat_id, NEW.date_ns / 900000000000, COALESCE(NEW.handle_id, 0),
            NEW.is_from_me, 1, cs_words(NEW.text))
    ON CONFLICT (chat_id, bucket, handle_id, is_from_me) DO UPDATE
    SET messages = messages + 1, words = words + excluded.words;
    INSERT INTO stats_months (month, chat_id, handle_id, is_from_me, messages)
    VALUES (CAST(strftime('%Y%m', NEW.date_ns / 1000000000, 'unixepoch') AS INTEGER), NEW.chat_id, COALESCE(NEW.handle_id, 0), NEW.is_from_me, 1)
    ON CONFLICT (month, chat_id, handle_id, is_from_me) DO UPDATE SET messages = messages + 1;
END;

-- Rows already imported before this migration.
INSERT INTO stats_buckets (chat_id, bucket, handle_id, is_from_me, messages, words)
SELECT chat_id, date_ns / 900000000000, COALESCE(handle_id, 0), is_from_me, COUNT(*),
       SUM(cs_words(text))
FROM messages WHERE kind = 'message' AND chat_id IS NOT NULL
GROUP BY 1, 2, 3, 4;
INSERT INTO stats_months (month, chat_id, handle_id, is_from_me, messages)
SELECT CAST(strftime('%Y%m', date_ns / 1000000000, 'unixepoch') AS INTEGER), chat_id,
       COALESCE(handle_id, 0), is_from_me, COUNT(*)
FROM messages WHERE kind = 'message' AND chat_id IS NOT NULL
GROUP BY 1, 2, 3, 4;
