"""A seeded synthetic world for the weekly digest, and the digest's numbers counted from it
in plain Python.

`generate` invents people across regions and weeks (consents, check-ins with scores, some
finished late or never, free-text answers with keyword and staff themes, a person who
moves, people forgotten, panels with answers and support needs, "you said, we did" updates
delivered and reacted to) and, given a database connection, writes each step through the
real repositories (People, ConsentLedger, Checkins, Answers, Panels, Updates,
erase_person) as it goes; without one it only keeps the record.
Either way every step is kept in memory with its time, so `expected` can count what the
digest should say for any region and week as it stood at any moment, without the digest's
SQL: that is the reference the tests compare against.

Everyone here is invented: pseudonyms are "p-0001"..., the answers' ciphertext is dummy
bytes, and the themes are drawn at random from the taxonomy.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import aiosqlite

from storage.answers import Answers
from storage.checkins import PRINCIPLES, Checkins
from storage.digest_data import (
    ALL,
    NATIONAL,
    REACTIONS,
    SCORE_KEYS,
    Count,
    DigestData,
    Funnel,
    LoopData,
    PanelFigures,
    PanelTotals,
    RaisedTheme,
    WeekData,
    trend_weeks,
    week_bounds,
)
from storage.erasure import erase_person
from storage.panels import Panels
from storage.people import ConsentLedger, People
from storage.updates import Updates

ZONE = "Europe/London"
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
NEEDS = ("travel", "childcare", "interpreter", "access")
COMING = ("yes", "maybe", "waiting")
CHOICES = ("yes", "yes", "maybe", "no", "cancel")
NEVER = 2**62  # the time of something that did not happen
END = NEVER - 1  # after everything that did


@dataclass
class Person:
    pseudonym: str
    chat_id: int
    locale: str
    regions: list[tuple[int, str | None]]  # (since, region)
    feedback: bool
    panels: bool
    erased_at: int = NEVER

    def region_at(self, t: int) -> str | None:
        return [region for since, region in self.regions if since <= t][-1]

    def here(self, t: int) -> bool:
        return self.erased_at > t


@dataclass
class Checkin:
    id: int
    pseudonym: str
    region: str | None
    locale: str
    week: str
    sent_at: int
    started_at: int = NEVER
    completed_at: int = NEVER
    closed_at: int = NEVER
    scores: list[tuple[int, str, int | None]] = field(default_factory=list)

    def scores_at(self, t: int) -> dict[str, int | None]:
        return {p: s for at, p, s in sorted(self.scores, key=lambda e: e[0]) if at <= t}


@dataclass
class Answer:
    id: int
    pseudonym: str
    checkin: Checkin | None
    created_at: int
    tags: list[tuple[int, str, tuple[str, ...], str]] = field(default_factory=list)

    def themes_at(self, t: int) -> set[str]:
        """Replays Checkins.tag_answer / retag_answer; staff tags then replace guesses."""
        rows: dict[str, str] = {}
        for at, action, themes, source in self.tags:
            if at > t:
                continue
            if action == "retag":
                rows = dict.fromkeys(themes, source)
            elif not (source == "keywords" and "staff" in rows.values()):
                for theme in themes:
                    if theme not in rows or source == "staff":
                        rows[theme] = source
        staff = {theme for theme, source in rows.items() if source == "staff"}
        return staff or set(rows)


@dataclass
class Invitation:
    pseudonym: str
    token: str
    invited_at: int
    answers: list[tuple[int, str]] = field(default_factory=list)
    needs: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)

    def answer_at(self, t: int) -> str:
        return ([a for at, a in self.answers if at <= t] or ["invited"])[-1]

    def needs_at(self, t: int) -> tuple[str, ...]:
        return ([n for at, n in self.needs if at <= t] or [()])[-1]


@dataclass
class Panel:
    id: int
    region: str
    title: str
    starts_at: int
    offered: tuple[str, ...]
    created_at: int
    cancelled_at: int = NEVER
    invitations: list[Invitation] = field(default_factory=list)


@dataclass
class Delivery:
    pseudonym: str
    token: str
    reactions: list[tuple[int, str]] = field(default_factory=list)  # (when, reaction)

    def reaction_at(self, t: int) -> str | None:
        done = [r for when, r in self.reactions if when <= t]
        return done[-1] if done else None


@dataclass
class Update:
    id: int
    region: str
    themes: tuple[str, ...]
    published_at: int
    deliveries: list[Delivery] = field(default_factory=list)


@dataclass
class World:
    regions: tuple[str, ...]
    weeks: tuple[str, ...]
    people: dict[str, Person] = field(default_factory=dict)
    checkins: list[Checkin] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)


class _Writer:
    """Does each step through the repositories (when given a connection) and keeps it."""

    def __init__(self, world: World, rng: random.Random, conn: aiosqlite.Connection | None):
        self.w, self.rng, self.conn = world, rng, conn
        self.ids = iter(range(1, 10**9))

    async def person(self, n: int, region: str | None, t: int) -> Person:
        rng = self.rng
        locale = "cy" if rng.random() < (0.5 if region == "wales" else 0.12) else "en"
        p = Person(
            f"p-{n:04d}",
            10_000_000 + n,
            locale,
            [(t, region)],
            rng.random() < 0.9,
            rng.random() < 0.7,
        )
        if self.conn:
            await People(self.conn).touch(p.pseudonym, p.chat_id, locale, t)
            if region:
                await People(self.conn).set_region(p.pseudonym, region, t)
            ledger = ConsentLedger(self.conn)
            await ledger.record(p.pseudonym, "feedback", p.feedback, "v1", t)
            await ledger.record(p.pseudonym, "panel_invitations", p.panels, "v1", t)
        self.w.people[p.pseudonym] = p
        return p

    async def move(self, p: Person, region: str, t: int) -> None:
        p.regions.append((t, region))
        if self.conn:
            await People(self.conn).set_region(p.pseudonym, region, t)

    async def send(self, p: Person, week: str, t: int) -> Checkin:
        region = p.region_at(t)
        if self.conn:
            made = await Checkins(self.conn).create(p.pseudonym, region, p.locale, week, "asked", t)
            number = made.id
        else:
            number = next(self.ids)
        c = Checkin(number, p.pseudonym, region, p.locale, week, t)
        self.w.checkins.append(c)
        return c

    async def score(self, c: Checkin, principle: str, score: int | None, t: int) -> None:
        if self.conn:
            assert await Checkins(self.conn).record_score(c.id, principle, score, t)
        c.scores.append((t, principle, score))
        c.started_at = min(c.started_at, t)

    async def complete(self, c: Checkin, t: int) -> None:
        if self.conn:
            assert await Checkins(self.conn).complete(c.id, t)
        c.started_at = min(c.started_at, t)
        c.completed_at = c.closed_at = t

    async def expire(self, c: Checkin, t: int) -> None:
        if self.conn:
            assert await Checkins(self.conn).expire(c.id, t)
        c.closed_at = t

    async def answer(self, p: Person, c: Checkin | None, t: int) -> Answer:
        if self.conn:
            number = await Answers(self.conn).add(
                p.pseudonym,
                "feedback" if c else "updates",
                "better",
                b"dummy-ciphertext",
                t,
                checkin_id=c.id if c else None,
            )
        else:
            number = next(self.ids)
        a = Answer(number, p.pseudonym, c, t)
        self.w.answers.append(a)
        return a

    async def tag(self, a: Answer, action: str, themes: Sequence[str], source: str, t: int) -> None:
        if self.conn:
            tagging = Checkins(self.conn)
            if action == "retag":
                await tagging.retag_answer(a.id, list(themes), source)
            else:
                await tagging.tag_answer(a.id, list(themes), source)
        a.tags.append((t, action, tuple(themes), source))

    async def erase(self, p: Person, t: int) -> None:
        if self.conn:
            await erase_person(self.conn, p.pseudonym, p.chat_id, t)
        p.erased_at = t

    async def panel(self, region: str, title: str, starts_at: int, t: int) -> Panel:
        offered = tuple(self.rng.sample(NEEDS, self.rng.randint(1, len(NEEDS))))
        capacity = self.rng.randint(3, 15)
        if self.conn:
            number = await Panels(self.conn).create(
                region, title, starts_at, "online", capacity, offered, "staff-0001", t
            )
        else:
            number = next(self.ids)
        panel = Panel(number, region, title, starts_at, offered, t)
        self.w.panels.append(panel)
        return panel

    async def invite(self, panel: Panel, p: Person, t: int) -> Invitation:
        token = f"{len(self.w.people):04d}{next(self.ids):012d}"[-16:]
        if self.conn:
            made = await Panels(self.conn).invite(panel.id, p.pseudonym, t)
            assert made is not None
            token = made
        invitation = Invitation(p.pseudonym, token, t)
        panel.invitations.append(invitation)
        return invitation

    async def respond(self, panel: Panel, invitation: Invitation, choice: str, t: int) -> None:
        if not self.conn:
            now = invitation.answer_at(t)
            after = "cancelled" if choice == "cancel" else choice
            if choice != "cancel" or now in COMING:
                invitation.answers.append((t, after))
            return
        outcome = await Panels(self.conn).respond(invitation.token, choice, t)
        invitation.answers.append((t, outcome.invitation.answer))
        if outcome.promoted is not None:
            promoted = next(i for i in panel.invitations if i.token == outcome.promoted.token)
            promoted.answers.append((t, "yes"))

    async def needs(self, invitation: Invitation, needs: tuple[str, ...], t: int) -> None:
        stored = invitation.answer_at(t) in COMING
        if self.conn:
            assert await Panels(self.conn).set_support_needs(invitation.token, needs) == stored
        if stored:
            invitation.needs.append((t, tuple(sorted(set(needs)))))

    async def publish(self, region: str, themes: Sequence[str], t: int) -> Update:
        if self.conn:
            made = await Updates(self.conn).publish(
                region, "changed", themes, "We changed the office hours.", None, "staff-0001", t
            )
            number = made.id
        else:
            number = next(self.ids)
        update = Update(number, region, tuple(sorted(set(themes))), t)
        self.w.updates.append(update)
        return update

    async def deliver(self, update: Update, p: Person) -> Delivery:
        token = f"{next(self.ids):016d}"
        if self.conn:
            token = await Updates(self.conn).deliver(update.id, p.pseudonym)
        delivery = Delivery(p.pseudonym, token)
        update.deliveries.append(delivery)
        return delivery

    async def react(self, delivery: Delivery, reaction: str, t: int) -> None:
        if self.conn:
            await Updates(self.conn).react(delivery.token, reaction, t)
        delivery.reactions.append((t, reaction))

    async def cancel(self, panel: Panel, t: int) -> None:
        if self.conn:
            await Panels(self.conn).cancel(panel.id, t)
        panel.cancelled_at = t
        for invitation in panel.invitations:
            invitation.needs.append((t, ()))


def _theme_ids() -> tuple[str, ...]:
    from bot.settings import PROJECT_ROOT
    from bot.themes import load_taxonomy

    return load_taxonomy(PROJECT_ROOT / "dialogues" / "themes.yaml").ids


THEMES: tuple[str, ...] = _theme_ids()


async def generate(
    seed: int,
    conn: aiosqlite.Connection | None = None,
    *,
    regions: Sequence[str] = ("london", "wales", "north-east"),
    people_per_region: int = 60,
    unassigned: int = 6,
    weeks: int = 8,
    last_week: str = "2026-W47",
) -> World:
    """A world of `weeks` weeks ending with `last_week`, written through the repositories
    into `conn` (inside the caller's transaction) when given."""
    rng = random.Random(seed)
    week_list = trend_weeks(last_week)[-weeks:]
    world = World(tuple(regions), week_list)
    w = _Writer(world, rng, conn)
    t0 = week_bounds(week_list[0], ZONE)[0] - DAY
    for number in range(len(regions) * people_per_region + unassigned):
        region = (
            regions[number // people_per_region]
            if number < len(regions) * people_per_region
            else None
        )
        await w.person(number + 1, region, t0)
    people = list(world.people.values())
    quiet = [p for p in people if not p.panels]
    forgotten = {p.pseudonym for p in rng.sample(quiet, min(2, len(quiet)))}
    for region in regions:
        await _panels(w, rng, region, last_week, t0)
    still_open: dict[str, Checkin] = {}
    for index, week in enumerate(week_list):
        start = week_bounds(week, ZONE)[0]
        for p in people:
            if not p.here(start):
                continue
            if p.pseudonym in forgotten and index == len(week_list) // 2:
                await w.erase(p, start + 3 * DAY)
                continue
            current = p.region_at(start)
            if current and len(regions) > 1 and rng.random() < 0.03:
                await w.move(p, rng.choice([r for r in regions if r != current]), start + HOUR)
            late = still_open.pop(p.pseudonym, None)
            if late is not None:
                when = start + rng.randint(1, 36) * HOUR
                if rng.random() < 0.4:  # finished late: counted in the week it was sent
                    if late.started_at == NEVER:
                        await w.score(late, "voice", rng.randint(1, 5), when)
                    await w.complete(late, when + MINUTE)
                else:
                    await w.expire(late, when)
            if p.feedback and rng.random() < 0.55:
                sent = start + 2 * DAY + rng.randint(0, 4 * DAY)
                c = await _checkin(w, rng, p, await w.send(p, week, sent), sent)
                if c is not None:
                    still_open[p.pseudonym] = c
            if rng.random() < 0.04:  # free text outside a check-in (a reply to an update)
                written = start + rng.randint(0, 7 * DAY - HOUR)
                await _tags(w, rng, await w.answer(p, None, written), written)
    await _updates(w, random.Random(seed + 1), people, forgotten)
    return world


async def _updates(
    w: _Writer, rng: random.Random, people: list[Person], forgotten: set[str]
) -> None:
    """Now and then, an update in a region about a theme or two, delivered to some of the
    people there and reacted to (sometimes twice: the last reaction counts). Its own random
    stream, so the rest of the world is the same with or without it."""
    for week in w.w.weeks:
        start = week_bounds(week, ZONE)[0]
        for region in w.w.regions:
            if rng.random() < 0.45:
                continue
            t = start + rng.randint(1, 6 * 24) * HOUR
            update = await w.publish(region, rng.sample(THEMES, rng.choice((1, 1, 2))), t)
            for p in people:
                if p.pseudonym in forgotten or p.region_at(t) != region or rng.random() < 0.5:
                    continue
                delivery = await w.deliver(update, p)
                for _ in range(rng.choice((0, 1, 1, 2))):
                    t += rng.randint(1, 30) * MINUTE
                    await w.react(delivery, rng.choice(REACTIONS), t)


async def _checkin(w: _Writer, rng: random.Random, p: Person, c: Checkin, t: int) -> Checkin | None:
    """Answer a check-in as people do; returns it when it is left open."""
    roll = rng.random()
    if roll < 0.05:  # every question skipped at once
        await w.complete(c, t + 5 * MINUTE)
        return None
    if roll > 0.75:  # never opened
        return c
    at = t + 10 * MINUTE
    for principle in PRINCIPLES:
        if rng.random() < 0.07:  # stopped part-way
            return c
        score = None if rng.random() < 0.1 else rng.choices(range(1, 6), (1, 2, 3, 4, 3))[0]
        await w.score(c, principle, score, at)
        at += MINUTE
    if rng.random() < 0.1:  # changed their mind
        await w.score(c, "trust", rng.randint(1, 5), at)
        at += MINUTE
    if rng.random() < 0.45:
        await _tags(w, rng, await w.answer(p, c, at), at)
        at += MINUTE
    if rng.random() < 0.85:
        await w.complete(c, at + rng.randint(0, DAY))
        return None
    return c


async def _tags(w: _Writer, rng: random.Random, a: Answer, t: int) -> None:
    guess = rng.sample(THEMES, rng.choice((0, 1, 1, 2)))
    if guess:
        await w.tag(a, "tag", guess, "keywords", t)
    roll = rng.random()
    if roll < 0.15:  # staff read it and decided what it is about
        await w.tag(a, "retag", rng.sample(THEMES, rng.choice((0, 1, 2))), "staff", t + DAY)
    elif roll < 0.25:  # staff added a theme
        await w.tag(a, "tag", rng.sample(THEMES, 1), "staff", t + DAY)
    if rng.random() < 0.05:  # a later keyword pass (ignored once staff have tagged)
        await w.tag(a, "tag", rng.sample(THEMES, 1), "keywords", t + 2 * DAY)


async def _panels(w: _Writer, rng: random.Random, region: str, last_week: str, t0: int) -> None:
    """A panel already held, one in the digest's week, one later, one called off."""
    start = week_bounds(last_week, ZONE)[0]
    end = start + 7 * DAY
    plans = [
        ("Housing panel", start - 10 * DAY, None),
        ("Voice forum | evening", start + 3 * DAY + 14 * HOUR, None),
        ("Lived experience council", start + 21 * DAY, None),
        ("Travel costs focus group", start + 14 * DAY, end - DAY),
    ]
    for title, starts_at, cancel_at in plans:
        panel = await w.panel(region, title, starts_at, t0)
        invited = [p for p in w.w.people.values() if p.panels and p.region_at(t0) == region]
        for p in invited:
            await w.invite(panel, p, t0 + HOUR)
        last = min(starts_at, cancel_at or NEVER, end) - HOUR
        events = sorted(
            (rng.randint(t0 + 2 * HOUR, last), n, rng.choice(CHOICES))
            for n in range(len(panel.invitations))
            for _ in range(rng.choice((0, 1, 1, 2)))
        )
        for at, n, choice in events:
            await w.respond(panel, panel.invitations[n], choice, at)
        for invitation in panel.invitations:
            if rng.random() < 0.6:
                chosen = tuple(rng.sample(panel.offered, rng.randint(1, len(panel.offered))))
                await w.needs(invitation, chosen, last)
        if cancel_at is not None:
            await w.cancel(panel, cancel_at)


# --- The reference: the digest's numbers counted from the record --------------------------


def _count(items: Sequence[tuple[str, object]]) -> Count:
    """(pseudonym, thing) pairs: how many things, and how many people behind them."""
    return Count(len(items), len({who for who, _ in items}))


def expected(world: World, region: str, week: str, at: int = END) -> DigestData:
    """What storage.digest_data.DigestFigures.read should return for `region` (NATIONAL:
    all) and `week`, as the world stood at `at`."""
    # The national view is the sum of the regions: people with no region are in no digest.
    ours = (lambda r: r is not None) if region == NATIONAL else (lambda r: r == region)
    here = {who for who, p in world.people.items() if p.here(at)}
    weeks = []
    placed = _placed(world, at)
    for wk in trend_weeks(week):
        sent = [c for c in world.checkins if c.week == wk and c.sent_at <= at and ours(c.region)]
        funnel = {
            lang: _funnel([c for c in sent if lang in (ALL, c.locale)], here, at)
            for lang in [*sorted({c.locale for c in sent}), ALL]
        }
        scores: dict[str, dict[str, list[tuple[str, object]]]] = {
            p: {key: [] for key in SCORE_KEYS} for p in PRINCIPLES
        }
        for c in sent:
            if c.started_at <= at and c.pseudonym in here:
                for principle, score in c.scores_at(at).items():
                    keys = [str(score) if score else "skipped", "answered"]
                    keys += ["scored"] if score else []
                    for key in keys:
                        scores[principle][key].append((c.pseudonym, c.id))
        people = {who: themes for (w, who), (r, themes) in placed.items() if w == wk and ours(r)}
        themes: dict[str, int] = {}
        for raised in people.values():
            for theme in raised:
                themes[theme] = themes.get(theme, 0) + 1
        weeks.append(
            WeekData(
                wk,
                funnel,
                {p: {k: _count(v) for k, v in s.items()} for p, s in scores.items()},
                len(people),
                themes,
            )
        )
    start = week_bounds(week, ZONE)[0]
    panels = [
        p
        for p in sorted(world.panels, key=lambda p: (p.starts_at, p.id))
        if ours(p.region) and p.starts_at >= start and p.cancelled_at > at and p.created_at <= at
    ]
    figures, invitations = [], []
    for panel in panels:
        mine = [i for i in panel.invitations if i.invited_at <= at and i.pseudonym in here]
        invitations += mine
        answers = [i.answer_at(at) for i in mine]
        needs: dict[str, int] = {}
        for i in mine:
            for need in i.needs_at(at) if i.answer_at(at) in COMING else ():
                needs[need] = needs.get(need, 0) + 1
        figures.append(
            PanelFigures(
                panel.id,
                panel.title,
                panel.starts_at,
                panel.offered,
                len(mine),
                answers.count("yes"),
                answers.count("maybe"),
                answers.count("waiting"),
                needs,
            )
        )
    by_need: dict[str, list[tuple[str, object]]] = {}
    for i in invitations:
        for need in i.needs_at(at) if i.answer_at(at) in COMING else ():
            by_need.setdefault(need, []).append((i.pseudonym, i.token))
    by_answer = {
        a: _count([(i.pseudonym, i.token) for i in invitations if i.answer_at(at) == a])
        for a in COMING
    }
    totals = PanelTotals(
        _count([(i.pseudonym, i.token) for i in invitations]),
        by_answer["yes"],
        by_answer["maybe"],
        by_answer["waiting"],
        {need: _count(items) for need, items in by_need.items()},
    )
    return DigestData(
        region,
        week,
        tuple(weeks),
        () if region == NATIONAL else tuple(figures),
        totals,
        _loop(world, ours, week, placed, here, at),
    )


def _loop(
    world: World,
    ours: Callable[[str | None], bool],
    week: str,
    placed: dict[tuple[str, str], tuple[str | None, set[str]]],
    here: set[str],
    at: int,
) -> LoopData:
    weeks = trend_weeks(week)
    start = week_bounds(weeks[0], ZONE)[0]
    this_week, end = week_bounds(week, ZONE)
    scope = [
        u for u in world.updates if ours(u.region) and start <= u.published_at < min(end, at + 1)
    ]
    raisers: dict[tuple[str, str], set[str]] = {}
    for (wk, who), (region, themes) in placed.items():
        if wk in weeks and region is not None and ours(region):
            for theme in themes:
                raisers.setdefault((region, theme), set()).add(who)
    raised = tuple(
        RaisedTheme(
            region,
            theme,
            len(who),
            any(u.region == region and theme in u.themes for u in scope),
        )
        for (region, theme), who in sorted(raisers.items())
    )
    deliveries = [d for u in scope for d in u.deliveries if d.pseudonym in here]
    reactions = {"delivered": _count([(d.pseudonym, d.token) for d in deliveries])}
    for reaction in REACTIONS:
        reactions[reaction] = _count(
            [(d.pseudonym, d.token) for d in deliveries if d.reaction_at(at) == reaction]
        )
    return LoopData(sum(u.published_at >= this_week for u in scope), len(scope), raised, reactions)


def _funnel(checkins: Sequence[Checkin], here: set[str], at: int) -> Funnel:
    steps = [
        checkins,
        [c for c in checkins if c.started_at <= at],
        [c for c in checkins if c.completed_at <= at],
    ]
    return Funnel(
        *(Count(len(s), len({c.pseudonym for c in s if c.pseudonym in here})) for s in steps)
    )


def _placed(world: World, at: int) -> dict[tuple[str, str], tuple[str | None, set[str]]]:
    """(week, pseudonym) -> the region of the person's last answer that week, and every
    theme of their answers that week."""
    latest: dict[tuple[str, str], tuple[tuple[int, int], str | None]] = {}
    themes: dict[tuple[str, str], set[str]] = {}
    for a in world.answers:
        p = world.people[a.pseudonym]
        if a.created_at > at or not p.here(at):
            continue
        if a.checkin is not None:
            week, region = a.checkin.week, a.checkin.region
        else:
            week, region = _week_of(a.created_at), p.region_at(at)
        key = (week, a.pseudonym)
        if key not in latest or latest[key][0] < (a.created_at, a.id):
            latest[key] = ((a.created_at, a.id), region)
        themes.setdefault(key, set()).update(a.themes_at(at))
    return {key: (region, themes[key]) for key, (_, region) in latest.items()}


def _week_of(t: int) -> str:
    year, week, _ = datetime.fromtimestamp(t / 1000, ZoneInfo(ZONE)).isocalendar()
    return f"{year}-W{week:02d}"
