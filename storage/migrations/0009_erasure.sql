-- 0009: erasure ("/delete"). A person's rows are deleted everywhere; one tombstone row
-- remains to prove it happened (and when). The consent ledger stays append-only except for
-- the rows of a person with a tombstone.
CREATE TABLE erasures (
    id          INTEGER PRIMARY KEY,
    pseudonym   TEXT NOT NULL,
    erased_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX erasures_by_person ON erasures (pseudonym);

DROP TRIGGER consent_ledger_no_delete;
CREATE TRIGGER consent_ledger_no_delete BEFORE DELETE ON consent_ledger
WHEN NOT EXISTS (SELECT 1 FROM erasures WHERE pseudonym = OLD.pseudonym)
BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only (except for an erased person)'); END;
