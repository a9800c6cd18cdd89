-- 0004: single-use enrolment codes that probation staff print as QR posters. Tapping one binds
-- a new person to the code's region during onboarding.

-- Only a keyed hash (HMAC-SHA256, hex) of each code is kept: a copied database cannot be
-- turned back into working codes without the key in the secrets file. The CHECK refuses
-- anything that is not 64 hex characters, so a plain code can never be stored by mistake.
-- Who redeemed a code is deliberately not recorded: the region is all onboarding needs, and
-- a link from a person to a batch (an office, a date) would say more about them than that.
CREATE TABLE enrolment_codes (
    code_hash   TEXT PRIMARY KEY
                CHECK (length(code_hash) = 64 AND code_hash NOT GLOB '*[^0-9a-f]*'),
    region      TEXT NOT NULL,
    batch       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL CHECK (expires_at > created_at),
    -- NULL until redeemed; set by the same UPDATE that checks it, so a code works once.
    used_at     INTEGER
) STRICT, WITHOUT ROWID;

-- Staff ask how a printed batch is doing (how many used, how many expired).
CREATE INDEX enrolment_codes_by_batch ON enrolment_codes (batch);
