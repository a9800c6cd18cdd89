-- 0030: when the edit of a taken-back update's copy was queued (bot/updates.py): a later
-- pass edits only the copies not edited yet.
ALTER TABLE update_deliveries ADD COLUMN edited_at INTEGER;
