-- The foreign key from messages to conversations cost a quarter of the
-- inbox's batch insert: PostgreSQL checks it row by row (a lookup and a
-- share lock of the conversation's row per message), 14 of 57 ms for 4,000
-- messages. Conversations are never deleted and a message's conversation
-- never changes; every writer takes the conversation's id from its row, and
-- the inbox's batch statement inserts only messages whose conversation
-- exists (a semi-join, one pass for the batch) and fails the batch
-- otherwise, as the key did.
ALTER TABLE messages DROP CONSTRAINT messages_conversation_id_fkey;
