-- Channels: group conversations, each relayed by the actor that created it
-- (its owner). A channel is also a conversation of kind 'channel' with the
-- same id, so that history, unread counts, search and read markers work as
-- for one-to-one chats. The owner's rows are the channel as it enforces
-- it; a member's, the channel as the owner last relayed it.
ALTER TABLE conversations DROP CONSTRAINT conversations_kind_check;
-- A channel's members need not be contacts: their names are kept here, so
-- that lines about members who have left still name them.
ALTER TABLE conversation_members ADD COLUMN display_name TEXT NOT NULL DEFAULT '';
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
    -- 'joining': asked the owner, nothing relayed yet; 'left': parted,
    -- kicked or banned (the history stays).
    membership  TEXT        NOT NULL DEFAULT 'joined'
        CHECK (membership IN ('joining', 'joined', 'left')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE channel_roster (
    channel_id     UUID    NOT NULL REFERENCES channels (id),
    actor_id       BYTEA   NOT NULL CHECK (length(actor_id) = 16),
    role           TEXT    NOT NULL CHECK (role IN ('member', 'op', 'owner')),
    -- The member's signed public profile as the owner relays it: what its
    -- posts are verified with and its group session keys sealed to. It is
    -- verified again whenever it is loaded.
    signed_profile BYTEA   NOT NULL,
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

-- Invites to a channel this actor owns: reusable until they expire. Only a
-- hash of the secret is kept.
CREATE TABLE channel_invites (
    secret_hash BYTEA       PRIMARY KEY,
    channel_id  UUID        NOT NULL REFERENCES channels (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);

-- The owner's order: each step it relays, until every recipient's copy is
-- in the own outbox (a start finishes what a crash left half done; members
-- drop a copy by its place). `cause_id` is the record that caused the step
-- (a member's post or command): read again after a crash, it repeats its
-- step rather than making a new one.
CREATE TABLE channel_steps (
    channel_id  UUID        NOT NULL REFERENCES channels (id),
    seq         BIGINT      NOT NULL,
    cause_id    UUID        UNIQUE,
    relay       BYTEA       NOT NULL,
    recipients  BYTEA[]     NOT NULL,
    fanned_out  BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, seq)
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

-- Posts relayed before the session that opens them arrived: kept, and
-- opened when it does.
CREATE TABLE channel_waiting (
    channel_id UUID   NOT NULL REFERENCES channels (id),
    seq        BIGINT NOT NULL,
    session_id TEXT   NOT NULL,
    -- The encoded ChannelPost, checked when it was relayed.
    post       BYTEA  NOT NULL,
    PRIMARY KEY (channel_id, seq)
);
CREATE INDEX channel_waiting_session ON channel_waiting (channel_id, session_id);

-- A channel's messages and lines carry their place in the owner's order
-- (a sent post has none until the owner relays it back). A line that is
-- not a message (a join, a kick...) has its kind and whom it concerns.
-- `outbox_key`: the Kafka key a sent channel post went out with (the
-- one-to-one conversation with the owner, like every record between the
-- two), so that the channel's own resend uses it again.
ALTER TABLE messages ADD COLUMN channel_seq BIGINT;
ALTER TABLE messages ADD COLUMN line TEXT CHECK (line IN ('create', 'join', 'part', 'kick',
    'ban', 'unban', 'op', 'deop', 'topic', 'moderated', 'unmoderated'));
ALTER TABLE messages ADD COLUMN line_target BYTEA;
ALTER TABLE messages ADD COLUMN outbox_key UUID;
