-- 0007: feedback check-ins. Four questions scored 1-5, one per procedural-justice principle
-- (voice, respect, neutrality, trust), each skippable, and one optional free-text answer kept
-- encrypted in `answers`. A check-in is created when it is sent: a scheduled round for a
-- region, or the person asking (/feedback).

CREATE TABLE checkins (
    -- never reused after an erasure: jobs are keyed by it
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    pseudonym     TEXT NOT NULL REFERENCES people(pseudonym),
    -- random (secrets.token_hex(8)), carried in the buttons' callback data: a tap names the
    -- check-in without naming the person
    token         TEXT NOT NULL UNIQUE CHECK (length(token) = 16),
    -- the person's region and language when it was sent (region NULL if they had none yet);
    -- kept so that the counts it adds to stay in the same row whatever they change later
    region        TEXT,
    locale        TEXT NOT NULL,
    -- ISO week of sending in Europe/London, e.g. '2026-W48' (computed by the caller)
    week          TEXT NOT NULL
                  CHECK (week GLOB '[0-9][0-9][0-9][0-9]-W[0-5][0-9]'
                         AND CAST(substr(week, 7) AS INTEGER) BETWEEN 1 AND 53),
    source        TEXT NOT NULL CHECK (source IN ('asked', 'scheduled')),
    status        TEXT NOT NULL DEFAULT 'sent'
                  CHECK (status IN ('sent', 'started', 'completed', 'expired')),
    sent_at       INTEGER NOT NULL,
    started_at    INTEGER,
    completed_at  INTEGER,
    -- the one reminder a check-in may get
    nudged_at     INTEGER,
    -- when it stopped taking answers (completed or expired)
    closed_at     INTEGER,
    CHECK ((status IN ('sent', 'started')) = (closed_at IS NULL)),
    CHECK ((status = 'completed') = (completed_at IS NOT NULL)),
    CHECK (status NOT IN ('started', 'completed') OR started_at IS NOT NULL),
    CHECK (status <> 'sent' OR started_at IS NULL)
) STRICT;
-- At most one open check-in per person: answers, the nudge and the free text always belong
-- to one check-in, and a round and a /feedback at the same time cannot count someone twice.
-- Also answers "what is this person's open check-in?".
CREATE UNIQUE INDEX checkins_one_open ON checkins (pseudonym) WHERE status IN ('sent', 'started');
-- The last check-in sent to a person ("never asked again sooner than the interval"), and
-- everything of theirs when they are forgotten.
CREATE INDEX checkins_by_person ON checkins (pseudonym, sent_at);
-- The digest, by region and week.
CREATE INDEX checkins_by_region_week ON checkins (region, week);

-- NULL score: the question was skipped. The latest choice replaces an earlier one.
CREATE TABLE checkin_scores (
    checkin_id   INTEGER NOT NULL REFERENCES checkins(id),
    principle    TEXT NOT NULL CHECK (principle IN ('voice', 'respect', 'neutrality', 'trust')),
    score        INTEGER CHECK (score BETWEEN 1 AND 5),
    answered_at  INTEGER NOT NULL,
    PRIMARY KEY (checkin_id, principle)
) STRICT;

-- Anonymous counters for the digest: they hold no pseudonym, so they survive a person being
-- forgotten while the check-ins themselves are deleted. region '' when it was unknown.
-- A check-in adds to one row only (its own week, region and locale), once per step, so the
-- funnel can never widen.
CREATE TABLE checkin_counts (
    week       TEXT NOT NULL
               CHECK (week GLOB '[0-9][0-9][0-9][0-9]-W[0-5][0-9]'
                      AND CAST(substr(week, 7) AS INTEGER) BETWEEN 1 AND 53),
    region     TEXT NOT NULL,
    locale     TEXT NOT NULL,
    sent       INTEGER NOT NULL DEFAULT 0,
    started    INTEGER NOT NULL DEFAULT 0,
    completed  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (week, region, locale),
    CHECK (0 <= completed AND completed <= started AND started <= sent)
) STRICT;

-- One repeating round per region. created_by is a staff pseudonym or 'cli'.
CREATE TABLE checkin_schedules (
    region      TEXT PRIMARY KEY,
    every_days  INTEGER NOT NULL CHECK (every_days BETWEEN 1 AND 366),
    next_at     INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

-- Themes of a free-text answer: guessed from keywords, or set by staff (whose reading wins).
-- They go with the answer.
CREATE TABLE answer_themes (
    answer_id  INTEGER NOT NULL REFERENCES answers(id) ON DELETE CASCADE,
    theme      TEXT NOT NULL CHECK (theme <> ''),
    source     TEXT NOT NULL DEFAULT 'keywords' CHECK (source IN ('keywords', 'staff')),
    PRIMARY KEY (answer_id, theme)
) STRICT;

-- The check-in a free-text answer was given in (NULL for answers outside check-ins).
ALTER TABLE answers ADD COLUMN checkin_id INTEGER REFERENCES checkins(id);
-- The answer with names and places scrubbed, encrypted by the application; only while the
-- person's latest decision on 'quotes' is a yes.
ALTER TABLE answers ADD COLUMN quote BLOB;
CREATE INDEX answers_by_checkin ON answers (checkin_id);
