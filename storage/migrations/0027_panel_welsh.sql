-- 0027: a panel's title and place in Welsh, shown to those who read Welsh (NULL: not given,
-- the English is shown). Welsh is a legal expectation in Wales: a panel there is not sent
-- without its Welsh title (bot/panels.py), as an update there is not sent without its
-- Welsh text.
ALTER TABLE panels ADD COLUMN title_cy TEXT;
ALTER TABLE panels ADD COLUMN place_cy TEXT;
