"""The weekly digest, delivered: every Monday at 08:00 (Europe/London) each region's digest
of the week just ended is released once and sent to the region's managers, and the national
view to every admin; `/digest` shows staff and managers their region's latest (admins the
national view).

The job is a stored schedule: a Monday missed while the bot was down runs at the next start,
and a week already released is never released again (its stored digest is reused); each
region's managers, and the admins (the national view), are sent a week's report once,
whoever released it. An hourly check keeps next Monday's job scheduled and runs a Monday
job given up after failures again.
Figures about fewer than k people are hidden (bot/digest.py), checked against every digest
released before, so what went out can never be differenced to reveal someone.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import aiosqlite
from babel.dates import format_interval

from bot.access import access_of
from bot.conversation import ConversationService, Sender
from bot.desk import Desk, DialogueTexts
from bot.digest import Digest, build_digests, format_value, from_json, to_json
from bot.digest_figures import PEOPLE, region_name
from bot.digest_quotes import read_quotes
from bot.digest_report import report_files
from state_machines.definition import REGION_SLUGS
from state_machines.engine import Engine
from storage.clock import Clock
from storage.database import Database
from storage.digest_data import (
    ALL,
    NATIONAL,
    TREND_WEEKS,
    DigestData,
    DigestFigures,
    DigestStore,
    PublishedDigest,
    shift_week,
)
from storage.people import People
from storage.queues import PRIORITY_REPLY, Job, Outbox, Schedules
from storage.staff import AuditLog, StaffRoles

log = logging.getLogger(__name__)

DIGEST_JOB = "weekly_digest"
REPORT_JOB = "digest_report"  # draw one region's chart and report, and send them
# Who a Monday report goes to: a region's managers, or (the national view) every admin.
_MANAGERS = "managers"
_ADMINS = "admins"
# Hourly: next Monday's job exists, and a Monday job given up is run again (`_check`).
DIGEST_CHECK_JOB = "weekly_digest_check"
_SEND_HOUR = 8
_HOUR_MS = 3_600_000
# A Monday job given up after its retries is run again by the hourly check at most this many
# times; then that week is left (each failure was logged by the scheduler).
_CATCH_UPS = 3
_CHECKED_AGAINST_WEEKS = 52  # earlier releases each new digest is checked against
_RELEASED_TOGETHER = (NATIONAL, *REGION_SLUGS)  # a week's digests are checked together


@dataclass(frozen=True)
class PreparedRelease:
    """A week's digests built outside any transaction, and what they were built against:
    the regions not released yet and the ids of the earlier releases they were checked
    against. Stored only if both are still so (`DigestService.release_week`)."""

    week: str
    missing: tuple[str, ...]
    checked_against: tuple[int, ...]
    digests: dict[str, Digest]


def week_of(ms: int, zone: str) -> str:
    year, week, _ = datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(zone)).isocalendar()
    return f"{year}-W{week:02d}"


def next_monday_morning(now_ms: int, zone: str) -> int:
    """The next Monday 08:00 in `zone` strictly after `now_ms` (clock changes included)."""
    local = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(ZoneInfo(zone))
    day = local.date() + timedelta(days=(7 - local.weekday()) % 7)
    while True:
        moment = datetime(day.year, day.month, day.day, _SEND_HOUR, tzinfo=ZoneInfo(zone))
        ms = int(moment.timestamp() * 1000)
        if ms > now_ms:
            return ms
        day += timedelta(days=7)


def last_monday_morning(now_ms: int, zone: str) -> int:
    """The latest Monday 08:00 in `zone` at or before `now_ms` (clock changes included)."""
    local = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(ZoneInfo(zone))
    day = local.date() - timedelta(days=local.weekday())
    while True:
        moment = datetime(day.year, day.month, day.day, _SEND_HOUR, tzinfo=ZoneInfo(zone))
        ms = int(moment.timestamp() * 1000)
        if ms <= now_ms:
            return ms
        day -= timedelta(days=7)


def week_before(monday_ms: int, zone: str) -> str:
    """The week a Monday-morning digest is about: the one that has just ended."""
    return shift_week(week_of(monday_ms, zone), -1)


class DigestService(Desk[DialogueTexts]):
    """Releases weekly digests and sends them to managers (the national view to admins)."""

    # /digest may have to release the week's digests in its update's transaction (when
    # something was released between building them and storing them): reads over every
    # answer of 12 weeks, which must not hold up the event loop.
    _quick = False

    def __init__(
        self,
        db: Database,
        clock: Clock,
        engine: Engine,
        texts: DialogueTexts,
        conversations: ConversationService,
        themes: Sequence[tuple[str, str]],
        zone: str,
        k: int,
        on_queued: Callable[[], None],
        decrypt: Callable[[bytes], str],
    ) -> None:
        super().__init__(db, clock, engine, texts, conversations, on_queued)
        self._themes = list(themes)
        self._zone = zone
        self._k = k
        self._preparing: dict[str, asyncio.Task[PreparedRelease]] = {}
        self._decrypt = decrypt

    async def ensure_scheduled(self) -> None:
        """At start: the hourly check (`_check`), and the next day's checks scheduled. A
        missed Monday whose job is still pending runs first; keys make this idempotent."""
        async with self._db.transaction() as conn:
            await self._check(conn, self._clock.now_ms())

    async def on_check(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """Hourly, while the bot runs: the same check as at start. Next Monday's job was
        scheduled only by the Monday job itself, so one given up after its retries ended
        the chain, and that week's digest was neither released nor sent, until a restart
        that still skipped it."""
        await self._check(conn, now)

    async def _check(self, conn: aiosqlite.Connection, now: int) -> None:
        await _schedule(conn, next_monday_morning(now, self._zone), now)
        await self._catch_up(conn, now)
        await _schedule_checks(conn, now)

    async def _catch_up(self, conn: aiosqlite.Connection, now: int) -> None:
        """The last Monday's job, if it was given up (or never made while the one before
        was given up), is made again to run now: it releases what is missing of that week
        and sends the managers' and admins' reports (keyed by region and week, so sent
        once). Nothing is done while it is pending (due, retrying, or running now) or once
        it is done. A week before the bot's first Monday is not caught up (a new install
        sends nothing)."""
        due = last_monday_morning(now, self._zone)
        jobs = Schedules(conn)
        base = f"{DIGEST_JOB}:{due}"
        status = await jobs.status_of(base)
        if status is None:
            before = f"{DIGEST_JOB}:{last_monday_morning(due - 1, self._zone)}"
            if await jobs.status_of(before) != "failed":
                return  # no Monday chain broken here: nothing was missed
            if await _schedule(conn, due, now):
                log.warning("the weekly digest job of %s was never made; made now", due)
            return
        for attempt in range(1, _CATCH_UPS + 1):
            if status != "failed":
                return  # pending or done, by the Monday job or its last catch-up
            key = f"{base}:again:{attempt}"
            status = await jobs.status_of(key)
            if status is None:
                await jobs.add(DIGEST_JOB, key, now, {"due": due}, now)
                log.warning("the weekly digest job of %s had failed; run again", due)
                return

    async def prepare_weekly(self, job: Job, now: int) -> PreparedRelease:
        """The Monday job's slow part, before its transaction (see `prepare_release`)."""
        return await self.prepare_release(week_before(int(job.payload["due"]), self._zone))

    async def on_weekly(
        self, conn: aiosqlite.Connection, job: Job, now: int, prepared: PreparedRelease
    ) -> None:
        """Monday 08:00 (or the first start after it): release and send last week's. The
        managers of every region are sent the week's report, however much of it was
        released before (by staff asking with /digest before 08:00, or by the command
        line): each region's managers get one report a week whoever released it. The
        admins are sent the national view the same way (who is not being heard, by
        region, is only there): once a week, whoever released it; an admin who also
        manages a region gets both."""
        due = int(job.payload["due"])
        week = week_before(due, self._zone)
        released = await self.release_week(conn, week, now, prepared)
        roles = StaffRoles(conn)
        for region in REGION_SLUGS:
            if await roles.holders("manager", region):
                await _schedule_report(conn, region, week, None, now)
        if await roles.holders("admin", None):
            await _schedule_report(conn, NATIONAL, week, None, now, _ADMINS)
        await _schedule(conn, next_monday_morning(due, self._zone), now)
        log.info("weekly digests for %s: %d released now", week, len(released))

    async def prepare_release(self, week: str) -> PreparedRelease:
        """Read `week`'s figures on a snapshot and build its digests in a worker thread,
        holding no lock: at national scale this takes seconds (bench/RESULTS.md), and under
        the write transaction every update would wait for it. `release_week` then only
        stores them, after checking that nothing was released meanwhile. Calls for the same
        week at the same time (staff sending /digest while the Monday job prepares) share
        one build."""
        task = self._preparing.get(week)
        if task is None:
            task = asyncio.create_task(self._prepare_release(week))
            self._preparing[week] = task

            def forget(done: asyncio.Task[PreparedRelease]) -> None:
                del self._preparing[week]
                if not done.cancelled():
                    done.exception()  # retrieved: each caller sees it when awaiting

            task.add_done_callback(forget)
        return await asyncio.shield(task)

    async def _prepare_release(self, week: str) -> PreparedRelease:
        async with self._db.snapshot() as conn:
            missing, earlier = await self._unreleased(DigestStore(conn), week)
            data = await self._figures(conn, week) if missing else {}
        if not missing:
            return PreparedRelease(week, (), (), {})
        built = await asyncio.to_thread(self._build, data, earlier)
        return PreparedRelease(week, missing, tuple(e.id for e in earlier), built)

    async def release_week(
        self,
        conn: aiosqlite.Connection,
        week: str,
        now: int,
        prepared: PreparedRelease | None = None,
    ) -> dict[str, Digest]:
        """Release every region's and the national digest of `week` not released yet, all
        checked together and against earlier releases; returns only the new ones. The
        digests `prepared` are stored if they were built against exactly the releases there
        are now; otherwise (a release meanwhile, or none prepared) they are read and built
        here, inside `conn`'s transaction."""
        store = DigestStore(conn)
        missing, earlier = await self._unreleased(store, week)
        if not missing:
            return {}
        built_against = (week, missing, tuple(e.id for e in earlier))
        if prepared is not None and (
            (prepared.week, prepared.missing, prepared.checked_against) == built_against
        ):
            built = prepared.digests
        else:
            built = self._build(await self._figures(conn, week), earlier)
        for region in missing:
            await store.save(region, week, self._k, to_json(built[region]), now)
            target = f"region:{region or 'national'}"
            details = {"week": week, "k": str(self._k)}
            await AuditLog(conn).record("system", "digest.released", target, details, now)
        return {r: built[r] for r in missing}

    async def _unreleased(
        self, store: DigestStore, week: str
    ) -> tuple[tuple[str, ...], list[PublishedDigest]]:
        """The regions whose digest of `week` is not released yet, and (if any) the
        earlier releases each new digest is checked against."""
        missing = tuple([r for r in _RELEASED_TOGETHER if await store.get(r, week) is None])
        if not missing:
            return (), []
        return missing, await store.since(shift_week(week, -_CHECKED_AGAINST_WEEKS))

    async def _figures(self, conn: aiosqlite.Connection, week: str) -> dict[str, DigestData]:
        """Every region's figures, even when one region is missing: they are checked
        together."""
        async with DigestFigures(conn) as figures:
            return {r: await figures.read(r, week, self._zone) for r in _RELEASED_TOGETHER}

    def _build(
        self, data: dict[str, DigestData], earlier: list[PublishedDigest]
    ) -> dict[str, Digest]:
        return build_digests(
            data, self._k, [from_json(e.cells) for e in earlier], self._themes, self._zone
        )

    async def on_request(self, update_id: int, sender: Sender) -> None:
        """/digest: the latest week's digest for each region the person is staff or
        manager of (released now if it was not yet: built before the update's transaction,
        as the Monday job does, when they are staff)."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        prepared = await self._prepare_for(pseudonym)
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            access = await access_of(conn, pseudonym)
            regions = sorted(access.staff_regions())
            if not regions:
                await self._tell(conn, actor, self._engine.message("not_available"), now, True)
                return
            week = shift_week(week_of(now, self._zone), -1)  # the last complete week
            await self.release_week(conn, week, now, prepared)
            await self._tell(conn, actor, "digest_coming", now)
            # Every region of theirs (it was the first three, without a word about the rest).
            for region in [NATIONAL] if access.is_admin else regions:
                await _schedule_report(conn, region, week, pseudonym, now)
            await AuditLog(conn).record(pseudonym, "digest.viewed", f"week:{week}", {}, now)

    async def _prepare_for(self, pseudonym: str) -> PreparedRelease | None:
        """For staff asking before Monday's release: the last complete week's digests,
        built outside the update's transaction. Nothing is built for anyone else."""
        week = shift_week(week_of(self._clock.now_ms(), self._zone), -1)
        async with self._db.read(quick=True) as conn:
            if not (await access_of(conn, pseudonym)).staff_regions():
                return None
            if await DigestStore(conn).get(NATIONAL, week) is not None:
                return None  # released already (all regions are released together)
        return await self.prepare_release(week)

    async def prepare_report(self, job: Job, now: int) -> tuple[bytes, str] | None:
        """The chart and the HTML report of one region's released digest, drawn outside
        any transaction (it takes a second or two), with the week's quotes read afresh.
        Quotes only for the region's managers and admins: staff asking with /digest get the
        figures. People were told their probation officer never sees their answers, and
        the newest of last week's words could be placed by the officer who supervises
        them (staff read quotable answers only through /review, with its delay and its
        k writers)."""
        region, week = str(job.payload["region"]), str(job.payload["week"])
        async with self._db.read() as conn:
            stored = await DigestStore(conn).get(region, week)
            digest = from_json(stored.cells) if stored else None
            if digest is None:
                return None
            previous = await chart_history(conn, region, week)
            asked_by = job.payload.get("asked_by")
            access = await access_of(conn, str(asked_by)) if asked_by else None
            managed = (
                access is None or access.is_admin or bool(region and access.is_manager_in(region))
            )
            quotes = (
                await read_quotes(conn, digest, self._zone, self._decrypt, now=now)
                if managed
                else None
            )
        name = region_name(region)
        return await asyncio.to_thread(report_files, digest, previous, name, quotes)

    async def send_report(
        self,
        conn: aiosqlite.Connection,
        job: Job,
        now: int,
        report: tuple[bytes, str] | None,
    ) -> None:
        """Send the chart (with a short summary of the main figures) and the HTML report to
        the region's managers, to every admin (the national view on Mondays), or to the
        staff member who asked with /digest."""
        region, week = str(job.payload["region"]), str(job.payload["week"])
        stored = await DigestStore(conn).get(region, week)
        if report is None or stored is None:
            return
        asked_by = job.payload.get("asked_by")
        if asked_by:
            people = [str(asked_by)]
        elif job.payload.get("to") == _ADMINS:
            people = await StaffRoles(conn).holders("admin", None)
        else:  # managers (also a report scheduled before admins were sent one)
            people = await StaffRoles(conn).holders("manager", region)
        for pseudonym in people:
            person = await People(conn).get(pseudonym)
            if person is None or not person.reachable:
                continue
            caption = self.caption(person.locale, from_json(stored.cells))
            png, html = report
            photo = {"photo": {"content_b64": base64.b64encode(png).decode()}, "text": caption}
            filename = f"yousaid-digest-{region or 'national'}-{week}.html"
            document = {"document": {"filename": filename, "content": html}}
            outbox = Outbox(conn)
            await outbox.enqueue(person.chat_id, PRIORITY_REPLY, "message", photo, now)
            await outbox.enqueue(person.chat_id, PRIORITY_REPLY, "message", document, now)

    def caption(self, locale: str, digest: Digest) -> str:
        """The summary under the chart: check-ins sent and completed, the themes most
        raised and the closed-loop rate, each as released (hidden ones say so)."""
        region = digest.region
        name = self._texts.common(locale, region_name(region))
        headline = summary_figures(digest)
        nothing = self._texts.text(locale, "digest_not_shown")
        return self._texts.text(
            locale,
            "digest_caption",
            region=name,
            week=digest.week,
            dates=week_dates(digest.week, locale),
            k=str(digest.k),
            sent=headline.sent or nothing,
            rate=headline.rate or nothing,
            # Theme labels are msgids (themes.yaml): in a Welsh caption, in Welsh.
            themes=", ".join(self._texts.common(locale, t) for t in headline.themes) or nothing,
            loop=headline.loop or nothing,
        )


def week_dates(week: str, locale: str) -> str:
    """An ISO week ("2026-W47") as the days it covers, as a manager reads them on a phone
    ("16–22 Nov 2026"; "28 Dec 2026 – 3 Jan 2027")."""
    year, number = (int(part) for part in week.split("-W"))
    first = date.fromisocalendar(year, number, 1)
    last = date.fromisocalendar(year, number, 7)
    return str(format_interval(first, last, "yMMMd", locale="en_GB" if locale == "en" else locale))


async def chart_history(conn: aiosqlite.Connection, region: str, week: str) -> list[Digest]:
    """The region's digests released for the trend weeks before `week`, as released: the
    chart fills weeks its own digest does not cover from them."""
    earlier = await DigestStore(conn).since(shift_week(week, -TREND_WEEKS))
    return [from_json(e.cells) for e in earlier if e.region == region and e.week < week]


@dataclass(frozen=True)
class Headline:
    """The few figures of a digest worth a phone's caption, as released ('' : not shown)."""

    sent: str
    rate: str
    themes: tuple[str, ...]
    loop: str


def summary_figures(digest: Digest, top: int = 3) -> Headline:
    def shown(section: str, row: str, column: str) -> str:
        for one in digest.section(section).rows:
            for cell in one.cells if one.key == row else ():
                if cell.column == column and not cell.suppressed:
                    return format_value(cell, digest.k)
        return ""

    themes = tuple(
        row.label
        for row in digest.section("themes").rows
        if row.key != PEOPLE and row.cells and not row.cells[0].suppressed and row.cells[0].value
    )[:top]
    loop = shown("loop", "rate", "number") if any(s.id == "loop" for s in digest.sections) else ""
    return Headline(
        shown("checkins", ALL, "sent"), shown("checkins", ALL, "response rate"), themes, loop
    )


async def _schedule_report(
    conn: aiosqlite.Connection,
    region: str,
    week: str,
    asked_by: str | None,
    now: int,
    to: str = _MANAGERS,
) -> None:
    """The Monday report of a week is keyed by region, week and who it goes to alone
    (`region:week:managers`, and `national:week:admins` for the admins' national view):
    the Monday job and a catch-up of it (`DigestService._catch_up`) schedule it once
    between them. One asked for with /digest is keyed by the moment too: asking again
    sends again."""
    key = f"{REPORT_JOB}:{region or 'national'}:{week}:"
    key += f"{asked_by}:{now}" if asked_by else to
    payload = {"region": region, "week": week, "asked_by": asked_by, "to": None if asked_by else to}
    await Schedules(conn).add(REPORT_JOB, key, now, payload, now)


async def _schedule(conn: aiosqlite.Connection, due: int, now: int) -> bool:
    """The Monday job of `due` (idempotent: keyed by it); False if it existed."""
    return await Schedules(conn).add(DIGEST_JOB, f"{DIGEST_JOB}:{due}", due, {"due": due}, now)


async def _schedule_checks(conn: aiosqlite.Connection, now: int) -> None:
    """The checks of the next day's hours (idempotent: keyed by the hour), as the check-ins'
    are (bot/checkins.py): a day of them, so a check given up after failures does not end
    the chain until the next restart."""
    hour = now // _HOUR_MS
    await Schedules(conn).add_all(
        [
            (DIGEST_CHECK_JOB, f"{DIGEST_CHECK_JOB}:{later}", later * _HOUR_MS, {})
            for later in range(hour + 1, hour + 25)
        ],
        now,
    )
