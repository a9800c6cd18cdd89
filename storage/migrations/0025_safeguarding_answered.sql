-- 0025: when the duty staff first wrote to a person who asked for contact. The person was
-- told "someone will write to you here"; a request still unanswered some hours on is
-- raised again with the duty staff and the admins (bot/safety.py, on_unanswered).
ALTER TABLE safeguarding_requests ADD COLUMN answered_at INTEGER;
