-- Packed and histogram summaries beside 0007's and 0011's, so the overview, a year in messages
-- and a whole chat read a few hundred rows instead of tens of thousands (issue 11: every
-- route p95 <= 20 ms on 300k messages). Like 0011's, all are kept by plain-SQL triggers in
-- the same transaction as the rows they summarise (chained from stats_months, stats_buckets,
-- stats_replies and stats_conversations, which 0011 keeps from the messages), and race mode
-- rebuilds them set-based (chatstats/stats/maintain.py PACKS; tests hold triggers and
-- rebuild equal). The zone stays a query-time choice: everything is by UTC bucket or day.
--
-- Packs are pairs of integers as fixed-width hex digits, concatenated: 8 digits each for months,
--   buckets and counts (all positive and below 2^31 after 1970), 16 (64-bit two's complement)
--   for handles and gaps. numpy reads them with one bytes.fromhex, several times faster than
--   parsing comma-separated decimals. The tables keep rowids: a pack of 1-4 KB stays inside
--   its table b-tree leaf instead of spilling to overflow pages as in a WITHOUT ROWID index.
-- stats_month_packs: stats_months packed per (chat, sender handle, side) as (month, messages)
--   pairs (~600 rows on 300k messages instead of ~20k), so any range's whole months and years
--   are summed with numpy from one read.
-- stats_bucket_days: per UTC day, its 15-minute buckets summed over chats and senders, packed
--   as (bucket * 2 + is_from_me, messages) pairs (a year's local days and hours: ~365 rows).
-- stats_reply_days: per UTC day and side, that day's replies packed as (handle, gap_ns) pairs,
--   with the earliest message replied to (min_prev_ns), so a year reads its replies' gaps
--   from ~730 rows and knows which days hold a reply to a message before the year.
-- stats_gap_bins: per chat and side, how many replies fall in each bin of gap lengths (two
--   leading decimal digits of the gap in seconds, order-preserving): a whole chat's exact
--   median and p90 are one walk inside one bin (stats_replies_chat), not across all replies.
-- stats_conv_sizes: per chat, how many conversations have each size and first side: a whole
--   chat's conversation figures without reading each conversation.
-- stats_reaction_totals: stats_reactions summed over buckets and target senders: a whole
--   chat's standing tapbacks by side and type in one short read.

CREATE INDEX stats_months_key ON stats_months(chat_id, handle_id, is_from_me, month, messages);

CREATE TABLE stats_month_packs (
    chat_id    INTEGER NOT NULL,
    handle_id  INTEGER NOT NULL,
    is_from_me INTEGER NOT NULL,
    packed     TEXT NOT NULL,             -- (month, messages) pairs, 8 hex digits each
    PRIMARY KEY (chat_id, handle_id, is_from_me)
);

CREATE TABLE stats_bucket_days (
    day    INTEGER PRIMARY KEY,           -- bucket / 96 (UTC)
    packed TEXT NOT NULL                  -- (bucket * 2 + is_from_me, messages) pairs, 8 hex digits each
);

CREATE TABLE stats_reply_days (
    day         INTEGER NOT NULL,         -- date_ns / 86400e9 of the reply (UTC)
    is_from_me  INTEGER NOT NULL,
    min_prev_ns INTEGER NOT NULL,         -- MIN(date_ns - gap_ns) of its replies
    packed      TEXT NOT NULL,            -- (handle_id, gap_ns) pairs, 16 hex digits each
    PRIMARY KEY (day, is_from_me)
);

CREATE TABLE stats_gap_bins (
    chat_id    INTEGER NOT NULL,
    is_from_me INTEGER NOT NULL,
    bin        INTEGER NOT NULL,          -- length(s) * 100 + first two digits of s, s = gap in whole seconds
    n          INTEGER NOT NULL,
    PRIMARY KEY (chat_id, is_from_me, bin)
) WITHOUT ROWID;

CREATE TABLE stats_conv_sizes (
    chat_id       INTEGER NOT NULL,
    messages      INTEGER NOT NULL,
    first_from_me INTEGER NOT NULL,
    n             INTEGER NOT NULL,
    PRIMARY KEY (chat_id, messages, first_from_me)
) WITHOUT ROWID;

CREATE TABLE stats_reaction_totals (
    chat_id        INTEGER NOT NULL,
    target_from_me INTEGER NOT NULL,
    by_me          INTEGER NOT NULL,
    type           TEXT NOT NULL,
    n              INTEGER NOT NULL,
    PRIMARY KEY (chat_id, target_from_me, by_me, type)
) WITHOUT ROWID;

-- stats_blocks (0011) in the same hex form, (bucket, messages, words) as 8, 8 and 16 digits,
-- and with rowids: its comma-separated packs spilled to overflow pages and took ~5 ms of
-- numpy.fromstring for the largest chat; same key, same triggers otherwise.
DROP TRIGGER stats_block_insert;
DROP TRIGGER stats_block_update;
DROP TRIGGER stats_block_delete;
DROP TABLE stats_blocks;
CREATE TABLE stats_blocks (
    chat_id    INTEGER NOT NULL,
    block      INTEGER NOT NULL,          -- bucket / 2880
    handle_id  INTEGER NOT NULL,          -- as in stats_buckets: 0 for me or unknown
    is_from_me INTEGER NOT NULL,
    packed     TEXT NOT NULL,             -- (bucket, messages, words): 8, 8, 16 hex digits
    PRIMARY KEY (chat_id, block, handle_id, is_from_me)
);
CREATE TRIGGER stats_block_insert AFTER INSERT ON stats_buckets BEGIN
    DELETE FROM stats_blocks WHERE chat_id = NEW.chat_id AND block = NEW.bucket / 2880
      AND handle_id = NEW.handle_id AND is_from_me = NEW.is_from_me;
    INSERT INTO stats_blocks (chat_id, block, handle_id, is_from_me, packed)
    SELECT chat_id, NEW.bucket / 2880, handle_id, is_from_me,
           group_concat(printf('%08x%08x%016x', bucket, messages, words), '')
    FROM stats_buckets WHERE chat_id = NEW.chat_id AND handle_id = NEW.handle_id
      AND is_from_me = NEW.is_from_me AND bucket >= NEW.bucket / 2880 * 2880 AND bucket < NEW.bucket / 2880 * 2880 + 2880
    GROUP BY chat_id;
END;
CREATE TRIGGER stats_block_update AFTER UPDATE ON stats_buckets BEGIN
    DELETE FROM stats_blocks WHERE chat_id = NEW.chat_id AND block = NEW.bucket / 2880
      AND handle_id = NEW.handle_id AND is_from_me = NEW.is_from_me;
    INSERT INTO stats_blocks (chat_id, block, handle_id, is_from_me, packed)
    SELECT chat_id, NEW.bucket / 2880, handle_id, is_from_me,
           group_concat(printf('%08x%08x%016x', bucket, messages, words), '')
    FROM stats_buckets WHERE chat_id = NEW.chat_id AND handle_id = NEW.handle_id
      AND is_from_me = NEW.is_from_me AND bucket >= NEW.bucket / 2880 * 2880 AND bucket < NEW.bucket / 2880 * 2880 + 2880
    GROUP BY chat_id;
END;
CREATE TRIGGER stats_block_delete AFTER DELETE ON stats_buckets BEGIN
    DELETE FROM stats_blocks WHERE chat_id = OLD.chat_id AND block = OLD.bucket / 2880
      AND handle_id = OLD.handle_id AND is_from_me = OLD.is_from_me;
    INSERT INTO stats_blocks (chat_id, block, handle_id, is_from_me, packed)
    SELECT chat_id, OLD.bucket / 2880, handle_id, is_from_me,
           group_concat(printf('%08x%08x%016x', bucket, messages, words), '')
    FROM stats_buckets WHERE chat_id = OLD.chat_id AND handle_id = OLD.handle_id
      AND is_from_me = OLD.is_from_me AND bucket >= OLD.bucket / 2880 * 2880 AND bucket < OLD.bucket / 2880 * 2880 + 2880
    GROUP BY chat_id;
END;

-- Triggers. Names follow 0011's prefixes (stats_year_, stats_block_, stats_conv_), so
-- maintain.suspend drops them for a race-mode load with the rest.
CREATE TRIGGER stats_year_pack_insert AFTER INSERT ON stats_months BEGIN
    DELETE FROM stats_month_packs WHERE chat_id = NEW.chat_id AND handle_id = NEW.handle_id AND is_from_me = NEW.is_from_me;
    INSERT INTO stats_month_packs (chat_id, handle_id, is_from_me, packed)
    SELECT chat_id, handle_id, is_from_me, group_concat(printf('%08x%08x', month, messages), '') FROM stats_months
    WHERE chat_id = NEW.chat_id AND handle_id = NEW.handle_id AND is_from_me = NEW.is_from_me AND messages > 0
    GROUP BY chat_id;
END;
CREATE TRIGGER stats_year_pack_update AFTER UPDATE ON stats_months BEGIN
    DELETE FROM stats_month_packs WHERE chat_id = NEW.chat_id AND handle_id = NEW.handle_id AND is_from_me = NEW.is_from_me;
    INSERT INTO stats_month_packs (chat_id, handle_id, is_from_me, packed)
    SELECT chat_id, handle_id, is_from_me, group_concat(printf('%08x%08x', month, messages), '') FROM stats_months
    WHERE chat_id = NEW.chat_id AND handle_id = NEW.handle_id AND is_from_me = NEW.is_from_me AND messages > 0
    GROUP BY chat_id;
END;
CREATE TRIGGER stats_year_pack_delete AFTER DELETE ON stats_months BEGIN
    DELETE FROM stats_month_packs WHERE chat_id = OLD.chat_id AND handle_id = OLD.handle_id AND is_from_me = OLD.is_from_me;
    INSERT INTO stats_month_packs (chat_id, handle_id, is_from_me, packed)
    SELECT chat_id, handle_id, is_from_me, group_concat(printf('%08x%08x', month, messages), '') FROM stats_months
    WHERE chat_id = OLD.chat_id AND handle_id = OLD.handle_id AND is_from_me = OLD.is_from_me AND messages > 0
    GROUP BY chat_id;
END;

-- A day's pack sums its buckets per side in one pass in bucket order (the primary key's), so
-- no sort: one row per bucket with both sides' counts.
CREATE TRIGGER stats_block_day_insert AFTER INSERT ON stats_buckets BEGIN
    DELETE FROM stats_bucket_days WHERE day = NEW.bucket / 96;
    INSERT INTO stats_bucket_days (day, packed)
    SELECT NEW.bucket / 96, group_concat(p, '') FROM (
        SELECT CASE WHEN r > 0 THEN printf('%08x%08x', bucket * 2, r) ELSE '' END
            || CASE WHEN s > 0 THEN printf('%08x%08x', bucket * 2 + 1, s) ELSE '' END AS p
        FROM (SELECT bucket, SUM(CASE WHEN is_from_me = 0 THEN messages ELSE 0 END) AS r,
                     SUM(CASE WHEN is_from_me = 0 THEN 0 ELSE messages END) AS s
              FROM stats_buckets
              WHERE bucket >= NEW.bucket / 96 * 96 - 96 AND bucket < NEW.bucket / 96 * 96 + 96
                AND bucket / 96 = NEW.bucket / 96
              GROUP BY bucket))
    WHERE p <> ''
    HAVING COUNT(*) > 0;
END;
CREATE TRIGGER stats_block_day_update AFTER UPDATE OF messages, bucket, is_from_me ON stats_buckets BEGIN
    DELETE FROM stats_bucket_days WHERE day = OLD.bucket / 96 AND OLD.bucket / 96 <> NEW.bucket / 96;
    INSERT INTO stats_bucket_days (day, packed)
    SELECT OLD.bucket / 96, group_concat(p, '') FROM (
        SELECT CASE WHEN r > 0 THEN printf('%08x%08x', bucket * 2, r) ELSE '' END
            || CASE WHEN s > 0 THEN printf('%08x%08x', bucket * 2 + 1, s) ELSE '' END AS p
        FROM (SELECT bucket, SUM(CASE WHEN is_from_me = 0 THEN messages ELSE 0 END) AS r,
                     SUM(CASE WHEN is_from_me = 0 THEN 0 ELSE messages END) AS s
              FROM stats_buckets
              WHERE bucket >= OLD.bucket / 96 * 96 - 96 AND bucket < OLD.bucket / 96 * 96 + 96
                AND bucket / 96 = OLD.bucket / 96
              GROUP BY bucket))
    WHERE p <> '' AND OLD.bucket / 96 <> NEW.bucket / 96
    HAVING COUNT(*) > 0;
    DELETE FROM stats_bucket_days WHERE day = NEW.bucket / 96;
    INSERT INTO stats_bucket_days (day, packed)
    SELECT NEW.bucket / 96, group_concat(p, '') FROM (
        SELECT CASE WHEN r > 0 THEN printf('%08x%08x', bucket * 2, r) ELSE '' END
            || CASE WHEN s > 0 THEN printf('%08x%08x', bucket * 2 + 1, s) ELSE '' END AS p
        FROM (SELECT bucket, SUM(CASE WHEN is_from_me = 0 THEN messages ELSE 0 END) AS r,
                     SUM(CASE WHEN is_from_me = 0 THEN 0 ELSE messages END) AS s
              FROM stats_buckets
              WHERE bucket >= NEW.bucket / 96 * 96 - 96 AND bucket < NEW.bucket / 96 * 96 + 96
                AND bucket / 96 = NEW.bucket / 96
              GROUP BY bucket))
    WHERE p <> ''
    HAVING COUNT(*) > 0;
END;
CREATE TRIGGER stats_block_day_delete AFTER DELETE ON stats_buckets BEGIN
    DELETE FROM stats_bucket_days WHERE day = OLD.bucket / 96;
    INSERT INTO stats_bucket_days (day, packed)
    SELECT OLD.bucket / 96, group_concat(p, '') FROM (
        SELECT CASE WHEN r > 0 THEN printf('%08x%08x', bucket * 2, r) ELSE '' END
            || CASE WHEN s > 0 THEN printf('%08x%08x', bucket * 2 + 1, s) ELSE '' END AS p
        FROM (SELECT bucket, SUM(CASE WHEN is_from_me = 0 THEN messages ELSE 0 END) AS r,
                     SUM(CASE WHEN is_from_me = 0 THEN 0 ELSE messages END) AS s
              FROM stats_buckets
              WHERE bucket >= OLD.bucket / 96 * 96 - 96 AND bucket < OLD.bucket / 96 * 96 + 96
                AND bucket / 96 = OLD.bucket / 96
              GROUP BY bucket))
    WHERE p <> ''
    HAVING COUNT(*) > 0;
END;

CREATE TRIGGER stats_conv_replyday_insert AFTER INSERT ON stats_replies BEGIN
    DELETE FROM stats_reply_days WHERE day = NEW.date_ns / 86400000000000 AND is_from_me = NEW.is_from_me;
    INSERT INTO stats_reply_days (day, is_from_me, min_prev_ns, packed)
    SELECT NEW.date_ns / 86400000000000, NEW.is_from_me, MIN(date_ns - gap_ns), group_concat(printf('%016x%016x', handle_id, gap_ns), '')
    FROM stats_replies WHERE is_from_me = NEW.is_from_me
      AND date_ns >= NEW.date_ns / 86400000000000 * 86400000000000 - 86400000000000
      AND date_ns < NEW.date_ns / 86400000000000 * 86400000000000 + 86400000000000
      AND date_ns / 86400000000000 = NEW.date_ns / 86400000000000
    HAVING COUNT(*) > 0;
    INSERT INTO stats_gap_bins (chat_id, is_from_me, bin, n)
    VALUES (NEW.chat_id, NEW.is_from_me,
            length(NEW.gap_ns / 1000000000) * 100 + CAST(substr(NEW.gap_ns / 1000000000, 1, 2) AS INTEGER), 1)
    ON CONFLICT (chat_id, is_from_me, bin) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER stats_conv_replyday_delete AFTER DELETE ON stats_replies BEGIN
    DELETE FROM stats_reply_days WHERE day = OLD.date_ns / 86400000000000 AND is_from_me = OLD.is_from_me;
    INSERT INTO stats_reply_days (day, is_from_me, min_prev_ns, packed)
    SELECT OLD.date_ns / 86400000000000, OLD.is_from_me, MIN(date_ns - gap_ns), group_concat(printf('%016x%016x', handle_id, gap_ns), '')
    FROM stats_replies WHERE is_from_me = OLD.is_from_me
      AND date_ns >= OLD.date_ns / 86400000000000 * 86400000000000 - 86400000000000
      AND date_ns < OLD.date_ns / 86400000000000 * 86400000000000 + 86400000000000
      AND date_ns / 86400000000000 = OLD.date_ns / 86400000000000
    HAVING COUNT(*) > 0;
    UPDATE stats_gap_bins SET n = n - 1 WHERE chat_id = OLD.chat_id AND is_from_me = OLD.is_from_me
      AND bin = length(OLD.gap_ns / 1000000000) * 100 + CAST(substr(OLD.gap_ns / 1000000000, 1, 2) AS INTEGER);
    DELETE FROM stats_gap_bins WHERE chat_id = OLD.chat_id AND is_from_me = OLD.is_from_me
      AND bin = length(OLD.gap_ns / 1000000000) * 100 + CAST(substr(OLD.gap_ns / 1000000000, 1, 2) AS INTEGER)
      AND n <= 0;
END;

CREATE TRIGGER stats_conv_size_insert AFTER INSERT ON stats_conversations BEGIN
    INSERT INTO stats_conv_sizes (chat_id, messages, first_from_me, n)
    VALUES (NEW.chat_id, NEW.messages, NEW.first_from_me, 1)
    ON CONFLICT (chat_id, messages, first_from_me) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER stats_conv_size_update AFTER UPDATE OF chat_id, messages, first_from_me ON stats_conversations
WHEN OLD.chat_id IS NOT NEW.chat_id OR OLD.messages IS NOT NEW.messages OR OLD.first_from_me IS NOT NEW.first_from_me BEGIN
    UPDATE stats_conv_sizes SET n = n - 1
    WHERE chat_id = OLD.chat_id AND messages = OLD.messages AND first_from_me = OLD.first_from_me;
    DELETE FROM stats_conv_sizes
    WHERE chat_id = OLD.chat_id AND messages = OLD.messages AND first_from_me = OLD.first_from_me AND n <= 0;
    INSERT INTO stats_conv_sizes (chat_id, messages, first_from_me, n)
    VALUES (NEW.chat_id, NEW.messages, NEW.first_from_me, 1)
    ON CONFLICT (chat_id, messages, first_from_me) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER stats_conv_size_delete AFTER DELETE ON stats_conversations BEGIN
    UPDATE stats_conv_sizes SET n = n - 1
    WHERE chat_id = OLD.chat_id AND messages = OLD.messages AND first_from_me = OLD.first_from_me;
    DELETE FROM stats_conv_sizes
    WHERE chat_id = OLD.chat_id AND messages = OLD.messages AND first_from_me = OLD.first_from_me AND n <= 0;
END;

CREATE TRIGGER stats_react_total_insert AFTER INSERT ON stats_reactions BEGIN
    INSERT INTO stats_reaction_totals (chat_id, target_from_me, by_me, type, n)
    VALUES (NEW.chat_id, NEW.target_from_me, NEW.by_me, NEW.type, NEW.n)
    ON CONFLICT (chat_id, target_from_me, by_me, type) DO UPDATE SET n = n + excluded.n;
    DELETE FROM stats_reaction_totals WHERE chat_id = NEW.chat_id AND target_from_me = NEW.target_from_me
      AND by_me = NEW.by_me AND type = NEW.type AND n <= 0;
END;
CREATE TRIGGER stats_react_total_update AFTER UPDATE ON stats_reactions BEGIN
    INSERT INTO stats_reaction_totals (chat_id, target_from_me, by_me, type, n)
    VALUES (OLD.chat_id, OLD.target_from_me, OLD.by_me, OLD.type, -OLD.n)
    ON CONFLICT (chat_id, target_from_me, by_me, type) DO UPDATE SET n = n + excluded.n;
    INSERT INTO stats_reaction_totals (chat_id, target_from_me, by_me, type, n)
    VALUES (NEW.chat_id, NEW.target_from_me, NEW.by_me, NEW.type, NEW.n)
    ON CONFLICT (chat_id, target_from_me, by_me, type) DO UPDATE SET n = n + excluded.n;
    DELETE FROM stats_reaction_totals WHERE n <= 0 AND (
      (chat_id = OLD.chat_id AND target_from_me = OLD.target_from_me AND by_me = OLD.by_me AND type = OLD.type)
      OR (chat_id = NEW.chat_id AND target_from_me = NEW.target_from_me AND by_me = NEW.by_me AND type = NEW.type));
END;
CREATE TRIGGER stats_react_total_delete AFTER DELETE ON stats_reactions BEGIN
    INSERT INTO stats_reaction_totals (chat_id, target_from_me, by_me, type, n)
    VALUES (OLD.chat_id, OLD.target_from_me, OLD.by_me, OLD.type, -OLD.n)
    ON CONFLICT (chat_id, target_from_me, by_me, type) DO UPDATE SET n = n + excluded.n;
    DELETE FROM stats_reaction_totals WHERE chat_id = OLD.chat_id AND target_from_me = OLD.target_from_me
      AND by_me = OLD.by_me AND type = OLD.type AND n <= 0;
END;

-- Rows already there before this migration (as maintain.PACKS and _FROM_BUCKETS build them).
INSERT INTO stats_blocks (chat_id, block, handle_id, is_from_me, packed)
SELECT chat_id, bucket / 2880, handle_id, is_from_me,
       group_concat(printf('%08x%08x%016x', bucket, messages, words), '')
FROM stats_buckets GROUP BY chat_id, handle_id, is_from_me, bucket / 2880;
INSERT INTO stats_month_packs (chat_id, handle_id, is_from_me, packed)
SELECT chat_id, handle_id, is_from_me, group_concat(printf('%08x%08x', month, messages), '') FROM stats_months
WHERE messages > 0 GROUP BY chat_id, handle_id, is_from_me;
INSERT INTO stats_bucket_days (day, packed)
SELECT bucket / 96, group_concat(p, '') FROM (
    SELECT bucket, CASE WHEN r > 0 THEN printf('%08x%08x', bucket * 2, r) ELSE '' END
        || CASE WHEN s > 0 THEN printf('%08x%08x', bucket * 2 + 1, s) ELSE '' END AS p
    FROM (SELECT bucket, SUM(CASE WHEN is_from_me = 0 THEN messages ELSE 0 END) AS r,
                 SUM(CASE WHEN is_from_me = 0 THEN 0 ELSE messages END) AS s
          FROM stats_buckets GROUP BY bucket))
WHERE p <> '' GROUP BY bucket / 96;
INSERT INTO stats_reply_days (day, is_from_me, min_prev_ns, packed)
SELECT date_ns / 86400000000000, is_from_me, MIN(date_ns - gap_ns), group_concat(printf('%016x%016x', handle_id, gap_ns), '')
FROM stats_replies GROUP BY 1, 2;
INSERT INTO stats_gap_bins (chat_id, is_from_me, bin, n)
SELECT chat_id, is_from_me, length(gap_ns / 1000000000) * 100 + CAST(substr(gap_ns / 1000000000, 1, 2) AS INTEGER), COUNT(*)
FROM stats_replies GROUP BY 1, 2, 3;
INSERT INTO stats_conv_sizes (chat_id, messages, first_from_me, n)
SELECT chat_id, messages, first_from_me, COUNT(*) FROM stats_conversations GROUP BY 1, 2, 3;
INSERT INTO stats_reaction_totals (chat_id, target_from_me, by_me, type, n)
SELECT chat_id, target_from_me, by_me, type, SUM(n) FROM stats_reactions
GROUP BY 1, 2, 3, 4 HAVING SUM(n) > 0;
