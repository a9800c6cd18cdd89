-- 0022: a version for each outbox row, moved on when a queued message is written again (a
-- panel moved while its invitations go out: storage.queues.Outbox.rewrite_pending). The
-- sender records a send as done only for the version it sent: one written again while it
-- was on its way stays pending, and its new words go too (the person gets both, the second
-- right), rather than the old date standing with nothing to correct it.
ALTER TABLE outbox ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
