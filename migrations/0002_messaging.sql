-- The actor's own profile. One row; the secret keys live in the identity
-- file, never here.
CREATE TABLE profile (
    singleton      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    actor_id       BYTEA       NOT NULL CHECK (length(actor_id) = 16),
    display_name   TEXT        NOT NULL,
    signing_key    BYTEA       NOT NULL CHECK (length(signing_key) = 32),
    box_key        BYTEA       NOT NULL CHECK (length(box_key) = 32),
    read_receipts  BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- People this actor knows. `state`: 'accepted' (a contact), 'request' (asked
-- to be added, waiting for the user), 'blocked'. `peer_accepted`: they have
-- accepted us (they added us, or answered our request).
CREATE TABLE contacts (
    actor_id       BYTEA       PRIMARY KEY CHECK (length(actor_id) = 16),
    display_name   TEXT        NOT NULL,
    signing_key    BYTEA       NOT NULL CHECK (length(signing_key) = 32),
    box_key        BYTEA       NOT NULL CHECK (length(box_key) = 32),
    -- The signed profile as received: it is re-verified on every load.
    signed_profile BYTEA       NOT NULL,
    state          TEXT        NOT NULL CHECK (state IN ('accepted', 'request', 'blocked')),
    peer_accepted  BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Invites this actor issued. Only a hash of the one-time secret is kept.
CREATE TABLE invites (
    id           UUID        PRIMARY KEY,
    secret_hash  BYTEA       NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    used_at      TIMESTAMPTZ,
    used_by      BYTEA
);

-- One row per conversation (one per contact for now).
CREATE TABLE conversations (
    id               UUID        PRIMARY KEY,
    peer             BYTEA       NOT NULL UNIQUE REFERENCES contacts (actor_id),
    last_activity_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every message, sent or received. `seq` is the local arrival order: history
-- pages and read markers use it, so the order never changes once shown.
-- `state` of a sent message: pending → queued → delivered → received → read;
-- a received message is 'received'. `envelope` keeps a sent message's sealed
-- bytes, so that a retry resends exactly what was signed.
CREATE TABLE messages (
    id               UUID        PRIMARY KEY,
    seq              BIGSERIAL   NOT NULL UNIQUE,
    conversation_id  UUID        NOT NULL REFERENCES conversations (id),
    sender           BYTEA       NOT NULL,
    outgoing         BOOLEAN     NOT NULL,
    action           BOOLEAN     NOT NULL DEFAULT FALSE,
    body             TEXT        NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    stored_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    state            TEXT        NOT NULL CHECK (state IN ('pending', 'queued', 'delivered', 'received', 'read')),
    envelope         BYTEA,
    -- Where a received message came from, to tell a redelivery after a crash
    -- (same place) from a replay (elsewhere).
    source_partition INTEGER,
    source_offset    BIGINT,
    search           TSVECTOR    GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED
);
CREATE INDEX messages_conversation_seq ON messages (conversation_id, seq);
CREATE INDEX messages_search ON messages USING GIN (search);
CREATE INDEX messages_unsent ON messages (seq) WHERE state = 'pending';

-- Receipts from the peer for our messages.
CREATE TABLE receipts (
    message_id  UUID        NOT NULL REFERENCES messages (id),
    kind        TEXT        NOT NULL CHECK (kind IN ('received', 'read')),
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, kind)
);

-- How far the user has read each conversation; only ever moves forward.
CREATE TABLE read_markers (
    conversation_id UUID        PRIMARY KEY REFERENCES conversations (id),
    last_read_seq   BIGINT      NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Records rejected from data-in / rpc-in, kept for inspection.
CREATE TABLE quarantine (
    id          BIGSERIAL   PRIMARY KEY,
    topic       TEXT        NOT NULL,
    partition   INTEGER     NOT NULL,
    "offset"    BIGINT      NOT NULL,
    reason      TEXT        NOT NULL,
    sender      BYTEA,
    message_id  UUID,
    size        INTEGER     NOT NULL,
    -- At most the first 4 KiB.
    head        BYTEA       NOT NULL,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
