-- 0023: where in its region's pseudonym order each panel starts inviting (places go first
-- come, first served, so the same people must not be first for every panel): a random
-- 32-hex-digit point kept with the panel, so its parts, and a restart between them, walk
-- from the same place. Panels made before this go on from '' (the plain order their
-- invitations already follow): read with a new start, a walk part-way through would skip
-- the rest of its region.
ALTER TABLE panels ADD COLUMN invite_start TEXT NOT NULL DEFAULT '';
