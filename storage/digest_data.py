"""The weekly digest's raw numbers, read-only, and the register of digests already released.

Plain counts for one region (or every region: region NATIONAL) and one ISO week, with the
eleven weeks before it for the trend. Nothing here is hidden: disclosure control is
bot/digest.py's job, on exactly these numbers.

Each count comes with the number of distinct people behind it, because the "fewer than k"
rule is about people: someone asked twice in a week adds two check-ins but one person. The
people are counted from the rows that still name someone, while check-in counters outlive a
person who is forgotten, so `people` can be smaller than the truth, never larger: the digest
then hides more, not less.

Check-in figures use the week stored with the check-in (its sending week) and the region it
was sent in. A free-text answer belongs to its check-in's week and region; one given outside
a check-in to the week it was written in (in the service's time zone) and the person's
region. A person who wrote in two regions in one week is counted once, in the region of
their last answer, so that the regions add up to the national figure. Where staff tagged
an answer, their tags replace the keyword guesses (Checkins.tag_answer/retag_answer).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import groupby
from zoneinfo import ZoneInfo

import aiosqlite

from storage.database import Row

NATIONAL = ""  # the region of the all-regions view, here and in published_digests
ALL = "*"  # the funnel row over every language
TREND_WEEKS = 12  # the digest's week and the eleven before it
SKIPPED = "skipped"
# Per principle: how many gave each score or skipped, how many gave a score (1-5) and how
# many answered at all (a score or skip).
SCORE_KEYS: tuple[str, ...] = ("1", "2", "3", "4", "5", SKIPPED, "scored", "answered")
PRINCIPLES: tuple[str, ...] = ("voice", "respect", "neutrality", "trust")


@dataclass(frozen=True)
class Count:
    """What is counted (check-ins, invitations, people) and the distinct people behind it."""

    value: int
    people: int


ZERO = Count(0, 0)


@dataclass(frozen=True)
class Funnel:
    sent: Count
    started: Count
    completed: Count


@dataclass(frozen=True)
class WeekData:
    week: str
    funnel: Mapping[str, Funnel]  # by language, and ALL
    scores: Mapping[str, Mapping[str, Count]]  # principle -> SCORE_KEYS -> check-ins
    answered: int  # people who wrote free text
    themes: Mapping[str, int]  # theme id -> people who raised it (absent: nobody)


@dataclass(frozen=True)
class PanelFigures:
    """One panel; an invitation is one person, so every count is also people."""

    panel_id: int
    title: str
    starts_at: int
    support_offered: tuple[str, ...]
    invited: int
    yes: int
    maybe: int
    waiting: int
    needs: Mapping[str, int]  # need -> people still coming who asked for it


@dataclass(frozen=True)
class PanelTotals:
    """Every panel counted in the digest together (a person invited twice counts twice)."""

    invited: Count
    yes: Count
    maybe: Count
    waiting: Count
    needs: Mapping[str, Count]


@dataclass(frozen=True)
class RaisedTheme:
    """A theme raised in a region during the trend weeks: by how many distinct people, and
    whether staff published a "you said, we did" update about it in that region since the
    trend weeks began."""

    region: str
    theme: str
    people: int
    answered: bool


REACTIONS: tuple[str, ...] = ("helps", "not_helps", "more")


@dataclass(frozen=True)
class LoopData:
    """ "You said, we did": updates published (this week and over the trend weeks), the
    themes raised over the trend weeks, and what people made of the updates delivered to
    them (deliveries of the trend weeks' updates, and the distinct people behind them)."""

    published_week: int
    published_trend: int
    raised: tuple[RaisedTheme, ...]  # by region, then theme; never people with no region
    reactions: Mapping[str, Count]  # 'delivered' and each of REACTIONS


@dataclass(frozen=True)
class DigestData:
    region: str  # a slug, or NATIONAL
    week: str
    weeks: tuple[WeekData, ...]  # oldest first; the last is `week`
    panels: tuple[PanelFigures, ...]  # soonest first; none in the national view
    panel_totals: PanelTotals
    loop: LoopData

    @property
    def current(self) -> WeekData:
        return self.weeks[-1]


@dataclass(frozen=True)
class PublishedDigest:
    id: int
    region: str
    week: str
    k: int
    cells: str  # the released digest as JSON (bot/digest.py)
    published_at: int


# --- ISO weeks --------------------------------------------------------------------------


def parse_week(week: str) -> tuple[int, int]:
    """'2026-W47' as (2026, 47); ValueError for anything else, e.g. a week 53 that a year
    does not have."""
    try:
        year, number = int(week[:4]), int(week[6:])
        ok = len(week) == 8 and week[4:6] == "-W"
        date.fromisocalendar(year, number, 1)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"'{week}' is not an ISO week such as 2026-W47")
    return year, number


def shift_week(week: str, weeks: int) -> str:
    """The ISO week `weeks` later (earlier when negative)."""
    monday = date.fromisocalendar(*parse_week(week), 1) + timedelta(weeks=weeks)
    year, number, _ = monday.isocalendar()
    return f"{year}-W{number:02d}"


def trend_weeks(week: str) -> tuple[str, ...]:
    """The digest's week and the eleven before it, oldest first."""
    return tuple(shift_week(week, n) for n in range(1 - TREND_WEEKS, 1))


def week_bounds(week: str, zone: str) -> tuple[int, int]:
    """[start, end) of the week in UTC milliseconds: Monday 00:00 to Monday 00:00 local."""
    monday = date.fromisocalendar(*parse_week(week), 1)
    tz = ZoneInfo(zone)
    start = datetime(monday.year, monday.month, monday.day, tzinfo=tz)
    nxt = monday + timedelta(weeks=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


# --- Reading the figures ------------------------------------------------------------------

# SQL fragments are fixed text chosen here, never text from a caller.
_STEPS = ("sent", "started", "completed")

# An answer staff tagged counts with their themes only.
_STAFF_TAGS_WIN = (
    "(t.source = 'staff' OR NOT EXISTS (SELECT 1 FROM answer_themes s "
    "WHERE s.answer_id = t.answer_id AND s.source = 'staff'))"
)

# The free-text answers of the weeks in :bounds ([[week, start_ms, end_ms], ...]) as `a`
# (id, pseudonym, week, region), each person placed in one region per week.
_PLACED_ANSWERS = (
    "WITH wk AS (SELECT json_extract(value, '$[0]') AS week, "
    "  json_extract(value, '$[1]') AS start_ms, json_extract(value, '$[2]') AS end_ms "
    "  FROM json_each(:bounds)), "
    # answers given in a check-in of one of the weeks belong to its week and region...
    "given AS (SELECT a.id, a.pseudonym, a.created_at, k.week, k.region "
    "  FROM checkins k JOIN answers a ON a.checkin_id = k.id "
    "  WHERE k.week IN (SELECT week FROM wk) "
    # ...others to the week they were written in and the person's region
    "  UNION ALL SELECT a.id, a.pseudonym, a.created_at, wk.week, p.region "
    "  FROM wk JOIN answers a ON a.created_at >= wk.start_ms AND a.created_at < wk.end_ms "
    "  JOIN people p ON p.pseudonym = a.pseudonym WHERE a.checkin_id IS NULL), "
    # the region of the person's last answer of the week
    "placed AS (SELECT week, pseudonym, region FROM (SELECT week, pseudonym, region, "
    "  ROW_NUMBER() OVER (PARTITION BY week, pseudonym ORDER BY created_at DESC, id DESC) "
    "  AS n FROM given) WHERE n = 1), "
    "a AS (SELECT g.id, g.pseudonym, g.week, pl.region FROM given g JOIN placed pl "
    "  ON pl.week = g.week AND pl.pseudonym = g.pseudonym)"
)

_TEMP_TABLES = ("digest_placed", "digest_tagged")  # see DigestFigures

# The check-ins of the weeks in :weeks that some digest counts (people with no region yet
# are in none, see _in_region), as `k`.
_COUNTED_CHECKINS = (
    "k.week IN (SELECT value FROM json_each(:weeks)) AND k.region IS NOT NULL AND k.region <> ''"
)

_PANELS_IN_SCOPE = "p.starts_at >= :start AND p.status <> 'cancelled'"
# Support asked for by people still thinking of coming (yes, maybe, waiting).
_NEEDS = (
    "FROM panels p JOIN panel_invitations i ON i.panel_id = p.id, "
    "json_each(i.support_needs) n "
    f"WHERE {_PANELS_IN_SCOPE} AND i.answer IN ('yes', 'maybe', 'waiting')"
)


def _in_region(column: str, region: str) -> str:
    """The national view is the sum of the regions: people with no region yet (a few, in
    the middle of joining) are in no digest, so they never stand between a region's
    figures and the national ones as a small remainder to protect."""
    if region == NATIONAL:
        return f" AND {column} IS NOT NULL AND {column} <> ''"
    return f" AND {column} = :region"


class DigestFigures:
    """Read-only queries over checkin_counts, checkins, checkin_scores, answers,
    answer_themes, panels and panel_invitations."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._prepared: tuple[str, ...] = ()  # the weeks the temporary tables hold
        self._people = _PeopleCounts()  # and the people behind check-ins and scores

    async def __aenter__(self) -> DigestFigures:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Drop the temporary tables: they name people (by pseudonym), so they last no
        longer than the read that needed them (use DigestFigures with `async with`)."""
        for table in _TEMP_TABLES:
            await self._conn.execute(f"DROP TABLE IF EXISTS temp.{table}")
        self._prepared = ()
        self._people = _PeopleCounts()

    async def _prepare(self, weeks: Sequence[str], zone: str) -> None:
        """Work out once, into temporary tables, what every region's digest reads many
        times: the answers placed in their week and region (digest_placed) and their themes
        with staff tags winning (digest_tagged); and, for every region at once, the people
        behind the check-ins and scores (_count_people). Thirteen digests then each read
        their own rows by region instead of working all of it out again (about fifty times
        over every answer of the weeks). Built afresh for each DigestFigures, i.e. in each
        read (never stale), and dropped when it closes."""
        if set(weeks) <= set(self._prepared):
            return
        bounds = json.dumps([[w, *week_bounds(w, zone)] for w in weeks])
        await self.close()
        await self._conn.execute(
            f"CREATE TEMP TABLE digest_placed AS {_PLACED_ANSWERS} "
            "SELECT id, pseudonym, week, region FROM a",
            {"bounds": bounds},
        )
        await self._conn.execute(
            "CREATE TEMP TABLE digest_tagged AS SELECT a.id, a.pseudonym, a.week, a.region, "
            "t.theme FROM digest_placed a JOIN answer_themes t ON t.answer_id = a.id "
            f"WHERE {_STAFF_TAGS_WIN}"
        )
        for table in _TEMP_TABLES:
            await self._conn.execute(f"CREATE INDEX temp.{table}_region ON {table} (region)")
        self._people = await self._count_people(weeks)
        self._prepared = tuple(weeks)

    async def _count_people(self, weeks: Sequence[str]) -> _PeopleCounts:
        """The distinct people behind each check-in and score count of `weeks`, for every
        region and the national view at once. Counting distinct people group by group took
        six passes over every score of the weeks for each digest; instead the check-ins and
        scores are counted in one pass each, and a person counted more than once in a
        group is taken off again. Only someone with two or more check-ins in a week can be
        (a check-in gives at most one score per principle), and those few are read one by
        one."""
        params = {"weeks": json.dumps(list(weeks))}
        checkins = await self._rows(
            "SELECT k.region, k.week, k.locale, COUNT(*), COUNT(k.started_at), "
            f"SUM(k.status = 'completed') FROM checkins k WHERE {_COUNTED_CHECKINS} "
            "GROUP BY 1, 2, 3",
            params,
        )
        scores = await self._rows(
            f"SELECT k.region, k.week, s.principle, {_SCORE_KEY}, COUNT(*) "
            "FROM checkins k JOIN checkin_scores s ON s.checkin_id = k.id "
            f"WHERE {_COUNTED_CHECKINS} AND k.started_at IS NOT NULL GROUP BY 1, 2, 3, 4",
            params,
        )
        # Every check-in (and its scores, if it was started) of a person with several in
        # a week, by week and person, a check-in's rows together. They are looked up by
        # person (`+k.week` keeps SQLite from going through every check-in of the weeks
        # again by checkins_by_week: 0.22 s -> 0.14 s at 1M answers).
        repeated = await self._rows(
            "SELECT k.week, k.pseudonym, k.id, k.region, k.locale, k.started_at IS NOT NULL, "
            f"k.status = 'completed', s.principle, {_SCORE_KEY} FROM (SELECT k.week, "
            f"k.pseudonym FROM checkins k WHERE {_COUNTED_CHECKINS} GROUP BY 1, 2 "
            "HAVING COUNT(*) > 1) m JOIN checkins k ON k.pseudonym = m.pseudonym "
            "AND +k.week = m.week AND k.region IS NOT NULL AND k.region <> '' "
            "LEFT JOIN checkin_scores s ON s.checkin_id = k.id AND k.started_at IS NOT NULL "
            "ORDER BY k.week, k.pseudonym, k.id",
            params,
        )
        return _count_people(checkins, scores, repeated)

    async def read(self, region: str, week: str, zone: str) -> DigestData:
        """Everything the digest of `region` (NATIONAL: all regions together)
        for `week` needs. Run it inside one read transaction for a consistent picture."""
        weeks = trend_weeks(week)
        await self._prepare(weeks, zone)
        params = {"region": region, "weeks": json.dumps(weeks)}
        funnels = await self._funnels(region, params)
        scores = self._scores(region)
        answered, themes = await self._themes(region, weeks, zone)
        data = tuple(
            WeekData(
                w,
                funnels.get(w, {ALL: Funnel(ZERO, ZERO, ZERO)}),
                scores.get(w) or _no_scores(),
                answered.get(w, 0),
                themes.get(w, {}),
            )
            for w in weeks
        )
        start = week_bounds(week, zone)[0]
        panels = await self._panels(region, start) if region != NATIONAL else ()
        totals = await self._panel_totals(region, start)
        loop = await self._loop(region, weeks, zone)
        return DigestData(region, week, data, panels, totals, loop)

    async def quotes(
        self,
        region: str,
        week: str,
        zone: str,
        per_theme: int,
        written_before: int | None = None,
    ) -> list[tuple[str, bytes]]:
        """(theme, encrypted scrubbed quote) of the week's answers in `region` (NATIONAL:
        all) whose writers gave the quote consent, written before `written_before` when
        given: at most `per_theme` for each theme, the newest first. A quote is NULL from
        the moment its writer withdraws the consent or is forgotten, so none of theirs can
        come back here."""
        # One week of one region: placed here directly (the temporary tables are built for
        # the trend weeks of every region, far more than this needs).
        params = {
            "region": region,
            "bounds": json.dumps([[week, *week_bounds(week, zone)]]),
            "per_theme": per_theme,
            "before": written_before if written_before is not None else 2**62,
        }
        rows = await self._rows(
            f"{_PLACED_ANSWERS}, q AS (SELECT t.theme, x.quote, ROW_NUMBER() OVER "
            "  (PARTITION BY t.theme ORDER BY x.created_at DESC, x.id DESC) AS n "
            "  FROM a JOIN answers x ON x.id = a.id "
            "  JOIN answer_themes t ON t.answer_id = a.id "
            f"  WHERE 1{_in_region('a.region', region)} AND {_STAFF_TAGS_WIN} "
            "  AND x.quote IS NOT NULL AND x.created_at < :before) "
            "SELECT theme, quote FROM q WHERE n <= :per_theme ORDER BY theme, n",
            params,
        )
        return [(r[0], r[1]) for r in rows]

    async def _loop(self, region: str, weeks: tuple[str, ...], zone: str) -> LoopData:
        start = week_bounds(weeks[0], zone)[0]
        this_week, end = week_bounds(weeks[-1], zone)
        params = {
            "region": region,
            "start": start,
            "this_week": this_week,
            "end": end,
        }
        # An update taken back (a mistake) answered nothing: not counted, and its themes
        # stay waiting for an answer.
        in_scope = (
            "u.withdrawn_at IS NULL AND u.published_at >= :start AND u.published_at < :end"
            f"{_in_region('u.region', region)}"
        )
        published = await self._rows(
            "SELECT COALESCE(SUM(u.published_at >= :this_week), 0), COUNT(*) "
            f"FROM updates u WHERE {in_scope}",
            params,
        )
        where = "WHERE 1" + _in_region("a.region", region)
        raised = await self._rows(
            "SELECT a.region, a.theme, COUNT(DISTINCT a.pseudonym), "
            "EXISTS (SELECT 1 FROM updates u, json_each(u.themes) j WHERE u.region = a.region "
            "  AND j.value = a.theme AND u.published_at >= :start AND u.published_at < :end "
            "  AND u.withdrawn_at IS NULL) "
            f"FROM digest_tagged a {where} GROUP BY 1, 2 ORDER BY 1, 2",
            params,
        )
        reactions = await self._rows(
            "SELECT 'delivered', COUNT(*), COUNT(DISTINCT d.pseudonym) "
            f"FROM updates u JOIN update_deliveries d ON d.update_id = u.id WHERE {in_scope} "
            "UNION ALL SELECT d.reaction, COUNT(*), COUNT(DISTINCT d.pseudonym) "
            f"FROM updates u JOIN update_deliveries d ON d.update_id = u.id WHERE {in_scope} "
            "AND d.reaction IS NOT NULL GROUP BY d.reaction",
            params,
        )
        counts = {r[0]: Count(r[1], r[2]) for r in reactions}
        return LoopData(
            published[0][0],
            published[0][1],
            tuple(RaisedTheme(r[0], r[1], r[2], bool(r[3])) for r in raised),
            {what: counts.get(what, ZERO) for what in ("delivered", *REACTIONS)},
        )

    async def _rows(self, sql: str, params: Mapping[str, object]) -> list[Row]:
        async with self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _funnels(
        self, region: str, params: Mapping[str, object]
    ) -> dict[str, dict[str, Funnel]]:
        weeks = "week IN (SELECT value FROM json_each(:weeks))"
        counts = await self._rows(
            "SELECT week, locale, SUM(sent), SUM(started), SUM(completed) FROM checkin_counts "
            f"WHERE {weeks}{_in_region('region', region)} GROUP BY week, locale",
            params,
        )
        who = self._people.funnels.get(region, {})
        found: dict[str, dict[str, Funnel]] = {}
        for week, locale, *values in counts:
            found.setdefault(week, {})[locale] = _funnel(values, who.get((week, locale)))
        for week, rows in found.items():
            total = [sum(getattr(f, step).value for f in rows.values()) for step in _STEPS]
            rows[ALL] = _funnel(total, who.get((week, ALL)))
        return found

    def _scores(self, region: str) -> dict[str, dict[str, dict[str, Count]]]:
        """Scores of check-ins that were started (completed, still open or since expired:
        what a person answered is kept), by sending week."""
        found: dict[str, dict[str, dict[str, Count]]] = {}
        for (week, principle, key), (value, people) in self._people.scores.get(region, {}).items():
            found.setdefault(week, _no_scores())[principle][key] = Count(value, people)
        return found

    async def _themes(
        self, region: str, weeks: tuple[str, ...], zone: str
    ) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """People who wrote free text, and who raised each theme, per week."""
        await self._prepare(weeks, zone)
        params = {"region": region}
        where = "WHERE 1" + _in_region("a.region", region)
        people = await self._rows(
            f"SELECT a.week, COUNT(DISTINCT a.pseudonym) FROM digest_placed a {where} GROUP BY 1",
            params,
        )
        tagged = await self._rows(
            f"SELECT a.week, a.theme, COUNT(DISTINCT a.pseudonym) FROM digest_tagged a {where} "
            "GROUP BY 1, 2",
            params,
        )
        themes: dict[str, dict[str, int]] = {}
        for week, theme, count in tagged:
            themes.setdefault(week, {})[theme] = count
        return {week: count for week, count in people}, themes

    async def _panels(self, region: str, start: int) -> tuple[PanelFigures, ...]:
        """The region's panels starting in the week or later, with their answers as they
        are now. Cancelled panels are left out: they will not happen."""
        params = {"region": region, "start": start}
        rows = await self._rows(
            "SELECT p.id, p.title, p.starts_at, p.support_offered, COUNT(i.id), "
            "COALESCE(SUM(i.answer = 'yes'), 0), COALESCE(SUM(i.answer = 'maybe'), 0), "
            "COALESCE(SUM(i.answer = 'waiting'), 0) "
            "FROM panels p LEFT JOIN panel_invitations i ON i.panel_id = p.id "
            f"WHERE {_PANELS_IN_SCOPE} AND p.region = :region "
            "GROUP BY p.id ORDER BY p.starts_at, p.id",
            params,
        )
        needs = await self._rows(
            f"SELECT i.panel_id, n.value, COUNT(*) {_NEEDS} AND p.region = :region GROUP BY 1, 2",
            params,
        )
        asked: dict[int, dict[str, int]] = {}
        for panel_id, need, count in needs:
            asked.setdefault(panel_id, {})[need] = count
        return tuple(
            PanelFigures(
                r[0],
                r[1],
                r[2],
                tuple(json.loads(r[3])),
                r[4],
                r[5],
                r[6],
                r[7],
                asked.get(r[0], {}),
            )
            for r in rows
        )

    async def _panel_totals(self, region: str, start: int) -> PanelTotals:
        params = {"region": region, "start": start}
        scope = (
            "FROM panels p JOIN panel_invitations i ON i.panel_id = p.id "
            f"WHERE {_PANELS_IN_SCOPE}{_in_region('p.region', region)}"
        )
        rows = await self._rows(
            f"SELECT '', COUNT(*), COUNT(DISTINCT i.pseudonym) {scope} "
            f"UNION ALL SELECT i.answer, COUNT(*), COUNT(DISTINCT i.pseudonym) {scope} "
            "GROUP BY i.answer",
            params,
        )
        by_answer = {r[0]: Count(r[1], r[2]) for r in rows}
        needs = await self._rows(
            f"SELECT n.value, COUNT(*), COUNT(DISTINCT i.pseudonym) {_NEEDS}"
            f"{_in_region('p.region', region)} GROUP BY 1",
            params,
        )
        return PanelTotals(
            by_answer.get("", ZERO),
            by_answer.get("yes", ZERO),
            by_answer.get("maybe", ZERO),
            by_answer.get("waiting", ZERO),
            {r[0]: Count(r[1], r[2]) for r in needs},
        )


class DigestStore:
    """The published_digests table: each digest exactly as it was released, so that later
    digests are checked against what people could actually read, not a recomputation."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def save(self, region: str, week: str, k: int, cells: str, now: int) -> bool:
        """Record a released digest; False (and nothing written) when one for this region
        and week was released already: a week is released once."""
        parse_week(week)
        cursor = await self._conn.execute(
            "INSERT INTO published_digests (region, week, k, cells, published_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (region, week) DO NOTHING",
            (region, week, k, cells, now),
        )
        return cursor.rowcount > 0

    async def get(self, region: str, week: str) -> PublishedDigest | None:
        found = await self._select("WHERE region = ? AND week = ?", (region, week))
        return found[0] if found else None

    async def previous(self, region: str, week: str) -> PublishedDigest | None:
        """The region's latest digest released for a week before `week`."""
        found = await self._select(
            "WHERE region = ? AND week < ? ORDER BY week DESC LIMIT 1", (region, week)
        )
        return found[0] if found else None

    async def since(self, first_week: str) -> list[PublishedDigest]:
        """Every digest (all regions and the national view) for `first_week` or later, by
        week then release: a region's figures also appear in the national view and in
        later weeks' trends, so each is checked against all of them."""
        return await self._select("WHERE week >= ? ORDER BY week, id", (first_week,))

    async def _select(self, where: str, params: tuple[object, ...]) -> list[PublishedDigest]:
        async with self._conn.execute(
            f"SELECT id, region, week, k, cells, published_at FROM published_digests {where}",
            params,
        ) as cursor:
            rows = await cursor.fetchall()
        return [PublishedDigest(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


# A score as its key in SCORE_KEYS ('1'..'5', or skipped); NULL without a score row.
_SCORE_KEY = (
    "CASE WHEN s.principle IS NULL THEN NULL ELSE COALESCE(CAST(s.score AS TEXT), 'skipped') END"
)


@dataclass
class _PeopleCounts:
    """Distinct people, by region (NATIONAL: all regions together): behind each week's
    and language's (and ALL's) sent, started and completed check-ins, and behind each
    week's, principle's and SCORE_KEYS key's scores (with the number of scores)."""

    funnels: dict[str, dict[tuple[str, ...], list[int]]] = field(default_factory=dict)
    scores: dict[str, dict[tuple[str, ...], list[int]]] = field(default_factory=dict)


def _count_people(
    checkins: Iterable[Row], scores: Iterable[Row], repeated: Sequence[Row]
) -> _PeopleCounts:
    """People as check-ins (scores) counted, less each person's second and later ones in
    a group. `checkins`: (region, week, locale, sent, started, completed) counts; `scores`:
    (region, week, principle, key, count); `repeated`: every check-in of the people with
    several in a week (see DigestFigures._count_people)."""
    found = _PeopleCounts()
    for region, week, locale, *steps in checkins:
        for scope in (region, NATIONAL):
            for language in (locale, ALL):
                counted = found.funnels.setdefault(scope, {}).setdefault(
                    (week, language), [0, 0, 0]
                )
                for n, count in enumerate(steps):
                    counted[n] += count
    for region, week, principle, key, count in scores:
        for scope in (region, NATIONAL):
            for one in _score_keys(key):
                counted = found.scores.setdefault(scope, {}).setdefault(
                    (week, principle, one), [0, 0]
                )
                counted[0] += count
                counted[1] += count
    # A group: (which table, region, key in it, position of its people in the list).
    Group = tuple[str, str, tuple[str, ...], int]
    for _, rows in groupby(repeated, key=lambda r: (r[0], r[1])):
        times: dict[Group, int] = {}  # group -> this person's check-ins (scores) in it
        last = None
        for week, _, checkin, region, locale, started, completed, principle, key in rows:
            groups: list[Group] = []
            for scope in (region, NATIONAL):
                if checkin != last:  # the check-in itself, once (not once per score)
                    done = (True, started, completed)
                    groups += [
                        ("funnels", scope, (week, language), step)
                        for language in (locale, ALL)
                        for step in range(3)
                        if done[step]
                    ]
                if principle is not None:
                    groups += [
                        ("scores", scope, (week, principle, one), 1) for one in _score_keys(key)
                    ]
            last = checkin
            for group in groups:
                times[group] = times.get(group, 0) + 1
        for (table, scope, group_key, position), n in times.items():
            getattr(found, table)[scope][group_key][position] -= n - 1
    return found


def _score_keys(key: str) -> tuple[str, ...]:
    """The SCORE_KEYS a score (its own key) counts in."""
    return (key, "answered") if key == SKIPPED else (key, "scored", "answered")


def _funnel(values: Sequence[int], people: Sequence[int] | None) -> Funnel:
    who = people or (0, 0, 0)
    return Funnel(*(Count(values[i], min(who[i], values[i])) for i in range(3)))


def _no_scores() -> dict[str, dict[str, Count]]:
    return {p: dict.fromkeys(SCORE_KEYS, ZERO) for p in PRINCIPLES}
