-- 0019: a check-in round goes through its region in parts, in pseudonym order. Each part
-- used to start from the beginning of the region and step past everyone already asked
-- (three index probes each): the walk grew with every part, a round's last parts took
-- half as long again as its first (20,000 people). round_after is the last person the round
-- under way has asked, where its next part begins; NULL between rounds. Erasing that person
-- clears it (the next part then starts from the beginning, skipping those asked).
ALTER TABLE checkin_schedules ADD COLUMN round_after TEXT;
CREATE INDEX checkin_schedules_by_round_after ON checkin_schedules (round_after)
    WHERE round_after IS NOT NULL;
