-- 0020: a region's rounds keep their time of day on the local clock (TIMEZONE, Europe/London
-- by default). Each next round used to be the last plus N x 24 hours: a round set for 10:00
-- in October ran at 09:00 once the clocks went back, and at 11:00 after they went forward.
-- The next round is now N days on in the local calendar at local_time_ms, the wall-clock
-- time of day in ms after local midnight (10:00 = 36000000). It is kept, not read again from
-- next_at, because a round whose time did not exist that day (01:30 on the night the clocks
-- go forward) runs an hour later, and read back from that it would stay an hour late.
-- NULL for schedules made before this one: the next round takes it from next_at, in the
-- zone, and keeps it.
ALTER TABLE checkin_schedules ADD COLUMN local_time_ms INTEGER
    CHECK (local_time_ms BETWEEN 0 AND 86399999);
