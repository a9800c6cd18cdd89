-- 0008: safeguarding requests. When a message signals danger the bot signposts help at once
-- and asks whether the person wants someone from probation to contact them. This row holds
-- only what is needed to act on that answer: never the person's words.
CREATE TABLE safeguarding_requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- SG-<id> is never reused
    token       TEXT NOT NULL UNIQUE CHECK (length(token) = 16),  -- in the buttons' data
    pseudonym   TEXT NOT NULL REFERENCES people(pseudonym),
    region      TEXT,
    category    TEXT NOT NULL
                CHECK (category IN ('suicide', 'self_harm', 'harm_to_others', 'immediate_danger')),
    status      TEXT NOT NULL DEFAULT 'asked'
                CHECK (status IN ('asked', 'declined', 'alerted', 'no_one_reached')),
    created_at  INTEGER NOT NULL,
    decided_at  INTEGER
) STRICT;
CREATE INDEX safeguarding_by_person ON safeguarding_requests (pseudonym, id);
