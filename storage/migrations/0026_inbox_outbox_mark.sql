-- 0026: the highest outbox id when an update was stored. A reply queued for the chat after
-- that (a row with a higher id) was sent after the person wrote: a button's words typed
-- before its question reached them ("yes" three times with no signal, arriving together)
-- are not taken as its tap (bot/conversation.py, _read_text). NULL for updates stored
-- before this column: nothing is known, and nothing is refused.
ALTER TABLE inbox ADD COLUMN outbox_mark INTEGER;
