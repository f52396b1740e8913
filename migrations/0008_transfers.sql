-- File transfers, offered by this actor or to it. `state`: offered →
-- moving → complete, or refused / cancelled / failed, with `reason` saying
-- why. The id is the sender's; a recipient keeps it with the sender, and
-- refuses an offer whose id is taken.
CREATE TABLE transfers (
    id               UUID        PRIMARY KEY,
    conversation_id  UUID        NOT NULL REFERENCES conversations (id),
    peer             BYTEA       NOT NULL REFERENCES contacts (actor_id),
    outgoing         BOOLEAN     NOT NULL,
    state            TEXT        NOT NULL CHECK (state IN ('offered', 'moving', 'complete', 'refused', 'cancelled', 'failed')),
    reason           TEXT        NOT NULL DEFAULT '',
    piece_bytes      INTEGER     NOT NULL CHECK (piece_bytes > 0),
    -- The sender: the path it offered. The recipient: where the offer is
    -- saved (its top-level name, made unique in the download folder).
    local_path       TEXT        NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX transfers_unfinished ON transfers (created_at) WHERE state IN ('offered', 'moving');

-- A completed transfer leaves a line in its conversation (history and
-- search find it): a message whose id is the transfer's, on both sides.
ALTER TABLE messages ADD COLUMN transfer_id UUID;

-- The files of a transfer, in the offer's order. `verified_pieces` is how
-- many pieces the recipient holds verified (on the sender's side, what
-- the recipient last said): where a resume starts.
CREATE TABLE transfer_files (
    transfer_id      UUID        NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
    position         INTEGER     NOT NULL,
    offered_path     TEXT[]      NOT NULL,
    -- The sender: the file it reads. The recipient: where it is saved,
    -- relative to the download folder.
    local_path       TEXT        NOT NULL,
    size             BIGINT      NOT NULL CHECK (size >= 0),
    hash             BYTEA       NOT NULL CHECK (length(hash) = 32),
    pieces_hash      BYTEA       NOT NULL CHECK (length(pieces_hash) = 32),
    -- The piece hashes, 32 bytes each: the sender's from the start, the
    -- recipient's once received and checked against `pieces_hash`.
    piece_hashes     BYTEA,
    verified_pieces  BIGINT      NOT NULL DEFAULT 0,
    -- The sender: the file's modification time when it was hashed; a file
    -- changed since is not sent.
    modified_ns      BIGINT,
    -- The recipient: the offered name had to change to be saved.
    renamed          BOOLEAN     NOT NULL DEFAULT FALSE,
    -- The recipient: the file is verified whole and saved under
    -- `local_path`.
    saved            BOOLEAN     NOT NULL DEFAULT FALSE,
    PRIMARY KEY (transfer_id, position)
);
