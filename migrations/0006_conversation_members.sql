-- A conversation has members; a one-to-one chat is the case of two: this
-- actor and the contact. Conversations of other kinds (channels) add kinds
-- and members later without a peer column to work around.
ALTER TABLE conversations ADD COLUMN kind TEXT NOT NULL DEFAULT 'direct'
    CHECK (kind IN ('direct'));

CREATE TABLE conversation_members (
    conversation_id UUID        NOT NULL REFERENCES conversations (id),
    actor_id        BYTEA       NOT NULL CHECK (length(actor_id) = 16),
    joined_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, actor_id)
);
CREATE INDEX conversation_members_actor ON conversation_members (actor_id);

-- Every existing conversation is a one-to-one chat: its peer, and this
-- actor (the profile row exists wherever a conversation does).
INSERT INTO conversation_members (conversation_id, actor_id, joined_at)
    SELECT c.id, c.peer, c.created_at FROM conversations c
    UNION ALL
    SELECT c.id, p.actor_id, c.created_at FROM conversations c CROSS JOIN profile p;

ALTER TABLE conversations DROP COLUMN peer;
