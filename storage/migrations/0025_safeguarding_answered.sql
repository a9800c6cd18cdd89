-- 0025: when the duty staff first wrote to a person who asked for contact, and when the
-- person shared a phone number with them. The person was told "someone will write to you
-- here"; a request still unanswered some hours on is raised again with the duty staff and
-- the admins (bot/safety.py, on_unanswered), and the person is told only when nothing
-- else could have reached them (no number shared: staff may have phoned).
ALTER TABLE safeguarding_requests ADD COLUMN answered_at INTEGER;
ALTER TABLE safeguarding_requests ADD COLUMN number_shared_at INTEGER;
