-- 0018: broadcasts queued in parts (a check-in round, a panel's invitations, an update's
-- deliveries: a whole region in one transaction would hold the database lock for seconds).
--
-- next_part_key names the job that will add the broadcast's next part. While that job is
-- still to run, the broadcast is not finished even if everything queued so far has gone:
-- before, a part retried after a failure (a minute later) found its broadcast finished and
-- began a new one, without the organiser's progress message or its "Stop sending" button,
-- after the organiser had been told it was done.
ALTER TABLE broadcasts ADD COLUMN next_part_key TEXT;
-- A broadcast running at the upgrade, with a part still to come, waits for it too.
UPDATE broadcasts SET next_part_key = (
    SELECT key FROM schedules
    WHERE status = 'pending' AND kind IN ('checkin_round', 'panel_invite', 'update_deliver')
      AND json_extract(payload, '$.broadcast') = broadcasts.id
    ORDER BY id DESC LIMIT 1
) WHERE status = 'running';
-- expected is how many people the whole broadcast is for, when its first transaction knows
-- (a panel's, an update's: the organiser is told that number); total counts the messages
-- queued so far. The organiser's progress reads "200 of 5,000", not "200 of 200".
ALTER TABLE broadcasts ADD COLUMN expected INTEGER;
