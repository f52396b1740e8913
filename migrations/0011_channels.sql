-- Channels: group conversations, each relayed by the actor that created it
-- (its owner). A channel is also a conversation of kind 'channel' with the
-- same id, so that history, unread counts, search and read markers work as
-- for one-to-one chats. The owner's rows are the channel as it enforces
-- it; a member's, the channel as the owner last relayed it.
ALTER TABLE conversations DROP CONSTRAINT conversations_kind_check;
ALTER TABLE conversations ADD CONSTRAINT conversations_kind_check
    CHECK (kind IN ('direct', 'channel'));

CREATE TABLE channels (
    id          UUID        PRIMARY KEY REFERENCES conversations (id),
    owner       BYTEA       NOT NULL CHECK (length(owner) = 16),
    name        TEXT        NOT NULL,
    topic       TEXT        NOT NULL DEFAULT '',
    moderated   BOOLEAN     NOT NULL DEFAULT FALSE,
    -- Grows whenever a member leaves or is removed: group sessions made
    -- for an older epoch are not used to send again.
    epoch       BIGINT      NOT NULL DEFAULT 0,
    -- The owner: the last place it gave in the channel's order. A member:
    -- the last place it applied.
    seq         BIGINT      NOT NULL DEFAULT 0,
    -- A member that parted or was removed keeps the channel's history.
    joined      BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE channel_roster (
    channel_id     UUID  NOT NULL REFERENCES channels (id),
    actor_id       BYTEA NOT NULL CHECK (length(actor_id) = 16),
    role           TEXT  NOT NULL CHECK (role IN ('member', 'op', 'owner')),
    -- The member's signed public profile as the owner relays it: what its
    -- posts are verified with and its group session keys sealed to. It is
    -- verified again whenever it is loaded.
    signed_profile BYTEA NOT NULL,
    -- The roster's order, as the owner relays it (joining order).
    position       INTEGER NOT NULL,
    PRIMARY KEY (channel_id, actor_id)
);

CREATE TABLE channel_bans (
    channel_id UUID        NOT NULL REFERENCES channels (id),
    actor_id   BYTEA       NOT NULL CHECK (length(actor_id) = 16),
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, actor_id)
);

-- Megolm group sessions, each encrypted with a key derived from the
-- identity (the database alone opens none). `outbound`: this actor's own
-- session it encrypts with (the newest per channel is the current one);
-- otherwise the inbound side of a member's session (this actor's own
-- sessions have one too: it is what a late joiner's key is exported from).
CREATE TABLE group_sessions (
    channel_id UUID        NOT NULL REFERENCES channels (id),
    session_id TEXT        NOT NULL,
    outbound   BOOLEAN     NOT NULL,
    author     BYTEA       NOT NULL CHECK (length(author) = 16),
    epoch      BIGINT      NOT NULL,
    pickle     TEXT        NOT NULL,
    -- The order sessions were stored in.
    position   BIGSERIAL   NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, session_id, outbound)
);
