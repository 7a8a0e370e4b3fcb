-- Statistics summaries beside the 15-minute buckets of 0007, so a chat's or contact's figures
-- read a few hundred rows instead of every message of the chat (issue 11: every route
-- p95 <= 20 ms on 300k messages). All are kept by triggers in the same transaction as the rows
-- they summarise (live batches, edits, unsends, tapbacks and their removals, contact merges,
-- conversation re-splits; a message appended after its conversation's last costs O(1)); the
-- historical import's race mode drops every statistics trigger and rebuilds all tables in
-- one set-based pass (chatstats/stats/maintain.py REBUILD; tests hold triggers and rebuild
-- equal).
--
-- stats_blocks: a chat's 15-minute buckets packed per sender and 30-day block (2880 buckets)
--   as "bucket,messages,words,..." text. Local days and hours still need the zone at query
--   time, and a big chat has ~35k buckets; reading them as rows cost ~10 ms, reading ~260
--   packed blocks and parsing them with numpy costs ~1 ms. Regenerated from stats_buckets
--   (through stats_buckets_chat) whenever one of its buckets changes.
-- stats_conversations / stats_conv_senders: per conversation (its kind = 'message' rows) the
--   span, size and first sender's side; and per sender the count. Recomputed for the
--   conversation a changed message is in (or left): conversations are small.
-- stats_replies: every reply (a message whose side differs from the one before it in its
--   conversation) with its exact gap, so medians and p90 are exact order statistics over an
--   index, never estimates.
-- stats_reactions / stats_reacted: standing tapbacks (active, not a removal) per target
--   bucket, side and type, and per target message (the most reacted message of a year).

CREATE INDEX stats_buckets_chat ON stats_buckets(chat_id, handle_id, is_from_me, bucket);

-- stats_years: stats_months summed per UTC year, so a whole-history overview sums a few
--   thousand rows (stats_months has ~20k on 300k messages). Kept from stats_months by triggers.
CREATE TABLE stats_years (
    year       INTEGER NOT NULL,
    chat_id    INTEGER NOT NULL,
    handle_id  INTEGER NOT NULL,
    is_from_me INTEGER NOT NULL,
    messages   INTEGER NOT NULL,
    PRIMARY KEY (year, chat_id, handle_id, is_from_me)
) WITHOUT ROWID;
-- A chat's or a handle's all-time counts (the chats and contacts SSE streams' `stats`, the
-- chats a contact sent in) without reading stats_buckets.
CREATE INDEX stats_years_chat ON stats_years(chat_id, is_from_me, messages);
CREATE INDEX stats_years_handle ON stats_years(handle_id, chat_id, is_from_me, messages);

CREATE TABLE stats_blocks (
    chat_id    INTEGER NOT NULL,
    block      INTEGER NOT NULL,          -- bucket / 2880
    handle_id  INTEGER NOT NULL,          -- as in stats_buckets: 0 for me or unknown
    is_from_me INTEGER NOT NULL,
    packed     TEXT NOT NULL,             -- bucket,messages,words triples, comma-separated
    PRIMARY KEY (chat_id, block, handle_id, is_from_me)
) WITHOUT ROWID;

CREATE TABLE stats_conversations (
    conversation_id INTEGER PRIMARY KEY,
    chat_id         INTEGER NOT NULL,
    start_ns        INTEGER NOT NULL,
    end_ns          INTEGER NOT NULL,
    messages        INTEGER NOT NULL,
    first_from_me   INTEGER NOT NULL,
    last_id         INTEGER NOT NULL,     -- its last message in (date_ns, id) order:
    last_from_me    INTEGER NOT NULL      -- an appended message needs only this row
);
CREATE INDEX stats_conversations_chat
    ON stats_conversations(chat_id, start_ns, end_ns, messages, first_from_me);

CREATE TABLE stats_conv_senders (
    conversation_id INTEGER NOT NULL,
    handle_id       INTEGER NOT NULL,
    is_from_me      INTEGER NOT NULL,
    chat_id         INTEGER NOT NULL,
    messages        INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, handle_id, is_from_me)
) WITHOUT ROWID;
CREATE INDEX stats_conv_senders_handle
    ON stats_conv_senders(handle_id, chat_id, conversation_id, messages);

CREATE TABLE stats_replies (
    message_id      INTEGER PRIMARY KEY,  -- the reply
    chat_id         INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL,
    handle_id       INTEGER NOT NULL,     -- the reply's sender, 0 for me or unknown
    is_from_me      INTEGER NOT NULL,     -- the reply's side
    date_ns         INTEGER NOT NULL,     -- the reply's time; the message before is date_ns - gap_ns
    gap_ns          INTEGER NOT NULL
);
CREATE INDEX stats_replies_chat ON stats_replies(chat_id, is_from_me, gap_ns, date_ns);
CREATE INDEX stats_replies_conversation ON stats_replies(conversation_id);
-- A year's replies of one side (wrapped): the side first, so the range holds only those.
CREATE INDEX stats_replies_side_date ON stats_replies(is_from_me, date_ns, gap_ns, handle_id);

CREATE TABLE stats_reactions (
    chat_id        INTEGER NOT NULL,
    target_from_me INTEGER NOT NULL,
    by_me          INTEGER NOT NULL,
    type           TEXT NOT NULL,
    bucket         INTEGER NOT NULL,      -- the target message's bucket
    target_handle  INTEGER NOT NULL,      -- the target's sender, 0 for me or unknown
    n              INTEGER NOT NULL,
    PRIMARY KEY (chat_id, target_from_me, by_me, type, bucket, target_handle)
) WITHOUT ROWID;

CREATE TABLE stats_reacted (
    message_id INTEGER PRIMARY KEY,
    chat_id    INTEGER NOT NULL,
    date_ns    INTEGER NOT NULL,
    n          INTEGER NOT NULL           -- standing tapbacks on it
);
CREATE INDEX stats_reacted_date ON stats_reacted(date_ns, n);

-- Words without a custom SQL function, so any SQLite client may write the messages: the
-- 0007 triggers are replaced by ones that queue each added or removed text with its bucket
-- (stats_words_pending); the app's writer counts the queued words into stats_buckets before
-- its commits (stats/maintain.py `drain`), and readers add what is still queued. Invariant:
-- a bucket's words plus its queued words are its messages' words, and nothing is queued
-- for a bucket that is gone (a bucket emptied drops its queue with it).
CREATE TABLE stats_words_pending (
    id         INTEGER PRIMARY KEY,
    chat_id    INTEGER NOT NULL,
    bucket     INTEGER NOT NULL,
    handle_id  INTEGER NOT NULL,
    is_from_me INTEGER NOT NULL,
    text       TEXT NOT NULL,
    sign       INTEGER NOT NULL           -- +1 added, -1 removed
);
CREATE INDEX stats_words_pending_chat ON stats_words_pending(chat_id, bucket, handle_id, is_from_me);
DROP TRIGGER stats_message_insert;
DROP TRIGGER stats_message_delete;
DROP TRIGGER stats_message_update_old;
DROP TRIGGER stats_message_update_new;
CREATE TRIGGER stats_message_insert AFTER INSERT ON messages
WHEN NEW.kind = 'message' AND NEW.chat_id IS NOT NULL
BEGIN
    INSERT INTO stats_buckets (chat_id, bucket, handle_id, is_from_me, messages, words)
    VALUES (NEW.chat_id, NEW.date_ns / 900000000000, COALESCE(NEW.handle_id, 0), NEW.is_from_me, 1, 0)
    ON CONFLICT (chat_id, bucket, handle_id, is_from_me) DO UPDATE SET messages = messages + 1;
    INSERT INTO stats_words_pending (chat_id, bucket, handle_id, is_from_me, text, sign)
    SELECT NEW.chat_id, NEW.date_ns / 900000000000, COALESCE(NEW.handle_id, 0), NEW.is_from_me, NEW.text, 1
    WHERE NEW.text <> '';
    INSERT INTO stats_months (month, chat_id, handle_id, is_from_me, messages)
    VALUES (CAST(strftime('%Y%m', NEW.date_ns / 1000000000, 'unixepoch') AS INTEGER), NEW.chat_id, COALESCE(NEW.handle_id, 0), NEW.is_from_me, 1)
    ON CONFLICT (month, chat_id, handle_id, is_from_me) DO UPDATE SET messages = messages + 1;
END;
CREATE TRIGGER stats_message_delete AFTER DELETE ON messages
WHEN OLD.kind = 'message' AND OLD.chat_id IS NOT NULL
BEGIN
    UPDATE stats_buckets SET messages = messages - 1 WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me;
    INSERT INTO stats_words_pending (chat_id, bucket, handle_id, is_from_me, text, sign)
    SELECT OLD.chat_id, OLD.date_ns / 900000000000, COALESCE(OLD.handle_id, 0), OLD.is_from_me, OLD.text, -1
    WHERE OLD.text <> '' AND EXISTS (SELECT 1 FROM stats_buckets WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me AND messages > 0);
    DELETE FROM stats_words_pending WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me
      AND EXISTS (SELECT 1 FROM stats_buckets WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me AND messages <= 0);
    DELETE FROM stats_buckets WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me AND messages <= 0;
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
    UPDATE stats_buckets SET messages = messages - 1 WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me;
    INSERT INTO stats_words_pending (chat_id, bucket, handle_id, is_from_me, text, sign)
    SELECT OLD.chat_id, OLD.date_ns / 900000000000, COALESCE(OLD.handle_id, 0), OLD.is_from_me, OLD.text, -1
    WHERE OLD.text <> '' AND EXISTS (SELECT 1 FROM stats_buckets WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me AND messages > 0);
    DELETE FROM stats_words_pending WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me
      AND EXISTS (SELECT 1 FROM stats_buckets WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me AND messages <= 0);
    DELETE FROM stats_buckets WHERE chat_id = OLD.chat_id AND bucket = OLD.date_ns / 900000000000
      AND handle_id = COALESCE(OLD.handle_id, 0) AND is_from_me = OLD.is_from_me AND messages <= 0;
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
    VALUES (NEW.chat_id, NEW.date_ns / 900000000000, COALESCE(NEW.handle_id, 0), NEW.is_from_me, 1, 0)
    ON CONFLICT (chat_id, bucket, handle_id, is_from_me) DO UPDATE SET messages = messages + 1;
    INSERT INTO stats_words_pending (chat_id, bucket, handle_id, is_from_me, text, sign)
    SELECT NEW.chat_id, NEW.date_ns / 900000000000, COALESCE(NEW.handle_id, 0), NEW.is_from_me, NEW.text, 1
    WHERE NEW.text <> '';
    INSERT INTO stats_months (month, chat_id, handle_id, is_from_me, messages)
    VALUES (CAST(strftime('%Y%m', NEW.date_ns / 1000000000, 'unixepoch') AS INTEGER), NEW.chat_id, COALESCE(NEW.handle_id, 0), NEW.is_from_me, 1)
    ON CONFLICT (month, chat_id, handle_id, is_from_me) DO UPDATE SET messages = messages + 1;
END;

-- Triggers (generated by the same template per key; keep them in step with stats/maintain.py).
CREATE TRIGGER stats_year_insert AFTER INSERT ON stats_months BEGIN
    INSERT INTO stats_years (year, chat_id, handle_id, is_from_me, messages)
    VALUES (NEW.month / 100, NEW.chat_id, NEW.handle_id, NEW.is_from_me, NEW.messages)
    ON CONFLICT (year, chat_id, handle_id, is_from_me) DO UPDATE SET messages = messages + excluded.messages;
    DELETE FROM stats_years WHERE year = NEW.month / 100 AND chat_id = NEW.chat_id
      AND handle_id = NEW.handle_id AND is_from_me = NEW.is_from_me AND messages <= 0;
END;
CREATE TRIGGER stats_year_update AFTER UPDATE ON stats_months BEGIN
    INSERT INTO stats_years (year, chat_id, handle_id, is_from_me, messages)
    VALUES (NEW.month / 100, NEW.chat_id, NEW.handle_id, NEW.is_from_me, NEW.messages - OLD.messages)
    ON CONFLICT (year, chat_id, handle_id, is_from_me) DO UPDATE SET messages = messages + excluded.messages;
    DELETE FROM stats_years WHERE year = NEW.month / 100 AND chat_id = NEW.chat_id
      AND handle_id = NEW.handle_id AND is_from_me = NEW.is_from_me AND messages <= 0;
END;
CREATE TRIGGER stats_year_delete AFTER DELETE ON stats_months BEGIN
    INSERT INTO stats_years (year, chat_id, handle_id, is_from_me, messages)
    VALUES (OLD.month / 100, OLD.chat_id, OLD.handle_id, OLD.is_from_me, -OLD.messages)
    ON CONFLICT (year, chat_id, handle_id, is_from_me) DO UPDATE SET messages = messages + excluded.messages;
    DELETE FROM stats_years WHERE year = OLD.month / 100 AND chat_id = OLD.chat_id
      AND handle_id = OLD.handle_id AND is_from_me = OLD.is_from_me AND messages <= 0;
END;
CREATE TRIGGER stats_block_insert AFTER INSERT ON stats_buckets BEGIN
    DELETE FROM stats_blocks WHERE chat_id = NEW.chat_id AND block = NEW.bucket / 2880
      AND handle_id = NEW.handle_id AND is_from_me = NEW.is_from_me;
    INSERT INTO stats_blocks (chat_id, block, handle_id, is_from_me, packed)
    SELECT chat_id, NEW.bucket / 2880, handle_id, is_from_me, group_concat(bucket || ',' || messages || ',' || words)
    FROM stats_buckets WHERE chat_id = NEW.chat_id AND handle_id = NEW.handle_id
      AND is_from_me = NEW.is_from_me AND bucket >= NEW.bucket / 2880 * 2880 AND bucket < NEW.bucket / 2880 * 2880 + 2880
    GROUP BY chat_id;
END;
CREATE TRIGGER stats_block_update AFTER UPDATE ON stats_buckets BEGIN
    DELETE FROM stats_blocks WHERE chat_id = NEW.chat_id AND block = NEW.bucket / 2880
      AND handle_id = NEW.handle_id AND is_from_me = NEW.is_from_me;
    INSERT INTO stats_blocks (chat_id, block, handle_id, is_from_me, packed)
    SELECT chat_id, NEW.bucket / 2880, handle_id, is_from_me, group_concat(bucket || ',' || messages || ',' || words)
    FROM stats_buckets WHERE chat_id = NEW.chat_id AND handle_id = NEW.handle_id
      AND is_from_me = NEW.is_from_me AND bucket >= NEW.bucket / 2880 * 2880 AND bucket < NEW.bucket / 2880 * 2880 + 2880
    GROUP BY chat_id;
END;
CREATE TRIGGER stats_block_delete AFTER DELETE ON stats_buckets BEGIN
    DELETE FROM stats_blocks WHERE chat_id = OLD.chat_id AND block = OLD.bucket / 2880
      AND handle_id = OLD.handle_id AND is_from_me = OLD.is_from_me;
    INSERT INTO stats_blocks (chat_id, block, handle_id, is_from_me, packed)
    SELECT chat_id, OLD.bucket / 2880, handle_id, is_from_me, group_concat(bucket || ',' || messages || ',' || words)
    FROM stats_buckets WHERE chat_id = OLD.chat_id AND handle_id = OLD.handle_id
      AND is_from_me = OLD.is_from_me AND bucket >= OLD.bucket / 2880 * 2880 AND bucket < OLD.bucket / 2880 * 2880 + 2880
    GROUP BY chat_id;
END;
-- A message appended after its conversation's last one (live batches, the per-row import)
-- updates the conversation's rows in O(1); one landing inside a conversation recomputes it.
-- The two WHENs exclude each other whichever trigger runs first: after either, the new
-- message is at or before the conversation's last.
CREATE TRIGGER stats_conv_append AFTER INSERT ON messages
WHEN NEW.conversation_id IS NOT NULL AND NEW.kind = 'message' AND NEW.chat_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM stats_conversations c WHERE c.conversation_id = NEW.conversation_id
    AND (c.end_ns > NEW.date_ns OR (c.end_ns = NEW.date_ns AND c.last_id > NEW.id))) BEGIN
    INSERT INTO stats_replies (message_id, chat_id, conversation_id, handle_id, is_from_me, date_ns, gap_ns)
    SELECT NEW.id, NEW.chat_id, NEW.conversation_id, COALESCE(NEW.handle_id, 0), NEW.is_from_me,
           NEW.date_ns, NEW.date_ns - c.end_ns
    FROM stats_conversations c WHERE c.conversation_id = NEW.conversation_id AND c.last_from_me <> NEW.is_from_me;
    INSERT INTO stats_conversations (conversation_id, chat_id, start_ns, end_ns, messages, first_from_me, last_id, last_from_me)
    VALUES (NEW.conversation_id, NEW.chat_id, NEW.date_ns, NEW.date_ns, 1, NEW.is_from_me, NEW.id, NEW.is_from_me)
    ON CONFLICT (conversation_id) DO UPDATE SET end_ns = excluded.end_ns, messages = messages + 1,
        last_id = excluded.last_id, last_from_me = excluded.last_from_me;
    INSERT INTO stats_conv_senders (conversation_id, handle_id, is_from_me, chat_id, messages)
    VALUES (NEW.conversation_id, COALESCE(NEW.handle_id, 0), NEW.is_from_me, NEW.chat_id, 1)
    ON CONFLICT (conversation_id, handle_id, is_from_me) DO UPDATE SET messages = messages + 1;
END;
CREATE TRIGGER stats_conv_insert AFTER INSERT ON messages
WHEN NEW.conversation_id IS NOT NULL AND NEW.kind = 'message' AND NEW.chat_id IS NOT NULL
  AND EXISTS (SELECT 1 FROM stats_conversations c WHERE c.conversation_id = NEW.conversation_id
    AND (c.end_ns > NEW.date_ns OR (c.end_ns = NEW.date_ns AND c.last_id > NEW.id))) BEGIN
    DELETE FROM stats_conversations WHERE conversation_id = NEW.conversation_id;
    DELETE FROM stats_conv_senders WHERE conversation_id = NEW.conversation_id;
    DELETE FROM stats_replies WHERE conversation_id = NEW.conversation_id;
    INSERT INTO stats_conversations (conversation_id, chat_id, start_ns, end_ns, messages, first_from_me, last_id, last_from_me)
    SELECT conversation_id, chat_id, MIN(date_ns), MAX(date_ns), COUNT(*),
           (SELECT f.is_from_me FROM messages f WHERE f.conversation_id = NEW.conversation_id
              AND f.kind = 'message' AND f.chat_id IS NOT NULL ORDER BY f.date_ns, f.id LIMIT 1),
           (SELECT f.id FROM messages f WHERE f.conversation_id = NEW.conversation_id
              AND f.kind = 'message' AND f.chat_id IS NOT NULL ORDER BY f.date_ns DESC, f.id DESC LIMIT 1),
           (SELECT f.is_from_me FROM messages f WHERE f.conversation_id = NEW.conversation_id
              AND f.kind = 'message' AND f.chat_id IS NOT NULL ORDER BY f.date_ns DESC, f.id DESC LIMIT 1)
    FROM messages WHERE conversation_id = NEW.conversation_id AND kind = 'message' AND chat_id IS NOT NULL
    GROUP BY conversation_id;
    INSERT INTO stats_conv_senders (conversation_id, handle_id, is_from_me, chat_id, messages)
    SELECT conversation_id, COALESCE(handle_id, 0), is_from_me, chat_id, COUNT(*)
    FROM messages WHERE conversation_id = NEW.conversation_id AND kind = 'message' AND chat_id IS NOT NULL
    GROUP BY 1, 2, 3;
    INSERT INTO stats_replies (message_id, chat_id, conversation_id, handle_id, is_from_me, date_ns, gap_ns)
    SELECT id, chat_id, conversation_id, h, is_from_me, date_ns, date_ns - prev_ns FROM (
        SELECT id, chat_id, conversation_id, COALESCE(handle_id, 0) AS h, is_from_me, date_ns,
               LAG(is_from_me) OVER w AS prev_me, LAG(date_ns) OVER w AS prev_ns
        FROM messages WHERE conversation_id = NEW.conversation_id AND kind = 'message' AND chat_id IS NOT NULL
        WINDOW w AS (ORDER BY date_ns, id))
    WHERE prev_me IS NOT NULL AND prev_me <> is_from_me;
END;
CREATE TRIGGER stats_conv_delete AFTER DELETE ON messages
WHEN OLD.conversation_id IS NOT NULL AND OLD.kind = 'message' BEGIN
    DELETE FROM stats_conversations WHERE conversation_id = OLD.conversation_id;
    DELETE FROM stats_conv_senders WHERE conversation_id = OLD.conversation_id;
    DELETE FROM stats_replies WHERE conversation_id = OLD.conversation_id;
    INSERT INTO stats_conversations (conversation_id, chat_id, start_ns, end_ns, messages, first_from_me, last_id, last_from_me)
    SELECT conversation_id, chat_id, MIN(date_ns), MAX(date_ns), COUNT(*),
           (SELECT f.is_from_me FROM messages f WHERE f.conversation_id = OLD.conversation_id
              AND f.kind = 'message' AND f.chat_id IS NOT NULL ORDER BY f.date_ns, f.id LIMIT 1),
           (SELECT f.id FROM messages f WHERE f.conversation_id = OLD.conversation_id
              AND f.kind = 'message' AND f.chat_id IS NOT NULL ORDER BY f.date_ns DESC, f.id DESC LIMIT 1),
           (SELECT f.is_from_me FROM messages f WHERE f.conversation_id = OLD.conversation_id
              AND f.kind = 'message' AND f.chat_id IS NOT NULL ORDER BY f.date_ns DESC, f.id DESC LIMIT 1)
    FROM messages WHERE conversation_id = OLD.conversation_id AND kind = 'message' AND chat_id IS NOT NULL
    GROUP BY conversation_id;
    INSERT INTO stats_conv_senders (conversation_id, handle_id, is_from_me, chat_id, messages)
    SELECT conversation_id, COALESCE(handle_id, 0), is_from_me, chat_id, COUNT(*)
    FROM messages WHERE conversation_id = OLD.conversation_id AND kind = 'message' AND chat_id IS NOT NULL
    GROUP BY 1, 2, 3;
    INSERT INTO stats_replies (message_id, chat_id, conversation_id, handle_id, is_from_me, date_ns, gap_ns)
    SELECT id, chat_id, conversation_id, h, is_from_me, date_ns, date_ns - prev_ns FROM (
        SELECT id, chat_id, conversation_id, COALESCE(handle_id, 0) AS h, is_from_me, date_ns,
               LAG(is_from_me) OVER w AS prev_me, LAG(date_ns) OVER w AS prev_ns
        FROM messages WHERE conversation_id = OLD.conversation_id AND kind = 'message' AND chat_id IS NOT NULL
        WINDOW w AS (ORDER BY date_ns, id))
    WHERE prev_me IS NOT NULL AND prev_me <> is_from_me;
END;
CREATE TRIGGER stats_conv_update_old AFTER UPDATE OF conversation_id, chat_id, date_ns, is_from_me, handle_id, kind ON messages
WHEN OLD.conversation_id IS NOT NULL AND OLD.conversation_id IS NOT NEW.conversation_id
  AND (OLD.kind = 'message' OR NEW.kind = 'message') BEGIN
    DELETE FROM stats_conversations WHERE conversation_id = OLD.conversation_id;
    DELETE FROM stats_conv_senders WHERE conversation_id = OLD.conversation_id;
    DELETE FROM stats_replies WHERE conversation_id = OLD.conversation_id;
    INSERT INTO stats_conversations (conversation_id, chat_id, start_ns, end_ns, messages, first_from_me, last_id, last_from_me)
    SELECT conversation_id, chat_id, MIN(date_ns), MAX(date_ns), COUNT(*),
           (SELECT f.is_from_me FROM messages f WHERE f.conversation_id = OLD.conversation_id
              AND f.kind = 'message' AND f.chat_id IS NOT NULL ORDER BY f.date_ns, f.id LIMIT 1),
           (SELECT f.id FROM messages f WHERE f.conversation_id = OLD.conversation_id
              AND f.kind = 'message' AND f.chat_id IS NOT NULL ORDER BY f.date_ns DESC, f.id DESC LIMIT 1),
           (SELECT f.is_from_me FROM messages f WHERE f.conversation_id = OLD.conversation_id
              AND f.kind = 'message' AND f.chat_id IS NOT NULL ORDER BY f.date_ns DESC, f.id DESC LIMIT 1)
    FROM messages WHERE conversation_id = OLD.conversation_id AND kind = 'message' AND chat_id IS NOT NULL
    GROUP BY conversation_id;
    INSERT INTO stats_conv_senders (conversation_id, handle_id, is_from_me, chat_id, messages)
    SELECT conversation_id, COALESCE(handle_id, 0), is_from_me, chat_id, COUNT(*)
    FROM messages WHERE conversation_id = OLD.conversation_id AND kind = 'message' AND chat_id IS NOT NULL
    GROUP BY 1, 2, 3;
    INSERT INTO stats_replies (message_id, chat_id, conversation_id, handle_id, is_from_me, date_ns, gap_ns)
    SELECT id, chat_id, conversation_id, h, is_from_me, date_ns, date_ns - prev_ns FROM (
        SELECT id, chat_id, conversation_id, COALESCE(handle_id, 0) AS h, is_from_me, date_ns,
               LAG(is_from_me) OVER w AS prev_me, LAG(date_ns) OVER w AS prev_ns
        FROM messages WHERE conversation_id = OLD.conversation_id AND kind = 'message' AND chat_id IS NOT NULL
        WINDOW w AS (ORDER BY date_ns, id))
    WHERE prev_me IS NOT NULL AND prev_me <> is_from_me;
END;
CREATE TRIGGER stats_conv_update_new AFTER UPDATE OF conversation_id, chat_id, date_ns, is_from_me, handle_id, kind ON messages
WHEN NEW.conversation_id IS NOT NULL AND (OLD.kind = 'message' OR NEW.kind = 'message')
  AND (OLD.conversation_id IS NOT NEW.conversation_id OR OLD.chat_id IS NOT NEW.chat_id OR OLD.date_ns IS NOT NEW.date_ns OR OLD.is_from_me IS NOT NEW.is_from_me OR OLD.handle_id IS NOT NEW.handle_id OR OLD.kind IS NOT NEW.kind) BEGIN
    DELETE FROM stats_conversations WHERE conversation_id = NEW.conversation_id;
    DELETE FROM stats_conv_senders WHERE conversation_id = NEW.conversation_id;
    DELETE FROM stats_replies WHERE conversation_id = NEW.conversation_id;
    INSERT INTO stats_conversations (conversation_id, chat_id, start_ns, end_ns, messages, first_from_me, last_id, last_from_me)
    SELECT conversation_id, chat_id, MIN(date_ns), MAX(date_ns), COUNT(*),
           (SELECT f.is_from_me FROM messages f WHERE f.conversation_id = NEW.conversation_id
              AND f.kind = 'message' AND f.chat_id IS NOT NULL ORDER BY f.date_ns, f.id LIMIT 1),
           (SELECT f.id FROM messages f WHERE f.conversation_id = NEW.conversation_id
              AND f.kind = 'message' AND f.chat_id IS NOT NULL ORDER BY f.date_ns DESC, f.id DESC LIMIT 1),
           (SELECT f.is_from_me FROM messages f WHERE f.conversation_id = NEW.conversation_id
              AND f.kind = 'message' AND f.chat_id IS NOT NULL ORDER BY f.date_ns DESC, f.id DESC LIMIT 1)
    FROM messages WHERE conversation_id = NEW.conversation_id AND kind = 'message' AND chat_id IS NOT NULL
    GROUP BY conversation_id;
    INSERT INTO stats_conv_senders (conversation_id, handle_id, is_from_me, chat_id, messages)
    SELECT conversation_id, COALESCE(handle_id, 0), is_from_me, chat_id, COUNT(*)
    FROM messages WHERE conversation_id = NEW.conversation_id AND kind = 'message' AND chat_id IS NOT NULL
    GROUP BY 1, 2, 3;
    INSERT INTO stats_replies (message_id, chat_id, conversation_id, handle_id, is_from_me, date_ns, gap_ns)
    SELECT id, chat_id, conversation_id, h, is_from_me, date_ns, date_ns - prev_ns FROM (
        SELECT id, chat_id, conversation_id, COALESCE(handle_id, 0) AS h, is_from_me, date_ns,
               LAG(is_from_me) OVER w AS prev_me, LAG(date_ns) OVER w AS prev_ns
        FROM messages WHERE conversation_id = NEW.conversation_id AND kind = 'message' AND chat_id IS NOT NULL
        WINDOW w AS (ORDER BY date_ns, id))
    WHERE prev_me IS NOT NULL AND prev_me <> is_from_me;
END;
CREATE TRIGGER stats_react_message_insert AFTER INSERT ON messages
WHEN NEW.kind = 'message' AND NEW.chat_id IS NOT NULL BEGIN
    INSERT INTO stats_reactions (chat_id, target_from_me, by_me, type, bucket, target_handle, n)
    SELECT NEW.chat_id, NEW.is_from_me, r.is_from_me, r.type, NEW.date_ns / 900000000000,
           COALESCE(NEW.handle_id, 0), COUNT(*)
    FROM reactions r WHERE r.target_guid = NEW.guid AND r.active = 1 AND r.is_removal = 0 GROUP BY r.is_from_me, r.type
    ON CONFLICT (chat_id, target_from_me, by_me, type, bucket, target_handle) DO UPDATE SET n = n + excluded.n;
    INSERT INTO stats_reacted (message_id, chat_id, date_ns, n)
    SELECT NEW.id, NEW.chat_id, NEW.date_ns, (SELECT COUNT(*) FROM reactions r WHERE r.target_guid = NEW.guid AND r.active = 1 AND r.is_removal = 0)
    WHERE EXISTS (SELECT 1 FROM reactions r WHERE r.target_guid = NEW.guid AND r.active = 1 AND r.is_removal = 0)
    ON CONFLICT (message_id) DO UPDATE SET n = n + excluded.n, chat_id = excluded.chat_id,
        date_ns = excluded.date_ns;
END;
CREATE TRIGGER stats_react_message_delete AFTER DELETE ON messages
WHEN OLD.kind = 'message' AND OLD.chat_id IS NOT NULL BEGIN
    UPDATE stats_reactions SET n = n - (SELECT COUNT(*) FROM reactions r WHERE r.target_guid = OLD.guid AND r.active = 1 AND r.is_removal = 0
        AND r.is_from_me = stats_reactions.by_me AND r.type = stats_reactions.type)
    WHERE chat_id = OLD.chat_id AND target_from_me = OLD.is_from_me
      AND bucket = OLD.date_ns / 900000000000 AND target_handle = COALESCE(OLD.handle_id, 0);
    DELETE FROM stats_reactions WHERE n <= 0 AND chat_id = OLD.chat_id
      AND target_from_me = OLD.is_from_me AND bucket = OLD.date_ns / 900000000000
      AND target_handle = COALESCE(OLD.handle_id, 0);
    UPDATE stats_reacted SET n = n - (SELECT COUNT(*) FROM reactions r WHERE r.target_guid = OLD.guid AND r.active = 1 AND r.is_removal = 0)
    WHERE message_id = OLD.id;
    DELETE FROM stats_reacted WHERE n <= 0 AND message_id = OLD.id;
END;
CREATE TRIGGER stats_react_message_update_old AFTER UPDATE OF chat_id, date_ns, is_from_me, handle_id, kind, guid ON messages
WHEN OLD.kind = 'message' AND OLD.chat_id IS NOT NULL AND (OLD.chat_id IS NOT NEW.chat_id OR OLD.date_ns IS NOT NEW.date_ns OR OLD.is_from_me IS NOT NEW.is_from_me OR OLD.handle_id IS NOT NEW.handle_id OR OLD.kind IS NOT NEW.kind OR OLD.guid IS NOT NEW.guid) BEGIN
    UPDATE stats_reactions SET n = n - (SELECT COUNT(*) FROM reactions r WHERE r.target_guid = OLD.guid AND r.active = 1 AND r.is_removal = 0
        AND r.is_from_me = stats_reactions.by_me AND r.type = stats_reactions.type)
    WHERE chat_id = OLD.chat_id AND target_from_me = OLD.is_from_me
      AND bucket = OLD.date_ns / 900000000000 AND target_handle = COALESCE(OLD.handle_id, 0);
    DELETE FROM stats_reactions WHERE n <= 0 AND chat_id = OLD.chat_id
      AND target_from_me = OLD.is_from_me AND bucket = OLD.date_ns / 900000000000
      AND target_handle = COALESCE(OLD.handle_id, 0);
    UPDATE stats_reacted SET n = n - (SELECT COUNT(*) FROM reactions r WHERE r.target_guid = OLD.guid AND r.active = 1 AND r.is_removal = 0)
    WHERE message_id = OLD.id;
    DELETE FROM stats_reacted WHERE n <= 0 AND message_id = OLD.id;
END;
CREATE TRIGGER stats_react_message_update_new AFTER UPDATE OF chat_id, date_ns, is_from_me, handle_id, kind, guid ON messages
WHEN NEW.kind = 'message' AND NEW.chat_id IS NOT NULL AND (OLD.chat_id IS NOT NEW.chat_id OR OLD.date_ns IS NOT NEW.date_ns OR OLD.is_from_me IS NOT NEW.is_from_me OR OLD.handle_id IS NOT NEW.handle_id OR OLD.kind IS NOT NEW.kind OR OLD.guid IS NOT NEW.guid) BEGIN
    INSERT INTO stats_reactions (chat_id, target_from_me, by_me, type, bucket, target_handle, n)
    SELECT NEW.chat_id, NEW.is_from_me, r.is_from_me, r.type, NEW.date_ns / 900000000000,
           COALESCE(NEW.handle_id, 0), COUNT(*)
    FROM reactions r WHERE r.target_guid = NEW.guid AND r.active = 1 AND r.is_removal = 0 GROUP BY r.is_from_me, r.type
    ON CONFLICT (chat_id, target_from_me, by_me, type, bucket, target_handle) DO UPDATE SET n = n + excluded.n;
    INSERT INTO stats_reacted (message_id, chat_id, date_ns, n)
    SELECT NEW.id, NEW.chat_id, NEW.date_ns, (SELECT COUNT(*) FROM reactions r WHERE r.target_guid = NEW.guid AND r.active = 1 AND r.is_removal = 0)
    WHERE EXISTS (SELECT 1 FROM reactions r WHERE r.target_guid = NEW.guid AND r.active = 1 AND r.is_removal = 0)
    ON CONFLICT (message_id) DO UPDATE SET n = n + excluded.n, chat_id = excluded.chat_id,
        date_ns = excluded.date_ns;
END;
CREATE TRIGGER stats_react_insert AFTER INSERT ON reactions
WHEN NEW.active = 1 AND NEW.is_removal = 0 BEGIN
    INSERT INTO stats_reactions (chat_id, target_from_me, by_me, type, bucket, target_handle, n)
    SELECT m.chat_id, m.is_from_me, NEW.is_from_me, NEW.type, m.date_ns / 900000000000,
           COALESCE(m.handle_id, 0), 1
    FROM messages m WHERE m.guid = NEW.target_guid AND m.kind = 'message' AND m.chat_id IS NOT NULL
    ON CONFLICT (chat_id, target_from_me, by_me, type, bucket, target_handle) DO UPDATE SET n = n + 1;
    INSERT INTO stats_reacted (message_id, chat_id, date_ns, n)
    SELECT m.id, m.chat_id, m.date_ns, 1
    FROM messages m WHERE m.guid = NEW.target_guid AND m.kind = 'message' AND m.chat_id IS NOT NULL
    ON CONFLICT (message_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER stats_react_delete AFTER DELETE ON reactions
WHEN OLD.active = 1 AND OLD.is_removal = 0 BEGIN
    UPDATE stats_reactions SET n = n - 1
    WHERE (chat_id, target_from_me, by_me, type, bucket, target_handle) IN (SELECT m.chat_id, m.is_from_me, OLD.is_from_me, OLD.type, m.date_ns / 900000000000,
           COALESCE(m.handle_id, 0)
         FROM messages m WHERE m.guid = OLD.target_guid AND m.kind = 'message' AND m.chat_id IS NOT NULL);
    DELETE FROM stats_reactions WHERE n <= 0
      AND (chat_id, target_from_me, by_me, type, bucket, target_handle) IN (SELECT m.chat_id, m.is_from_me, OLD.is_from_me, OLD.type, m.date_ns / 900000000000,
           COALESCE(m.handle_id, 0)
         FROM messages m WHERE m.guid = OLD.target_guid AND m.kind = 'message' AND m.chat_id IS NOT NULL);
    UPDATE stats_reacted SET n = n - 1 WHERE message_id IN (SELECT m.id FROM messages m WHERE m.guid = OLD.target_guid AND m.kind = 'message'
                         AND m.chat_id IS NOT NULL);
    DELETE FROM stats_reacted WHERE n <= 0 AND message_id IN (SELECT m.id FROM messages m WHERE m.guid = OLD.target_guid AND m.kind = 'message'
                         AND m.chat_id IS NOT NULL);
END;
CREATE TRIGGER stats_react_update_old AFTER UPDATE OF active, is_removal, type, target_guid, is_from_me ON reactions
WHEN OLD.active = 1 AND OLD.is_removal = 0 AND (OLD.active IS NOT NEW.active OR OLD.is_removal IS NOT NEW.is_removal OR OLD.type IS NOT NEW.type OR OLD.target_guid IS NOT NEW.target_guid OR OLD.is_from_me IS NOT NEW.is_from_me) BEGIN
    UPDATE stats_reactions SET n = n - 1
    WHERE (chat_id, target_from_me, by_me, type, bucket, target_handle) IN (SELECT m.chat_id, m.is_from_me, OLD.is_from_me, OLD.type, m.date_ns / 900000000000,
           COALESCE(m.handle_id, 0)
         FROM messages m WHERE m.guid = OLD.target_guid AND m.kind = 'message' AND m.chat_id IS NOT NULL);
    DELETE FROM stats_reactions WHERE n <= 0
      AND (chat_id, target_from_me, by_me, type, bucket, target_handle) IN (SELECT m.chat_id, m.is_from_me, OLD.is_from_me, OLD.type, m.date_ns / 900000000000,
           COALESCE(m.handle_id, 0)
         FROM messages m WHERE m.guid = OLD.target_guid AND m.kind = 'message' AND m.chat_id IS NOT NULL);
    UPDATE stats_reacted SET n = n - 1 WHERE message_id IN (SELECT m.id FROM messages m WHERE m.guid = OLD.target_guid AND m.kind = 'message'
                         AND m.chat_id IS NOT NULL);
    DELETE FROM stats_reacted WHERE n <= 0 AND message_id IN (SELECT m.id FROM messages m WHERE m.guid = OLD.target_guid AND m.kind = 'message'
                         AND m.chat_id IS NOT NULL);
END;
CREATE TRIGGER stats_react_update_new AFTER UPDATE OF active, is_removal, type, target_guid, is_from_me ON reactions
WHEN NEW.active = 1 AND NEW.is_removal = 0 AND (OLD.active IS NOT NEW.active OR OLD.is_removal IS NOT NEW.is_removal OR OLD.type IS NOT NEW.type OR OLD.target_guid IS NOT NEW.target_guid OR OLD.is_from_me IS NOT NEW.is_from_me) BEGIN
    INSERT INTO stats_reactions (chat_id, target_from_me, by_me, type, bucket, target_handle, n)
    SELECT m.chat_id, m.is_from_me, NEW.is_from_me, NEW.type, m.date_ns / 900000000000,
           COALESCE(m.handle_id, 0), 1
    FROM messages m WHERE m.guid = NEW.target_guid AND m.kind = 'message' AND m.chat_id IS NOT NULL
    ON CONFLICT (chat_id, target_from_me, by_me, type, bucket, target_handle) DO UPDATE SET n = n + 1;
    INSERT INTO stats_reacted (message_id, chat_id, date_ns, n)
    SELECT m.id, m.chat_id, m.date_ns, 1
    FROM messages m WHERE m.guid = NEW.target_guid AND m.kind = 'message' AND m.chat_id IS NOT NULL
    ON CONFLICT (message_id) DO UPDATE SET n = n + 1;
END;
-- Rows already there before this migration, from 0007's buckets (as maintain.REBUILD does).
INSERT INTO stats_years (year, chat_id, handle_id, is_from_me, messages)
SELECT month / 100, chat_id, handle_id, is_from_me, SUM(messages) FROM stats_months
GROUP BY 1, 2, 3, 4;
INSERT INTO stats_blocks (chat_id, block, handle_id, is_from_me, packed)
SELECT chat_id, bucket / 2880, handle_id, is_from_me,
       group_concat(bucket || ',' || messages || ',' || words)
FROM stats_buckets GROUP BY chat_id, handle_id, is_from_me, bucket / 2880;
CREATE TEMP TABLE stats_walk AS
SELECT id, chat_id, conversation_id, COALESCE(handle_id, 0) AS h, is_from_me, date_ns,
       LAG(is_from_me) OVER w AS prev_me, LAG(date_ns) OVER w AS prev_ns,
       LEAD(id) OVER w IS NULL AS is_last
FROM messages WHERE conversation_id IS NOT NULL AND kind = 'message' AND chat_id IS NOT NULL
WINDOW w AS (PARTITION BY conversation_id ORDER BY date_ns, id);
INSERT INTO stats_conversations (conversation_id, chat_id, start_ns, end_ns, messages, first_from_me, last_id, last_from_me)
SELECT conversation_id, chat_id, MIN(date_ns), MAX(date_ns), COUNT(*),
       MAX(CASE WHEN prev_me IS NULL THEN is_from_me END),
       MAX(CASE WHEN is_last THEN id END), MAX(CASE WHEN is_last THEN is_from_me END)
FROM temp.stats_walk GROUP BY conversation_id;
INSERT INTO stats_conv_senders (conversation_id, handle_id, is_from_me, chat_id, messages)
SELECT conversation_id, h, is_from_me, chat_id, COUNT(*) FROM temp.stats_walk GROUP BY 1, 2, 3;
INSERT INTO stats_replies (message_id, chat_id, conversation_id, handle_id, is_from_me, date_ns, gap_ns)
SELECT id, chat_id, conversation_id, h, is_from_me, date_ns, date_ns - prev_ns
FROM temp.stats_walk WHERE prev_me <> is_from_me;
DROP TABLE temp.stats_walk;
INSERT INTO stats_reactions (chat_id, target_from_me, by_me, type, bucket, target_handle, n)
SELECT m.chat_id, m.is_from_me, r.is_from_me, r.type, m.date_ns / 900000000000,
       COALESCE(m.handle_id, 0), COUNT(*)
FROM reactions r JOIN messages m ON m.guid = r.target_guid
WHERE r.active = 1 AND r.is_removal = 0 AND m.kind = 'message' AND m.chat_id IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6;
INSERT INTO stats_reacted (message_id, chat_id, date_ns, n)
SELECT m.id, m.chat_id, m.date_ns, COUNT(*)
FROM reactions r JOIN messages m ON m.guid = r.target_guid
WHERE r.active = 1 AND r.is_removal = 0 AND m.kind = 'message' AND m.chat_id IS NOT NULL
GROUP BY m.id;
