-- Where a sent message sits in the own data-out once the broker acknowledged
-- it. A message still QUEUED below its partition's earliest offset expired
-- from data-out before it could be delivered (its contact was unreachable
-- longer than the topic's retention); kircd produces it again from the
-- envelope kept here.
ALTER TABLE messages ADD COLUMN outbox_partition INTEGER, ADD COLUMN outbox_offset BIGINT;
CREATE INDEX messages_queued_in_outbox ON messages (outbox_partition, outbox_offset)
    WHERE state = 'queued';
