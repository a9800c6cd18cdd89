-- 0021: when each person last wrote to the bot, so that retention can erase someone who has
-- no consent granted and has not been heard from for RETENTION_MONTHS (their chat id and
-- pseudonym, which alone say "on probation", are not kept for ever). updated_at could not
-- say it: a person writing again leaves their row alone, and the sender's "blocked" mark
-- changes it without the person doing anything. People.touch sets it, at most once a day per
-- person (a write on every update for a period counted in months would be waste).
-- For people already here it is the latest sign of them the database holds (their row, their
-- dialogue, their last consent decision, their last answer): never earlier than their last
-- act, so the upgrade erases nobody early. Erased people have no row and need none.
ALTER TABLE people ADD COLUMN last_seen_at INTEGER NOT NULL DEFAULT 0;
UPDATE people SET last_seen_at = MAX(
    created_at,
    updated_at,
    COALESCE((SELECT d.updated_at FROM dialogue_sessions d
              WHERE d.pseudonym = people.pseudonym), 0),
    COALESCE((SELECT MAX(c.recorded_at) FROM consent_ledger c
              WHERE c.pseudonym = people.pseudonym), 0),
    COALESCE((SELECT MAX(a.created_at) FROM answers a
              WHERE a.pseudonym = people.pseudonym), 0)
);
-- Retention reads the longest-silent first, in parts, and stops at the cutoff; the rowid
-- (in every index entry) orders people seen at the same moment.
CREATE INDEX people_by_last_seen ON people (last_seen_at);
