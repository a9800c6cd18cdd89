-- 0017: who raised a theme lately (a "you said, we did" update's people) asks, for each
-- person of a region, whether they gave a tagged answer in the last 12 weeks. On
-- (pseudonym, id) that read every answer the person ever gave: with 100 older answers
-- each, publishing to a theme few had raised held the database lock 0.59 s at 20,000
-- people, and grew with every week of answers. On (pseudonym, created_at) it reads only
-- the weeks asked about. Its other readers find a person's answers through it as before
-- (an erasure; /mydata, which now sorts that one person's answers by id itself).
DROP INDEX answers_by_person;
CREATE INDEX answers_by_person ON answers (pseudonym, created_at);
