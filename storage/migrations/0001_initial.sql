-- 0001: people, the consent ledger, dialogue sessions, the inbox, the outbox, schedules.
-- Times are integer milliseconds since the Unix epoch (UTC), from the application clock.

-- A person is known by a keyed-hash pseudonym. chat_id is kept only because a message
-- cannot be sent without it; no name, phone number or case reference is ever stored.
CREATE TABLE people (
    pseudonym   TEXT PRIMARY KEY,
    chat_id     INTEGER NOT NULL UNIQUE,
    locale      TEXT NOT NULL,
    region      TEXT,
    reachable   INTEGER NOT NULL DEFAULT 1 CHECK (reachable IN (0, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

-- Append-only: every decision is a new row; the latest row per purpose is the current state.
CREATE TABLE consent_ledger (
    id              INTEGER PRIMARY KEY,
    pseudonym       TEXT NOT NULL REFERENCES people(pseudonym),
    purpose         TEXT NOT NULL
                    CHECK (purpose IN ('feedback', 'panel_invitations', 'updates', 'quotes')),
    granted         INTEGER NOT NULL CHECK (granted IN (0, 1)),
    notice_version  TEXT NOT NULL,
    recorded_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX consent_ledger_by_person ON consent_ledger (pseudonym, purpose, id);
CREATE TRIGGER consent_ledger_no_update BEFORE UPDATE ON consent_ledger
BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
CREATE TRIGGER consent_ledger_no_delete BEFORE DELETE ON consent_ledger
BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;

-- Where each person is in the dialogues (state_machines.session.Session as JSON).
CREATE TABLE dialogue_sessions (
    pseudonym   TEXT PRIMARY KEY REFERENCES people(pseudonym),
    session     TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

-- Every update received, written before Telegram is allowed to forget it. The payload is
-- encrypted by the application (it may hold what a person wrote) and cleared once handled;
-- the id stays for de-duplication (ids are not monotonic).
CREATE TABLE inbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    update_id    INTEGER NOT NULL UNIQUE,
    payload      BLOB,
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'handled', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    received_at  INTEGER NOT NULL,
    handled_at   INTEGER
) STRICT;
CREATE INDEX inbox_pending ON inbox (seq) WHERE status = 'pending';
CREATE INDEX inbox_by_age ON inbox (received_at) WHERE status <> 'pending';

-- Messages to send. priority: 0 safeguarding, 1 replies, 2 broadcasts (lower goes first).
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY,
    chat_id       INTEGER NOT NULL,
    priority      INTEGER NOT NULL CHECK (priority IN (0, 1, 2)),
    kind          TEXT NOT NULL CHECK (kind IN ('message', 'edit', 'leave')),
    payload       TEXT,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    sent_at       INTEGER,
    message_id    INTEGER,
    last_error    TEXT
) STRICT;
CREATE INDEX outbox_pending ON outbox (priority, id) WHERE status = 'pending';
CREATE INDEX outbox_by_chat ON outbox (chat_id) WHERE status = 'pending';
CREATE INDEX outbox_waiting ON outbox (not_before) WHERE status = 'pending';

-- Jobs due at a time (reminders, nudges, digests, housekeeping). `key` makes scheduling
-- idempotent: the same job is never scheduled twice.
CREATE TABLE schedules (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL UNIQUE,
    due_at      INTEGER NOT NULL,
    payload     TEXT NOT NULL DEFAULT '{}',
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    done_at     INTEGER
) STRICT;
CREATE INDEX schedules_due ON schedules (due_at) WHERE status = 'pending';

-- Small named values, e.g. the getUpdates offset.
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) STRICT;
