-- 0018: a broadcast queued in parts (a check-in round, a panel's invitations, an update's
-- deliveries) names the job that will add its next part. While that job is still to run,
-- the broadcast is not finished even if everything queued so far has gone: before, a part
-- retried after a failure (a minute later) found its broadcast finished and began a new
-- one, without the organiser's progress message or its "Stop sending" button, after the
-- organiser had been told it was done.
ALTER TABLE broadcasts ADD COLUMN next_part_key TEXT;
