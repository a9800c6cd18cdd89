-- 0028: which of a person's support needs for a panel its organiser has been told of, as a
-- JSON list (NULL: none). Help the panel does not offer is passed to the organiser when the
-- person taps Done, once per need (bot/rsvp.py); it goes with the needs themselves (when the
-- panel has happened, or the person stops thinking of coming) and with the row on erasure.
ALTER TABLE panel_invitations ADD COLUMN needs_told TEXT;
