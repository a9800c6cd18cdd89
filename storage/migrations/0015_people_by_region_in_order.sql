-- 0015: a "you said, we did" update reaches thousands in parts, each the next few hundred
-- of the region's people in pseudonym order. With the pseudonym in this index a part
-- starts where the last one ended and stops when it has enough; before, every part read
-- the whole region and sorted it. Its other readers (a region's reachable people, for
-- broadcasts, panels and check-in rounds) read it as before.
DROP INDEX people_by_region;
CREATE INDEX people_by_region ON people (region, reachable, pseudonym);
