-- 0016: housekeeping forgets jobs done over a month ago. Without an index it read every
-- finished job to find them: 170 ms of the database lock at 1,000,000 jobs (a month of
-- nudges, expiries and progress ticks at national scale) even when none was old enough.
CREATE INDEX schedules_done ON schedules (done_at) WHERE status = 'done';
