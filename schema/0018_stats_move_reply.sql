-- A message moved to another conversation (a re-split or merge) takes its reply row with it.
-- Both conversations are recomputed by AFTER triggers, stats_conv_update_new and
-- stats_conv_update_old; SQLite runs those newest first, and since 0016 re-created
-- update_new it runs before update_old has deleted the old conversation's rows, so its
-- re-insert of the moved message's reply hit that message's old row (UNIQUE message_id)
-- and failed the whole live batch. A BEFORE trigger runs first whatever the creation order:
-- the moved message's old reply row goes, and each recompute writes only its own.
CREATE TRIGGER stats_conv_move_reply BEFORE UPDATE OF conversation_id ON messages
WHEN OLD.conversation_id IS NOT NEW.conversation_id BEGIN
    DELETE FROM stats_replies WHERE message_id = NEW.id;
END;
