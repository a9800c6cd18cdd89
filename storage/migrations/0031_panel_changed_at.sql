-- 0031: when a panel's date and its place last changed (NULL: never, or before this
-- migration). The corrections of one change stop once another follows (the later one
-- corrects every invitation sent before it), and each invitation corrected says what
-- changed since it was sent: the time, the place, or both.
ALTER TABLE panels ADD COLUMN moved_at INTEGER;
ALTER TABLE panels ADD COLUMN place_changed_at INTEGER;
