-- 0024: the Telegram message each panel invitation went out as, and when, so that moving a
-- panel or calling it off can correct the invitation people already have (its new date, or
-- that it is off) rather than leave the old one standing. The outbox row that sent it is
-- pruned after 7 days, and invitations go out weeks ahead, so both are kept here (until
-- the panel is over: storage.panels.Panels.mark_over).
ALTER TABLE panel_invitations ADD COLUMN message_id INTEGER;
ALTER TABLE panel_invitations ADD COLUMN sent_at INTEGER;
CREATE INDEX panel_invitations_sent ON panel_invitations (panel_id, id)
    WHERE message_id IS NOT NULL;

-- Recorded as the sender marks a row of a panel's invitation broadcast sent, whichever way
-- it does (one row or a batch; also a row the organiser stopped while it was on its way,
-- which Telegram delivered all the same). The broadcast names the panel ('panel:<id>') and
-- the chat names the person: one invitation each per panel.
CREATE TRIGGER outbox_invitation_sent AFTER UPDATE OF status ON outbox
WHEN NEW.status = 'sent' AND OLD.status <> 'sent' AND NEW.message_id IS NOT NULL
    AND NEW.broadcast_id IS NOT NULL AND NEW.kind = 'message'
BEGIN
    UPDATE panel_invitations SET message_id = NEW.message_id, sent_at = NEW.sent_at
    WHERE (panel_id, pseudonym) = (
        SELECT CAST(substr(b.subject, 7) AS INTEGER), p.pseudonym
        FROM broadcasts b JOIN people p ON p.chat_id = NEW.chat_id
        WHERE b.id = NEW.broadcast_id AND b.kind = 'panel_invitation'
    );
END;

-- Invitations to panels still open that went out before this migration, while the outbox
-- still holds their rows (a week).
UPDATE panel_invitations SET (message_id, sent_at) = (
    SELECT o.message_id, o.sent_at
    FROM outbox o
    JOIN broadcasts b ON b.id = o.broadcast_id
    JOIN people p ON p.chat_id = o.chat_id
    WHERE b.kind = 'panel_invitation' AND b.subject = 'panel:' || panel_invitations.panel_id
      AND p.pseudonym = panel_invitations.pseudonym
      AND o.status = 'sent' AND o.kind = 'message' AND o.message_id IS NOT NULL
    ORDER BY o.id DESC LIMIT 1
)
WHERE panel_id IN (SELECT id FROM panels WHERE status = 'open');
