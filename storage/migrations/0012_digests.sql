-- 0012: the weekly digests as they were released. Disclosure control checks every new digest
-- against what was actually published before (a figure whose change since a released value
-- would reveal fewer than k people is hidden), so the released figures are kept exactly as
-- released, never recomputed, and never changed afterwards. They hold no pseudonym, chat id
-- or text written by a person: only counts, means and their "fewer than k" markers.
CREATE TABLE published_digests (
    id            INTEGER PRIMARY KEY,
    -- a region slug, or '' for the national (all regions) view
    region        TEXT NOT NULL,
    -- the ISO week described, e.g. '2026-W47'
    week          TEXT NOT NULL
                  CHECK (week GLOB '[0-9][0-9][0-9][0-9]-W[0-5][0-9]'
                         AND CAST(substr(week, 7) AS INTEGER) BETWEEN 1 AND 53),
    -- the smallest number of people a published figure may describe (never below 5)
    k             INTEGER NOT NULL CHECK (k >= 5),
    -- the digest as released (bot/digest.py's JSON): sections of cells, with suppressed
    -- cells carrying no value, and the sums that link them
    cells         TEXT NOT NULL CHECK (json_valid(cells) AND json_type(cells) = 'object'),
    published_at  INTEGER NOT NULL,
    UNIQUE (region, week)
) STRICT;
-- Every digest near a week (any region: a region's figures also appear in the national view).
CREATE INDEX published_digests_by_week ON published_digests (week);
-- What was released is a fact later digests rely on: it is never edited or removed.
CREATE TRIGGER published_digests_no_update BEFORE UPDATE ON published_digests
BEGIN SELECT RAISE(ABORT, 'published digests are never changed'); END;
CREATE TRIGGER published_digests_no_delete BEFORE DELETE ON published_digests
BEGIN SELECT RAISE(ABORT, 'published digests are never deleted'); END;

-- The national digest reads every region's check-ins of a week (the region index serves
-- one region's digest).
CREATE INDEX checkins_by_week ON checkins (week);
