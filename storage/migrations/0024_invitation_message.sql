-- 0024: the Telegram message each panel invitation went out as, so that moving a panel or
-- calling it off can correct the invitation people already have (its new date, or that it
-- is off) rather than leave the old one standing. The outbox row that sent it is pruned
-- after 7 days, and invitations go out weeks ahead, so the message id is kept here.
ALTER TABLE panel_invitations ADD COLUMN message_id INTEGER;
CREATE INDEX panel_invitations_sent ON panel_invitations (panel_id, id)
    WHERE message_id IS NOT NULL;

-- Recorded as the sender marks the invitation sent, whichever way it does (one row or a
-- batch). The invitation's token rides outside the payload's seal (bot/payload_seal.py);
-- only broadcast rows are looked at, so a reply's send does not parse its payload.
CREATE TRIGGER outbox_invitation_sent AFTER UPDATE OF status ON outbox
WHEN NEW.status = 'sent' AND OLD.status = 'pending' AND NEW.message_id IS NOT NULL
    AND OLD.broadcast_id IS NOT NULL AND json_valid(OLD.payload)
    AND json_extract(OLD.payload, '$.invitation') IS NOT NULL
BEGIN
    UPDATE panel_invitations SET message_id = NEW.message_id
    WHERE token = json_extract(OLD.payload, '$.invitation');
END;
