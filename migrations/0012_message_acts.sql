-- Replies, reactions, edits and deletions.
--
-- A reaction, an edit or a deletion is a row of `messages` of its own (an
-- "act", `act` set): it is sent, delivered, acknowledged and deduplicated
-- by id exactly like chat, and never shown, counted unread or found by a
-- search. What it does to its target is derived from every act on the
-- target, whatever order they arrived in: the newest edit by the target's
-- sender gives the text, any deletion by it deletes, and the newest
-- reaction or removal per (sender, emoji) decides whether that reaction
-- stands. An act whose target has not arrived simply has nothing to act
-- on yet.
ALTER TABLE messages
    ADD COLUMN reply_to   UUID,
    ADD COLUMN act_target UUID,
    -- For 'react' and 'unreact' the body is the emoji; for 'edit' the new
    -- text; for 'delete' empty.
    ADD COLUMN act        TEXT CHECK (act IN ('react', 'unreact', 'edit', 'delete')),
    -- The text the message was sent with, kept once it is edited (the
    -- body is the newest text); the versions are it and the edits.
    ADD COLUMN first_body TEXT,
    ADD COLUMN edited     BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    ADD CONSTRAINT messages_act_has_target CHECK ((act IS NULL) = (act_target IS NULL));

-- Both small: acts and replies are few beside the messages, and every
-- stored batch looks here for those waiting for its messages.
CREATE INDEX messages_acts ON messages (act_target) WHERE act_target IS NOT NULL;
CREATE INDEX messages_replies ON messages (reply_to) WHERE reply_to IS NOT NULL;
