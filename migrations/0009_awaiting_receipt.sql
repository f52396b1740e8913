-- Sent messages that no receipt has covered yet, by their place in the own
-- data-out. A receipt range names the first and last message of a run the
-- contact stored; the delivery worker hands a partition's records on one at
-- a time in offset order, so the messages between those two in the
-- contact's inbox are the rows of the same conversation and partition whose
-- offsets lie between theirs. The rows live apart from `messages` so that
-- this lookup has an index without taking the in-place (heap-only) path
-- from the updates of `messages` (see 0007); a row goes when a receipt
-- covers its message.
CREATE TABLE awaiting_receipt (
    message_id       UUID    PRIMARY KEY,
    conversation_id  UUID    NOT NULL,
    outbox_partition INTEGER NOT NULL,
    outbox_offset    BIGINT  NOT NULL
);
CREATE INDEX awaiting_receipt_place
    ON awaiting_receipt (conversation_id, outbox_partition, outbox_offset);

INSERT INTO awaiting_receipt (message_id, conversation_id, outbox_partition, outbox_offset)
SELECT id, conversation_id, outbox_partition, outbox_offset
FROM messages
WHERE outgoing AND state IN ('queued', 'delivered') AND outbox_partition IS NOT NULL;
