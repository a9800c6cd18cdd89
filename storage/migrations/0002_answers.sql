-- 0002: free-text answers, stored only with the feedback consent, encrypted by the
-- application before they reach this table (the key lives in the secrets file, not here).
CREATE TABLE answers (
    id          INTEGER PRIMARY KEY,
    pseudonym   TEXT NOT NULL REFERENCES people(pseudonym),
    dialogue    TEXT NOT NULL,
    question    TEXT NOT NULL,
    ciphertext  BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX answers_by_person ON answers (pseudonym, id);
