-- The public profile last sent to contacts (without its timestamp), so that
-- kircd notices a change (a new address, credential or name) at start and
-- sends the new profile to every contact.
ALTER TABLE profile ADD COLUMN published_profile BYTEA;
