-- 0006: panels and the invitations to them, with RSVP, a waiting list and door tickets.
-- A panel has a fixed number of places. Only an answer of 'yes' holds one (and a ticket);
-- when the panel is full a 'yes' joins the waiting list instead, and the first person on it
-- is moved up whenever someone gives a place back.
CREATE TABLE panels (
    id               INTEGER PRIMARY KEY,
    region           TEXT NOT NULL,
    title            TEXT NOT NULL,
    starts_at        INTEGER NOT NULL,
    -- an address, or 'online'
    place            TEXT NOT NULL,
    capacity         INTEGER NOT NULL CHECK (capacity > 0),
    -- the support on offer (travel, childcare...) as a JSON list of need ids
    support_offered  TEXT NOT NULL
                     CHECK (json_valid(support_offered) AND json_type(support_offered) = 'array'),
    -- pseudonym of the staff member who created it
    organiser        TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cancelled', 'over')),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
-- "What is coming up in my regions?", soonest first. status leads so that the all-regions
-- question (status = 'open' only) can use the index too.
CREATE INDEX panels_upcoming ON panels (status, region, starts_at);

CREATE TABLE panel_invitations (
    id             INTEGER PRIMARY KEY,
    panel_id       INTEGER NOT NULL REFERENCES panels(id),
    pseudonym      TEXT NOT NULL REFERENCES people(pseudonym),
    -- random, carried in the buttons' callback data: a tap names the invitation without
    -- naming the person or the panel
    token          TEXT NOT NULL UNIQUE CHECK (length(token) = 16),
    answer         TEXT NOT NULL DEFAULT 'invited'
                   CHECK (answer IN ('invited', 'yes', 'maybe', 'no', 'waiting', 'cancelled')),
    -- the door code, shown as 'ABC-DEF'; held exactly while the answer is 'yes', so a place
    -- given back can never leave a second valid code behind
    ticket         TEXT CHECK (ticket IS NULL OR length(ticket) = 7),
    -- what the person needs to be able to come, as a JSON list of need ids. It can say a lot
    -- about someone's life, so it goes when they stop coming and once the panel is over.
    support_needs  TEXT CHECK (support_needs IS NULL
                               OR (json_valid(support_needs)
                                   AND json_type(support_needs) = 'array')),
    invited_at     INTEGER NOT NULL,
    -- when the current answer was given: the waiting list is served in this order
    answered_at    INTEGER,
    UNIQUE (panel_id, pseudonym),
    UNIQUE (panel_id, ticket),
    CHECK ((answer = 'yes') = (ticket IS NOT NULL)),
    CHECK ((answer = 'invited') = (answered_at IS NULL))
) STRICT;
-- Counting places, serving the waiting list in order, choosing whom to remind.
CREATE INDEX panel_invitations_by_answer ON panel_invitations (panel_id, answer, answered_at);
-- A person's invitations (what am I going to? forgetting someone).
CREATE INDEX panel_invitations_by_person ON panel_invitations (pseudonym);
