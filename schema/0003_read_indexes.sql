-- Indexes for the read API (chatstats/library), added where measurement showed a need.

-- GET /api/conversations without chat_id lists every conversation newest first by
-- (start_ns, id). conversations_chat (chat_id, start_ns) cannot give that order, so each page
-- scanned and sorted the whole table: on 62k conversations 5 ms for the first page and
-- 17-30 ms for later ones (a skip-scan of conversations_chat). With this index a page is a
-- short walk from the cursor, ~0.1 ms.
CREATE INDEX conversations_recent ON conversations(start_ns, id);
