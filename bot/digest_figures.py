"""The digest's figures, the sums that link them, and where each digest shows them.

Every number a digest may show becomes a Figure with a name that means the same thing in
every digest and every week, so a later digest can be checked against what was released.
So do the numbers no digest shows but any reader can work out (sent minus started: those
who never started), because disclosure control has to see them to protect the shown ones.

  f/<week>/<region>/<language or *>/<sent|started|completed|not_started|abandoned|rate>
  s/<week>/<region>/<principle>/<1..5|skipped|scored|answered|not_reached|sum|mean|change>
  t/<week>/<region>/<_people or theme>[/without]
  pt/<region>/<invited|yes|maybe|waiting|other|coming|need/<need>[/without]>@<week>
  p/<region>/<panel's number in the database>/<invited|yes|maybe|waiting|other>@<week>
  ur/<region>/<delivered|helps|not_helps|more|none>@<week>   (reactions to updates)

<region> is a slug, 'national', or 'unassigned' (national minus the regions: people with no
region yet). Panels and the reactions to the trend weeks' updates are a state that keeps
changing: their figures carry the digest's week, and are compared with earlier digests by
the name without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.digest_disclosure import COUNT, DERIVED, MEAN, PART, SCORE_SUM, Figure, Sum
from bot.enrolment import REGION_NAMES
from bot.panel_texts import SUPPORT_NEEDS
from state_machines.definition import REGION_SLUGS
from storage.digest_data import (
    ALL,
    NATIONAL,
    PRINCIPLES,
    REACTIONS,
    SCORE_KEYS,
    Count,
    DigestData,
)

NATION, UNASSIGNED = "national", "unassigned"
PEOPLE = "_people"  # the themes row of everyone who wrote an answer
Number = int | float

LOCALE_NAMES = {"en": "English", "cy": "Welsh (Cymraeg)"}
PRINCIPLE_NAMES = {
    "voice": "Voice: I had a say",
    "respect": "Respect: I was treated with respect",
    "neutrality": "Neutrality: decisions were fair and explained",
    "trust": "Trust: my practitioner does what they say",
}
STEPS = ("sent", "started", "completed")
FUNNEL_COLUMNS = (*STEPS, "response rate")
SCORE_COLUMNS = (*SCORE_KEYS, "mean", "change on last week")
PANEL_COLUMNS = ("invited", "yes", "maybe", "waiting")
REACTION_COLUMNS = ("delivered", "this helps", "it doesn't help", "wrote back")
_REACTION_OF = dict(zip(REACTION_COLUMNS, ("delivered", *REACTIONS), strict=True))
_ZERO = Count(0, 0)


# The help people can ask for, as the panel dialogues name it (the digest is in English).
NEED_NAMES = {
    "travel": "Travel costs",
    "childcare": "Childcare",
    "interpreter": "Interpreter",
    "access": "Step-free access",
}


@dataclass
class PlanRow:
    key: str
    label: str
    cells: list[tuple[str, str]]  # (column, figure id)


@dataclass
class Plan:
    """A section before disclosure control: which figure goes in which cell."""

    id: str
    title: str
    columns: tuple[str, ...]
    rows: list[PlanRow]
    ranked: bool = False  # rows after the first are ordered by their published values


def is_state(series: str) -> bool:
    """Whether a figure describes a state that keeps changing (a panel's answers), not a
    past week."""
    return series.startswith(("p/", "pt/", "ur/"))


def is_empty(data: DigestData) -> bool:
    """Whether nothing at all happened in the region over the digest's weeks."""
    weeks_empty = all(
        w.answered == 0
        and not w.themes
        and all(getattr(f, s).value == 0 for f in w.funnel.values() for s in STEPS)
        and all(c.value == 0 for by_key in w.scores.values() for c in by_key.values())
        for w in data.weeks
    )
    loop = data.loop
    return (
        weeks_empty
        and not data.panels
        and data.panel_totals.invited.value == 0
        and loop.published_trend == 0
        and not loop.raised
        and loop.reactions["delivered"].value == 0
    )


def region_name(region: str) -> str:
    return "England and Wales" if region == NATIONAL else REGION_NAMES.get(region, region)


class FigureModel:
    """The figures and sums of the digests of one week, for every region given at once."""

    def __init__(
        self, week: str, themes: Mapping[str, str], data: Mapping[str, DigestData]
    ) -> None:
        self.week = week
        self.figures: dict[str, Figure] = {}
        self.sums: list[Sum] = []
        self._ids: dict[tuple[tuple[str, ...], str], str] = {}
        # The same rows in every digest, whoever has data: a missing row would say "none".
        every = list(data.values())
        seen = {lang for d in every for w in d.weeks for lang in w.funnel} - {ALL}
        self.locales = sorted(set(LOCALE_NAMES) | seen)
        found = {t for d in every for w in d.weeks for t in w.themes}
        self.themes = {**themes, **{t: t for t in sorted(found - set(themes))}}
        asked = {n for d in every for n in d.panel_totals.needs}
        offered = {n for d in every for p in d.panels for n in (*p.support_offered, *p.needs)}
        self.needs = [*SUPPORT_NEEDS, *sorted((asked | offered) - set(SUPPORT_NEEDS))]
        order = {slug: n for n, slug in enumerate(REGION_SLUGS)}
        self.regions = sorted(
            (r for r in data if r != NATIONAL), key=lambda r: (order.get(r, 99), r)
        )
        # A region with nobody in it at all (a pilot runs in a few regions): its zeros are
        # taken as known, like the people with no region. Otherwise the regions in use
        # would be hidden against the national view to protect zeros, which describe
        # nobody. A region with even one person in it stays protected.
        self.empty = {r for r in self.regions if is_empty(data[r])}
        for region, one in data.items():
            self._region(region, one)
        self._link_national()

    # --- figures ------------------------------------------------------------------------

    def _add(
        self,
        path: tuple[str, ...],
        region: str,
        value: Number,
        people: int,
        kind: str = COUNT,
        *,
        stable: bool = True,
        depends: tuple[str, ...] = (),
        reveals: str | None = None,
    ) -> str:
        """`path` is (what, week, *detail) for a week's figure, (what, *detail) for a panel
        figure (a state: named by the digest's week too)."""
        token = NATION if region == NATIONAL else region
        parts = (path[0], path[1], token, *path[2:]) if stable else (path[0], token, *path[1:])
        series = "/".join(parts)
        fid = series if stable else f"{series}@{self.week}"
        self.figures[fid] = Figure(
            fid, series, value, people, kind, False, stable, depends, reveals, region in self.empty
        )
        self._ids[(path, token)] = fid
        return fid

    def _count(self, path: tuple[str, ...], region: str, c: Count, stable: bool = True) -> str:
        return self._add(path, region, c.value, c.people, stable=stable)

    def _part(self, path: tuple[str, ...], region: str, value: Number, stable: bool = True) -> str:
        return self._add(path, region, value, int(value), PART, stable=stable)

    def _sum(self, total: str, members: Sequence[str], weights: Sequence[int] = ()) -> None:
        self.sums.append(Sum(total, tuple(members), tuple(weights) or None))

    def _v(self, fid: str) -> Number:
        return self.figures[fid].value

    def id(self, path: tuple[str, ...], region: str) -> str:
        return self._ids[(path, NATION if region == NATIONAL else region)]

    def _region(self, region: str, data: DigestData) -> None:
        means: dict[str, str] = {}
        for wd in data.weeks:
            w = wd.week
            funnel: dict[str, dict[str, str]] = {}
            for lang in [*self.locales, ALL]:
                steps = wd.funnel.get(lang)
                ids = funnel[lang] = {
                    s: self._count(("f", w, lang, s), region, getattr(steps, s) if steps else _ZERO)
                    for s in STEPS
                }
                sent, started, done = (self._v(ids[s]) for s in STEPS)
                ids["not_started"] = self._part(
                    ("f", w, lang, "not_started"), region, sent - started
                )
                ids["abandoned"] = self._part(("f", w, lang, "abandoned"), region, started - done)
                self._sum(ids["sent"], [ids["started"], ids["not_started"]])
                self._sum(ids["started"], [ids["completed"], ids["abandoned"]])
                rate = round(done / sent, 3) if sent else 0.0
                self._add(
                    ("f", w, lang, "rate"),
                    region,
                    rate,
                    0,
                    DERIVED,
                    depends=(ids["sent"], ids["completed"]),
                )
            for step in (*STEPS, "not_started", "abandoned"):
                self._sum(funnel[ALL][step], [funnel[lang][step] for lang in self.locales])
            for p in PRINCIPLES:
                ids = {
                    key: self._count(("s", w, p, key), region, wd.scores[p][key])
                    for key in SCORE_KEYS
                }
                rest = self._v(funnel[ALL]["started"]) - self._v(ids["answered"])
                unreached = self._part(("s", w, p, "not_reached"), region, rest)
                buckets = [ids[str(score)] for score in range(1, 6)]
                self._sum(ids["scored"], buckets)
                self._sum(ids["answered"], [ids["scored"], ids["skipped"]])
                self._sum(funnel[ALL]["started"], [ids["answered"], unreached])
                total = sum(score * self._v(b) for score, b in enumerate(buckets, start=1))
                score_sum = self._add(("s", w, p, "sum"), region, total, 0, SCORE_SUM)
                self._sum(score_sum, buckets, range(1, 6))
                n = self._v(ids["scored"])
                mean = self._add(
                    ("s", w, p, "mean"),
                    region,
                    round(total / n, 2) if n else 0.0,
                    wd.scores[p]["scored"].people,
                    MEAN,
                    depends=(ids["scored"],),
                    reveals=score_sum,
                )
                if w == data.week and p in means:
                    change = round(self._v(mean) - self._v(means[p]), 2)
                    self._add(
                        ("s", w, p, "change"), region, change, 0, DERIVED, depends=(mean, means[p])
                    )
                means[p] = mean
            people = self._count(("t", w, PEOPLE), region, Count(wd.answered, wd.answered))
            for theme in self.themes:
                n = wd.themes.get(theme, 0)
                raised = self._count(("t", w, theme), region, Count(n, n))
                without = self._part(("t", w, theme, "without"), region, wd.answered - n)
                self._sum(people, [raised, without])
        self._panels(region, data)
        self._reactions(region, data)

    def _reactions(self, region: str, data: DigestData) -> None:
        """Deliveries of the trend weeks' updates and the reactions to them (one per
        delivery: the last a person chose); 'none' is those not reacted to."""
        counts = data.loop.reactions
        ids = {r: self._count(("ur", r), region, counts[r], False) for r in _REACTION_OF.values()}
        reacted = [ids[r] for r in REACTIONS]
        rest = self._v(ids["delivered"]) - sum(self._v(i) for i in reacted)
        ids["none"] = self._part(("ur", "none"), region, rest, False)
        self._sum(ids["delivered"], [*reacted, ids["none"]])

    def _panels(self, region: str, data: DigestData) -> None:
        t = data.panel_totals
        ids = {a: self._count(("pt", a), region, getattr(t, a), False) for a in PANEL_COLUMNS}
        answered = [ids["yes"], ids["maybe"], ids["waiting"]]
        coming = sum(self._v(i) for i in answered)
        rest = self._v(ids["invited"]) - coming
        ids["other"] = self._part(("pt", "other"), region, rest, False)
        self._sum(ids["invited"], [*answered, ids["other"]])
        ids["coming"] = self._part(("pt", "coming"), region, coming, False)
        self._sum(ids["coming"], answered)
        for need in self.needs:
            asked = self._count(("pt", "need", need), region, t.needs.get(need, _ZERO), False)
            without = coming - self._v(asked)
            self._sum(
                ids["coming"],
                [asked, self._part(("pt", "need", need, "without"), region, without, False)],
            )
        if region == NATIONAL:
            return
        each: dict[str, list[str]] = {a: [] for a in (*PANEL_COLUMNS, "other")}
        for panel in data.panels:
            base = ("p", str(panel.panel_id))
            mine = {
                a: self._count(
                    (*base, a), region, Count(getattr(panel, a), getattr(panel, a)), False
                )
                for a in PANEL_COLUMNS
            }
            others = panel.invited - panel.yes - panel.maybe - panel.waiting
            mine["other"] = self._part((*base, "other"), region, others, False)
            self._sum(mine["invited"], [mine["yes"], mine["maybe"], mine["waiting"], mine["other"]])
            for a, fid in mine.items():
                each[a].append(fid)
        for a, members in each.items():
            self._sum(ids[a], members)

    def _link_national(self) -> None:
        """Each national count = the regions' + those with no region (a part)."""
        for (path, token), national in list(self._ids.items()):
            figure = self.figures[national]
            if token != NATION or figure.kind in (MEAN, DERIVED):
                continue
            members = [self._ids[(path, r)] for r in self.regions if (path, r) in self._ids]
            rest = figure.value - sum(self._v(m) for m in members)
            if rest < 0:
                raise ValueError(f"the regions add up to more than {national}")
            kind = SCORE_SUM if figure.kind == SCORE_SUM else PART
            part = self._add(path, UNASSIGNED, rest, int(rest), kind, stable=figure.stable)
            self.figures[part] = replace(self.figures[part], guessable=True)
            self._sum(national, [*members, part])

    # --- where each digest shows them ------------------------------------------------------

    def plans(self, region: str, data: DigestData, zone: str) -> list[Plan]:
        """Where each figure goes in the digest of `region`."""
        w, weeks = data.week, [wd.week for wd in data.weeks]
        languages = {lang: LOCALE_NAMES.get(lang, lang) for lang in self.locales}
        languages[ALL] = "All languages"
        themes = {PEOPLE: "People who wrote an answer", **self.themes}
        plans = [
            Plan(
                "checkins",
                # Open a week: the week just ended reads low until its check-ins close.
                "Check-ins this week (still open for a week: done can still grow)",
                FUNNEL_COLUMNS,
                [
                    self._row(region, lang, name, _funnel(w, lang))
                    for lang, name in languages.items()
                ],
            ),
            Plan(
                "scores",
                "Scores this week (1 = never, 5 = always)",
                SCORE_COLUMNS,
                [self._row(region, p, PRINCIPLE_NAMES[p], _scores(w, p)) for p in PRINCIPLES],
            ),
            Plan(
                "themes",
                "What people raised this week (people)",
                ("people",),
                [
                    self._row(region, t, name, [("people", ("t", w, t))])
                    for t, name in themes.items()
                ],
                ranked=True,
            ),
        ]
        if region == NATIONAL:
            plans.append(
                Plan(
                    "regions",
                    "Check-ins by region this week",
                    FUNNEL_COLUMNS,
                    [self._row(g, g, region_name(g), _funnel(w, ALL)) for g in self.regions],
                )
            )
            panels = [self._row(g, g, region_name(g), _panel(("pt",))) for g in self.regions]
        else:
            panels = [
                self._row(
                    region,
                    f"panel {n}",
                    _panel_label(p.title, p.starts_at, zone),
                    _panel(("p", str(p.panel_id))),
                )
                for n, p in enumerate(data.panels, start=1)
            ]
        panels.append(self._row(region, "all", "All panels", _panel(("pt",))))
        reactions = [self._row(region, "all", "All updates", _reaction_cells())]
        if region == NATIONAL:
            reactions[:0] = [
                self._row(g, g, region_name(g), _reaction_cells()) for g in self.regions
            ]
        needs = [
            self._row(region, n, NEED_NAMES.get(n, n), [("people", ("pt", "need", n))])
            for n in self.needs
        ]
        scores_trend = tuple(f"{p} {c}" for p in PRINCIPLES for c in ("mean", "scored"))
        return [
            *plans,
            Plan("panels", "Panels from this week on", PANEL_COLUMNS, panels),
            Plan("support", "Support asked for by people coming to panels", ("people",), needs),
            Plan(
                "reactions",
                "Reactions to the updates of the last 12 weeks (deliveries)",
                REACTION_COLUMNS,
                reactions,
            ),
            Plan(
                "checkins_trend",
                "Check-ins, last 12 weeks",
                FUNNEL_COLUMNS,
                [self._row(region, week, week, _funnel(week, ALL)) for week in weeks],
            ),
            Plan(
                "scores_trend",
                "Mean scores, last 12 weeks",
                scores_trend,
                [
                    self._row(
                        region,
                        week,
                        week,
                        [
                            (f"{p} {c}", ("s", week, p, c))
                            for p in PRINCIPLES
                            for c in ("mean", "scored")
                        ],
                    )
                    for week in weeks
                ],
            ),
            Plan(
                "themes_trend",
                "Themes, last 12 weeks (people)",
                tuple(weeks),
                [
                    self._row(region, t, name, [(week, ("t", week, t)) for week in weeks])
                    for t, name in themes.items()
                ],
                ranked=True,
            ),
        ]

    def _row(
        self, region: str, key: str, label: str, cells: Sequence[tuple[str, tuple[str, ...]]]
    ) -> PlanRow:
        """A row of `region`'s figures; a cell whose figure does not exist is left empty
        (the change on last week, in the first week there is)."""
        token = NATION if region == NATIONAL else region
        found = [(column, self._ids.get((path, token))) for column, path in cells]
        return PlanRow(key, label, [(column, fid) for column, fid in found if fid])


def _funnel(week: str, lang: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(c, ("f", week, lang, "rate" if c == "response rate" else c)) for c in FUNNEL_COLUMNS]


def _scores(week: str, principle: str) -> list[tuple[str, tuple[str, ...]]]:
    names = {"change on last week": "change"}
    return [(c, ("s", week, principle, names.get(c, c))) for c in SCORE_COLUMNS]


def _panel(base: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    return [(a, (*base, a)) for a in PANEL_COLUMNS]


def _reaction_cells() -> list[tuple[str, tuple[str, ...]]]:
    return [(c, ("ur", r)) for c, r in _REACTION_OF.items()]


def _panel_label(title: str, starts_at: int, zone: str) -> str:
    when = datetime.fromtimestamp(starts_at / 1000, ZoneInfo(zone))
    return f"{' '.join(title.split())}, {when:%d %b %Y %H:%M}"
