-- A muted conversation notifies no one (no bell, no desktop notice) but
-- keeps its unread count; every client of the daemon sees it muted.
ALTER TABLE conversations ADD COLUMN muted BOOLEAN NOT NULL DEFAULT FALSE;
