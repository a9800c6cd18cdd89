-- 0029: staff of its area can take an update back (a mistake, or news that changed): it goes
-- to nobody more, /updates no longer lists it, the digest no longer counts it, and the
-- copies people were sent are edited to say it was taken back (their buttons go). For that
-- edit, the Telegram message each delivery went out as is kept here: the outbox row that
-- sent it is pruned after 7 days, so copies of updates sent over a week before this
-- migration cannot be edited (nor copies shown by /updates, which are not recorded).
ALTER TABLE updates ADD COLUMN withdrawn_at INTEGER;
ALTER TABLE update_deliveries ADD COLUMN message_id INTEGER;
CREATE INDEX update_deliveries_sent ON update_deliveries (update_id, pseudonym)
    WHERE message_id IS NOT NULL;

-- Recorded as the sender marks a row of an update's broadcast sent, as 0024 does for panel
-- invitations. The broadcast names the update ('update:<id>'), the chat names the person.
CREATE TRIGGER outbox_update_sent AFTER UPDATE OF status ON outbox
WHEN NEW.status = 'sent' AND OLD.status <> 'sent' AND NEW.message_id IS NOT NULL
    AND NEW.broadcast_id IS NOT NULL AND NEW.kind = 'message'
BEGIN
    UPDATE update_deliveries SET message_id = NEW.message_id
    WHERE (update_id, pseudonym) = (
        SELECT CAST(substr(b.subject, 8) AS INTEGER), p.pseudonym
        FROM broadcasts b JOIN people p ON p.chat_id = NEW.chat_id
        WHERE b.id = NEW.broadcast_id AND b.kind = 'update'
    );
END;

-- Updates that went out before this migration, while the outbox still holds their rows.
UPDATE update_deliveries SET message_id = (
    SELECT o.message_id
    FROM outbox o
    JOIN broadcasts b ON b.id = o.broadcast_id
    JOIN people p ON p.chat_id = o.chat_id
    WHERE b.kind = 'update' AND b.subject = 'update:' || update_deliveries.update_id
      AND p.pseudonym = update_deliveries.pseudonym
      AND o.status = 'sent' AND o.kind = 'message' AND o.message_id IS NOT NULL
    ORDER BY o.id DESC LIMIT 1
);
