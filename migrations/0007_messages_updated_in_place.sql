-- A sent message's state (pending → queued → delivered → received → read) and
-- its place in the outbox are written after the message is stored: four to
-- five updates per message. While any index names one of those columns, as a
-- key or in a partial index's condition, each update writes a new version of
-- the row into every index of the table, the full-text GIN index included;
-- with none, PostgreSQL updates the row in place (a heap-only update) and the
-- indexes are left alone. The two indexes below named them; the queries they
-- served (messages still PENDING, at start; messages QUEUED below the outbox's
-- low watermark, every `messaging.outbox_check_interval`) scan the table
-- instead, which is rarer by far than the updates they cost.
DROP INDEX messages_unsent;
DROP INDEX messages_queued_in_outbox;

-- Room on each page for the new version of an updated row, which a heap-only
-- update needs on the same page. Pages written from now on get it.
ALTER TABLE messages SET (fillfactor = 80);
