-- 0012: "you said, we did" updates. An update answers one or more themes in a region; it
-- is delivered to the people who raised them (and want updates), and their reactions are
-- kept per delivery. The published text is staff's words, not a person's.
CREATE TABLE updates (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    region        TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('changed', 'working', 'cannot')),
    themes        TEXT NOT NULL CHECK (json_valid(themes) AND json_type(themes) = 'array'),
    text_en       TEXT NOT NULL,
    text_cy       TEXT,
    published_by  TEXT NOT NULL,
    published_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX updates_by_region ON updates (region, published_at);

CREATE TABLE update_deliveries (
    update_id   INTEGER NOT NULL REFERENCES updates(id),
    pseudonym   TEXT NOT NULL REFERENCES people(pseudonym),
    token       TEXT NOT NULL UNIQUE CHECK (length(token) = 16),
    reaction    TEXT CHECK (reaction IN ('helps', 'not_helps', 'more')),
    reacted_at  INTEGER,
    PRIMARY KEY (update_id, pseudonym)
) STRICT;
CREATE INDEX update_deliveries_by_person ON update_deliveries (pseudonym);

-- Who raised a theme lately: answers by time, for the update's recipients.
CREATE INDEX answers_by_time ON answers (created_at);
