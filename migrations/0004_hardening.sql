-- The last control record applied per sender and stream (profile, receipt,
-- presence, typing, heartbeat). A sender's control records of one stream
-- arrive in the order it sent them, so a record at or below the mark is
-- a replay, a stale copy or our own consumer reading again; which of these
-- is told by the record's place (partition, offset) and digest.
CREATE TABLE control_marks (
    sender      BYTEA   NOT NULL CHECK (length(sender) = 16),
    stream      TEXT    NOT NULL,
    message_id  UUID    NOT NULL,
    partition   INTEGER NOT NULL,
    "offset"    BIGINT  NOT NULL,
    digest      BYTEA   NOT NULL CHECK (length(digest) = 32),
    PRIMARY KEY (sender, stream)
);

-- The time the contact stamped on its signed profile: an older profile never
-- replaces a newer one. 0 for rows from before this column; kircd fills it in
-- from the stored profile when it loads the contacts.
ALTER TABLE contacts ADD COLUMN profile_updated_at BIGINT NOT NULL DEFAULT 0;

-- SHA-256 of the record a received message came in: the same id with the same
-- bytes again is the sender's own redelivery, with other bytes a replay.
ALTER TABLE messages ADD COLUMN digest BYTEA;

-- The key a client chose for a SendMessage call: the same key names the same
-- message, so a client may retry a call whose answer it did not get.
ALTER TABLE messages ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX messages_idempotency_key ON messages (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- A rejected record is often random bytes: PostgreSQL's attempt to compress
-- it costs more than it saves.
ALTER TABLE quarantine ALTER COLUMN head SET STORAGE EXTERNAL;
