-- 0010: which outbox rows carry a safeguarding alert, so a follow-up can tell whether any
-- reached a member of staff (the text itself is gone once sent) and, if none did, tell the
-- person plainly and signpost them again.
ALTER TABLE outbox ADD COLUMN safeguarding_request INTEGER;
CREATE INDEX outbox_by_safeguarding_request ON outbox (safeguarding_request)
    WHERE safeguarding_request IS NOT NULL;
