-- 0005: broadcasts. A broadcast is a batch of broadcast-priority outbox rows written in one
-- transaction, so it survives a crash whole and resumes where the sender was; replies and
-- safeguarding answers, being more urgent, always overtake it.
CREATE TABLE broadcasts (
    id                  INTEGER PRIMARY KEY,
    kind                TEXT NOT NULL,
    subject             TEXT NOT NULL,
    region              TEXT,
    created_by          TEXT NOT NULL,
    total               INTEGER NOT NULL,
    status              TEXT NOT NULL DEFAULT 'running'
                        CHECK (status IN ('running', 'done', 'cancelled')),
    -- the organiser's progress message: the outbox row that sends it (its Telegram message
    -- id is recorded there once sent), and the chat it is in
    progress_chat_id    INTEGER,
    progress_outbox_id  INTEGER REFERENCES outbox(id) ON DELETE SET NULL,
    created_at          INTEGER NOT NULL,
    finished_at         INTEGER
) STRICT;

ALTER TABLE outbox ADD COLUMN broadcast_id INTEGER REFERENCES broadcasts(id);
CREATE INDEX outbox_by_broadcast ON outbox (broadcast_id, status) WHERE broadcast_id IS NOT NULL;

-- Choosing a region's recipients for a broadcast.
CREATE INDEX people_by_region ON people (region, reachable);
