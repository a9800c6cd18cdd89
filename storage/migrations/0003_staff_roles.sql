-- 0003: staff roles, the audit log of privileged actions, one-time staff invites.
-- Anyone without a row in staff_roles is a participant. Times are integer milliseconds.

-- Who may do more than take part. Keyed by pseudonym but deliberately not a foreign key to
-- people: a staff member may be granted a role before they ever write to the bot.
-- Staff and managers hold one row per region; admins are not tied to a region (NULL).
-- The region list repeats state_machines.definition.REGION_SLUGS because storage may not
-- import the engine; a new region needs a new migration anyway.
CREATE TABLE staff_roles (
    id            INTEGER PRIMARY KEY,
    pseudonym     TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('staff', 'manager', 'admin')),
    region        TEXT CHECK (region IN (
                      'north-east', 'north-west', 'greater-manchester', 'yorkshire-humber',
                      'wales', 'west-midlands', 'east-midlands', 'east-of-england', 'london',
                      'kent-surrey-sussex', 'south-west', 'south-central')),
    -- The safeguarding duty (being told first about a risk) belongs to staff only.
    safeguarding  INTEGER NOT NULL DEFAULT 0 CHECK (safeguarding IN (0, 1)),
    granted_at    INTEGER NOT NULL,
    granted_by    TEXT NOT NULL,
    CHECK ((role = 'admin') = (region IS NULL)),
    CHECK (safeguarding = 0 OR role = 'staff')
) STRICT;
-- One grant per person, role and region, so granting twice changes nothing. COALESCE because
-- a unique index treats NULLs as distinct, and admin grants have a NULL region.
CREATE UNIQUE INDEX staff_roles_one_grant ON staff_roles (pseudonym, role, COALESCE(region, ''));
-- "Who are the managers / the safeguarding leads of this region?"
CREATE INDEX staff_roles_by_region ON staff_roles (region, role);

-- Every privileged action, for accountability. Append-only, like the consent ledger: a log
-- that its subjects could edit would prove nothing. `actor` is a pseudonym or 'cli'; details
-- are short facts as a JSON object of strings, never what anybody wrote (hence the cap).
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    details      TEXT NOT NULL DEFAULT '{}'
                 CHECK (json_valid(details) AND json_type(details) = 'object'
                        AND length(details) <= 2000),
    recorded_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX audit_log_by_target ON audit_log (target, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- One-time invite links for staff. Only a keyed hash of the code is kept, so a copied
-- database cannot be used to join as staff. An invite is used once: used_at and used_by are
-- set together, by a single UPDATE that also checks expiry.
CREATE TABLE staff_invites (
    code_hash     TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('staff', 'manager', 'admin')),
    region        TEXT CHECK (region IN (
                      'north-east', 'north-west', 'greater-manchester', 'yorkshire-humber',
                      'wales', 'west-midlands', 'east-midlands', 'east-of-england', 'london',
                      'kent-surrey-sussex', 'south-west', 'south-central')),
    safeguarding  INTEGER NOT NULL DEFAULT 0 CHECK (safeguarding IN (0, 1)),
    -- Who made the invite (pseudonym or 'cli'): becomes granted_by of the role it grants.
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL CHECK (expires_at > created_at),
    used_at       INTEGER,
    used_by       TEXT,
    CHECK ((role = 'admin') = (region IS NULL)),
    CHECK (safeguarding = 0 OR role = 'staff'),
    CHECK ((used_at IS NULL) = (used_by IS NULL))
) STRICT;
