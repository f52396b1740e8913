-- A sent message may sit in the own data-out more than once: a produce that
-- timed out may still have been written by the broker (the record then has
-- no acknowledged place, but the delivery worker reads it and hands it on),
-- and a message still PENDING at a start is produced again. The contact
-- acknowledges whichever copy it stored, so each copy the daemon knows of
-- keeps its own row, and a receipt range finds its ends among them.
ALTER TABLE awaiting_receipt DROP CONSTRAINT awaiting_receipt_pkey;
ALTER TABLE awaiting_receipt ADD PRIMARY KEY (message_id, outbox_partition, outbox_offset);
