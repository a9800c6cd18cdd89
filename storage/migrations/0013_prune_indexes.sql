-- 0013: the daily housekeeping deletes a day's finished outbox rows (hundreds of thousands
-- at national scale). broadcasts.progress_outbox_id refers to outbox rows ON DELETE SET
-- NULL, so for every deleted outbox row SQLite looks for broadcasts pointing at it: without
-- this index, a scan of every broadcast ever made, per row (50,000 rows against 3,000
-- broadcasts: 27 s with the one database lock held; 0.3 s with it).
CREATE INDEX broadcasts_by_progress_message ON broadcasts (progress_outbox_id);
