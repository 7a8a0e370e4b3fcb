-- Live sync inserts a batch's messages first and files them into conversations after (the
-- split needs the whole batch): an UPDATE of conversation_id from NULL. The update trigger
-- recomputed the whole conversation for it (its replies deleted and re-inserted, each one
-- rebuilding a day's reply pack): 10 ms for a message joining an 80-message conversation.
-- A message filed at its conversation's end now takes the O(1) append path, as an INSERT
-- with its conversation does (stats_conv_append). The WHENs exclude each other whichever
-- runs first: after the append the message is its conversation's last, and still
-- "appendable"; after a recompute of a message that was not last, it is still not last.
DROP TRIGGER stats_conv_update_new;
CREATE TRIGGER stats_conv_update_new AFTER UPDATE OF conversation_id, chat_id, date_ns, is_from_me, handle_id, kind ON messages
WHEN NEW.conversation_id IS NOT NULL AND (OLD.kind = 'message' OR NEW.kind = 'message')
  AND (OLD.conversation_id IS NOT NEW.conversation_id OR OLD.chat_id IS NOT NEW.chat_id OR OLD.date_ns IS NOT NEW.date_ns OR OLD.is_from_me IS NOT NEW.is_from_me OR OLD.handle_id IS NOT NEW.handle_id OR OLD.kind IS NOT NEW.kind)
  AND NOT (OLD.conversation_id IS NULL AND NEW.kind = 'message' AND NEW.chat_id IS NOT NULL
    AND OLD.kind IS NEW.kind AND OLD.chat_id IS NEW.chat_id AND OLD.date_ns IS NEW.date_ns
    AND OLD.is_from_me IS NEW.is_from_me AND OLD.handle_id IS NEW.handle_id
    AND NOT EXISTS (SELECT 1 FROM stats_conversations c WHERE c.conversation_id = NEW.conversation_id
      AND (c.end_ns > NEW.date_ns OR (c.end_ns = NEW.date_ns AND c.last_id > NEW.id)))) BEGIN
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
CREATE TRIGGER stats_conv_assign_append AFTER UPDATE OF conversation_id ON messages
WHEN (OLD.conversation_id IS NULL AND NEW.kind = 'message' AND NEW.chat_id IS NOT NULL
    AND OLD.kind IS NEW.kind AND OLD.chat_id IS NEW.chat_id AND OLD.date_ns IS NEW.date_ns
    AND OLD.is_from_me IS NEW.is_from_me AND OLD.handle_id IS NEW.handle_id
    AND NOT EXISTS (SELECT 1 FROM stats_conversations c WHERE c.conversation_id = NEW.conversation_id
      AND (c.end_ns > NEW.date_ns OR (c.end_ns = NEW.date_ns AND c.last_id > NEW.id)))) BEGIN
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
