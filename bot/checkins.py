"""Feedback check-ins: asked for (/feedback) or sent to a region on a repeating schedule,
nudged once after a day, closed after a week; every answer stored as it is given.

A scheduled round is a broadcast (replies and safeguarding answers overtake it) built in
the transaction that records who was asked, so a restart neither loses nor repeats it. Each
check-in's nudge and expiry are stored jobs: exactly one of each, whatever restarts happen.
Only people with the feedback consent are asked, and the consent is checked again before
any answer is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiosqlite

from bot.broadcasts import BroadcastService
from bot.conversation import Actor, ConversationService, Sender
from bot.desk import Desk, DialogueTexts
from bot.log_tags import person_tag
from state_machines.engine import Engine
from state_machines.events import Abandon, Begin, Started
from state_machines.session import Session
from storage.answers import Answers
from storage.checkins import PRINCIPLES, Checkin, Checkins, CheckinSchedule
from storage.clock import Clock
from storage.database import Database
from storage.people import ConsentLedger, People, Sessions
from storage.queues import PRIORITY_BROADCAST, STALE_AT, Job, Outbox, Schedules
from storage.staff import AuditLog
from storage.updates import Updates

log = logging.getLogger(__name__)

ROUND_JOB = "checkin_round"
ROUND_BATCH = 200  # people asked per transaction of a round (<= 0.09 s of the lock, bench.jobs)
NUDGE_JOB = "checkin_nudge"
EXPIRE_JOB = "checkin_expire"
ROUNDS_CHECK_JOB = "checkin_rounds_check"  # hourly: a round stopped by a failure goes on
BUTTON_PREFIX = "ck:"  # ck:<check-in token>: Start / Carry on
HOUR_MS = 3_600_000
# A round resumed this many times, and stopped by a failure each time, is given up.
_RESUMES_PER_ROUND = 3
# A round asks everyone not asked since the last round's time plus this much: the last
# round's parts, or the round itself after a restart, may have run hours after its time.
ROUND_GRACE_MS = 12 * HOUR_MS
DIALOGUE = "feedback"
_SCALE = frozenset({"1", "2", "3", "4", "5"})


def iso_week(ms: int, zone: str) -> str:
    """The ISO week a moment falls in, in the service's time zone, e.g. "2026-W48"."""
    year, week, _ = (
        datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(ZoneInfo(zone)).isocalendar()
    )
    return f"{year}-W{week:02d}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def local_time_of_day(ms: int, zone: str) -> int:
    """A moment's wall-clock time of day in the zone, in ms after local midnight (10:00 is
    36_000_000): the time a region's rounds keep to."""
    moment = (_EPOCH + ms * _MS).astimezone(ZoneInfo(zone))
    return (moment - moment.replace(hour=0, minute=0, second=0, microsecond=0)) // _MS


def at_local_time(day: date, time_of_day_ms: int, zone: str) -> int:
    """The moment (ms, UTC) the zone's clocks show `time_of_day_ms` on `day`.

    Twice a year that is not one moment, and fold=0 settles both. A time in the hour the
    clocks go back through (01:00-02:00 on the last Sunday of October) happens twice: the
    first occurrence (still summer time) is taken, so a round never comes later than the
    time people know it by. A time in the hour skipped when they go forward (01:00-02:00 on
    the last Sunday of March) never shows: fold=0 reads it with the offset before the change,
    which moves it forward by the hour skipped, the same day (01:30 GMT is 02:30 BST)."""
    wall = datetime.combine(day, time()) + time_of_day_ms * _MS
    return (wall.replace(tzinfo=ZoneInfo(zone), fold=0) - _EPOCH) // _MS


def next_round_at(previous: int, every_days: int, time_of_day_ms: int, zone: str, now: int) -> int:
    """The round after the one due at `previous`: every_days on in the local calendar, at
    the rounds' local time of day. Not every_days x 24 hours on, which moves a 10:00 round
    to 09:00 when the clocks go back (and to 11:00 when they go forward). The first such
    day after now: rounds missed while the bot was down are skipped, not sent as a backlog."""
    day = (_EPOCH + previous * _MS).astimezone(ZoneInfo(zone)).date()
    while True:
        day += timedelta(days=every_days)
        next_at = at_local_time(day, time_of_day_ms, zone)
        if next_at > now:
            return next_at


def days_before(ms: int, days: int, zone: str) -> int:
    """The moment the local clock showed the same time `days` days (in the calendar) before.
    A round asks nobody asked since this: with rounds on the local clock, the round after
    the clocks go forward comes an hour sooner than N x 24 hours after the last, and
    measured in hours it would find everyone asked at the last round still too recent."""
    day = (_EPOCH + ms * _MS).astimezone(ZoneInfo(zone)).date() - timedelta(days=days)
    return at_local_time(day, local_time_of_day(ms, zone), zone)


def round_not_since(due: int, every_days: int, zone: str) -> int:
    """A round due at `due` asks those sent no check-in after this: the last round's time
    (`days_before`), plus ROUND_GRACE_MS (a quarter of the interval for daily rounds), so
    that everyone the last round asked is asked again though its parts ran late (up to
    the grace: one asked later than that, say by a part given up and resumed 13 hours on,
    waits for the round after; the price is that someone who asked for a check-in of
    their own just after the last round's time may be asked up to 12 hours early). Measured
    from the round's time, not the clock: its parts, and a round resumed after a failure,
    all ask by the same rule."""
    grace = min(ROUND_GRACE_MS, every_days * 24 * HOUR_MS // 4)
    return days_before(due, every_days, zone) + grace


class CheckinService(Desk[DialogueTexts]):
    """Starts, records, nudges and closes check-ins."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        engine: Engine,
        conversations: ConversationService,
        broadcasts: BroadcastService,
        texts: DialogueTexts,
        zone: str,
        nudge_after_ms: int,
        expire_after_ms: int,
        on_queued: Callable[[], None],
    ) -> None:
        super().__init__(db, clock, engine, texts, conversations, on_queued)
        self._broadcasts = broadcasts
        self._zone = zone
        self._nudge_after_ms = nudge_after_ms
        self._expire_after_ms = expire_after_ms
        conversations.register_submit("checkin_started", self.started)
        conversations.register_submit("checkin_not_now", self.not_now)
        conversations.register_submit("checkin_answer", self.answered)
        conversations.register_submit("checkin_completed", self.completed)
        conversations.register_submit("delete_past_answers", self.delete_past_answers)
        conversations.on_withdrawal(self.on_withdrawn)

    # --- a person asks, or taps Start / Carry on ------------------------------------------
    async def on_request(self, update_id: int, sender: Sender) -> None:
        """/feedback: the person's open check-in, or a new one."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            consents = await ConsentLedger(conn).current(pseudonym)
            if "feedback" not in consents:
                # Not asked yet (still signing up, or never started): "you said no" would
                # be untrue.
                await self._tell(conn, actor, "feedback_sign_up_first", now)
                return
            if not consents["feedback"]:
                await self._tell(conn, actor, "feedback_needs_consent", now)
                return
            checkin = await Checkins(conn).open_for(pseudonym)
            if checkin is None:
                checkin = await self._create(conn, actor, "asked", now)
            await self._open(conn, actor, checkin, now)

    async def on_button(self, update_id: int, sender: Sender, token: str) -> None:
        """Start (on a scheduled check-in) or Carry on (on its nudge)."""
        pseudonym = self._conversations.pseudonym_of(sender.user_id)
        async with self._acting(update_id, sender, pseudonym) as acting:
            if acting is None:
                return
            conn, now, actor = acting
            checkin = await Checkins(conn).by_token(token)
            if checkin is None or checkin.pseudonym != pseudonym:
                await self._tell(conn, actor, self._engine.message("not_available"), now, True)
            elif not checkin.is_open:
                await self._tell(conn, actor, "checkin_closed", now)
            elif not await _has_feedback_consent(conn, pseudonym):
                await self._tell(conn, actor, "feedback_needs_consent", now)
            else:
                await self._open(conn, actor, checkin, now)

    async def _open(
        self, conn: aiosqlite.Connection, actor: Actor, checkin: Checkin, now: int
    ) -> None:
        """Into the check-in: where the person left off if it is under way, else its start."""
        session = await _session(conn, actor.pseudonym)
        place = session.place
        under_way = (
            place is not None
            and place.dialogue == DIALOGUE
            and session.values_of(DIALOGUE).get("checkin") == checkin.token
        )
        event = Started() if under_way else Begin(DIALOGUE, {"checkin": checkin.token})
        await self._conversations.step_in(conn, actor, event, now)

    # --- the dialogue's submits (inside the update's transaction) -------------------------
    async def started(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        checkin = await self._own_open(conn, actor, values)
        if checkin is not None:
            await Checkins(conn).mark_started(checkin.id, now)

    async def not_now(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """ "Not now": no reminder about this check-in (it would nag someone who has just
        said when they are ready is up to them); /feedback or its Start button still work
        until it closes."""
        checkin = await self._own_open(conn, actor, values)
        if checkin is not None:
            await Checkins(conn).mark_nudged(checkin.id, now)

    async def answered(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Store the scale answers given so far (the last choice for each wins)."""
        checkin = await self._own_open(conn, actor, values)
        if checkin is None or not await _has_feedback_consent(conn, actor.pseudonym):
            return
        checkins = Checkins(conn)
        for principle in PRINCIPLES:
            value = values.get(principle)
            if value is not None and (value == "skip" or value in _SCALE):
                score = None if value == "skip" else int(value)
                await checkins.record_score(checkin.id, principle, score, now)

    async def completed(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        checkin = await self._own_open(conn, actor, values)
        if checkin is not None:
            await Checkins(conn).complete(checkin.id, now)

    async def delete_past_answers(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str], now: int
    ) -> None:
        """Withdrawing the feedback consent, the person chose to delete what they said too:
        their answers, scores and check-ins go (the anonymous weekly totals stay), and the
        record of the updates sent to them, which says what themes they raised."""
        await Checkins(conn).erase_person(actor.pseudonym)
        erased = await Answers(conn).erase(actor.pseudonym)
        await Updates(conn).erase_person(actor.pseudonym)
        await self._tell(conn, actor, "answers_deleted", now)
        log.info("person %s deleted %d past answers", person_tag(actor.pseudonym), erased)

    async def _own_open(
        self, conn: aiosqlite.Connection, actor: Actor, values: Mapping[str, str]
    ) -> Checkin | None:
        """The open check-in these answers belong to, if it is this person's."""
        checkin = await Checkins(conn).by_token(values.get("checkin", ""))
        if checkin is None or checkin.pseudonym != actor.pseudonym or not checkin.is_open:
            return None
        return checkin

    # --- scheduled rounds, nudges and expiry --------------------------------------------
    async def on_round(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """A region's round: ask everyone due (consenting, reachable, not asked within the
        interval), as one broadcast, and schedule the next round.

        A region is up to ~20,000 people: asked all in one transaction (as it once was, at
        ~1.6 ms each), everyone's updates would wait half a minute. So each run
        asks at most ROUND_BATCH people and, while more are due, leaves a job for the rest
        a moment later, in a transaction of its own, going on after the last person asked
        in pseudonym order (those asked are no longer due either, so a part run twice asks
        nobody twice), then once more from the beginning for anyone who became due behind
        it; the part that finds the last of them schedules the next round."""
        region = str(job.payload["region"])
        checkins = Checkins(conn)
        schedule = await checkins.schedule_of(region)
        if schedule is None or schedule.next_at != job.payload["due"]:
            return  # stopped, or replaced by a newer schedule with its own job
        # A part goes on from the last person the one before asked; a round's first job (or
        # one made again at start) from the beginning, whatever a round given up left.
        after = await checkins.round_position(region) if "first" in job.payload else ""
        not_since = round_not_since(schedule.next_at, schedule.every_days, self._zone)
        due = await checkins.due_people(region, not_since, now, ROUND_BATCH, after)
        # Last round's unfinished check-ins close now, not at their expiry a moment later:
        # they would otherwise keep their people out of this round.
        replaced = await checkins.close_open_sent_by([who for who, _, _ in due], not_since, now)
        for pseudonym, token in replaced:
            await self._take_out_of(conn, pseudonym, token, now)
        created = await checkins.create_for_round(
            [(pseudonym, locale) for pseudonym, _, locale in due],
            region,
            iso_week(now, self._zone),
            now,
        )
        await self._nudge_and_expire_later(conn, created, now)
        messages = [
            (chat_id, self._invitation(checkin.token, locale, "checkin_invite"))
            for (_, chat_id, locale), checkin in zip(due, created, strict=True)
        ]
        earlier = job.payload.get("broadcast")
        broadcast_id = await self._broadcasts.queue_more(
            conn,
            None if earlier is None else int(earlier),
            "checkin",
            f"checkin:{region}",
            region,
            "system",
            messages,
            now,
        )
        if len(due) == ROUND_BATCH or after:
            # More may be due after the last asked: the next part in a moment. At the end of
            # the region, once more from its beginning, for whoever became due behind the
            # walk meanwhile (said yes, moved in, could be reached again); the round ends
            # when a part from the beginning finds fewer than a part's worth.
            await checkins.move_round_position(
                region, due[-1][0] if len(due) == ROUND_BATCH else None
            )
            first, part = str(job.payload.get("first", job.key)), int(job.payload.get("part", 0))
            payload = {**job.payload, "first": first, "part": part + 1, "broadcast": broadcast_id}
            key = f"{first}:part:{part + 1}"
            await self._broadcasts.next_part_later(conn, broadcast_id, ROUND_JOB, key, payload, now)
            return
        await self._advance(conn, schedule, now)

    async def ensure_rounds(self) -> None:
        """At start: every region's round has its job waiting (see `_ensure_rounds`), and
        the hourly checks that keep it so while the bot runs are scheduled."""
        async with self._db.transaction() as conn:
            await self._check_rounds(conn, self._clock.now_ms())

    async def on_rounds_check(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """Hourly, while the bot runs: the same check as at start. A part of a round given
        up after repeated failures (a disk full for half an hour) was resumed only at the
        next restart, and that region's people went unasked until then."""
        await self._check_rounds(conn, now)

    async def _check_rounds(self, conn: aiosqlite.Connection, now: int) -> None:
        await self._ensure_rounds(conn, now)
        await _schedule_rounds_checks(conn, now)

    async def _ensure_rounds(self, conn: aiosqlite.Connection, now: int) -> None:
        """Every region's round has its job waiting. A round whose first job was given up
        after repeated failures never began (nobody was asked): it is skipped to its next
        time after now (and logged), as it was before the check ran hourly, and the job
        made again. A round begun but not finished (the bot stopped between its parts, or a
        part was given up) goes on: by its next part, if that is still to run, else by a
        job made again, in a broadcast of its own (the first one's progress tick logs it as
        not finished); those it asked already are not due, so nobody is asked twice. A
        round that keeps failing after it was resumed (_RESUMES_PER_ROUND times) is skipped
        too, rather than tried every hour for ever."""
        checkins, jobs = Checkins(conn), Schedules(conn)
        for schedule in await checkins.schedules():
            key = f"{ROUND_JOB}:{schedule.region}:{schedule.next_at}"
            status = await jobs.status_of(key)
            if status == "pending":
                continue
            if status == "done":  # begun, and stopped between its parts: go on with it
                if await jobs.pending_under(f"{key}:"):
                    continue  # its next part is still to run, and goes on by itself
                # each stop left a job given up: the first part's, then one per resumption
                if await jobs.failed_under(f"{key}:") <= _RESUMES_PER_ROUND:
                    await jobs.add(
                        ROUND_JOB,
                        f"{key}:resumed:{now}",
                        now,
                        {"region": schedule.region, "due": schedule.next_at},
                        now,
                    )
                    log.warning(
                        "the check-in round of %s stopped between parts; resumed",
                        schedule.region,
                    )
                    continue
                status = "failed again after being resumed"
            if status is not None:  # given up: that round will not be sent (or finished)
                await self._advance(conn, schedule, now)
                log.error(
                    "the check-in round of %s had failed (%s); the next is scheduled",
                    schedule.region,
                    status,
                )
                continue
            await schedule_round(conn, schedule.region, schedule.next_at, now)

    async def _advance(
        self, conn: aiosqlite.Connection, schedule: CheckinSchedule, now: int
    ) -> None:
        """Move a region's schedule on to its next round after now, and make its job.

        The rounds' local time of day is the one kept with the schedule. One made before it
        was kept takes it from the start staff gave when they scheduled it (the audit log
        has it; its next round may already have drifted an hour, with the old arithmetic in
        whole days of 24 hours, across a clock change), else from its next round's time, and
        keeps it from then on: read again from each next round's time, a round moved an hour
        forward because its time did not exist that day (the night the clocks go forward)
        would stay an hour late."""
        time_of_day = schedule.local_time_ms
        if time_of_day is None:
            given = await AuditLog(conn).latest_details(
                "checkin.scheduled", f"region:{schedule.region}"
            )
            start = given.get("next_at", "") if given else ""
            first_round = int(start) if start.isdigit() else schedule.next_at
            time_of_day = local_time_of_day(first_round, self._zone)
        next_at = next_round_at(schedule.next_at, schedule.every_days, time_of_day, self._zone, now)
        await Checkins(conn).advance_schedule(schedule.region, next_at, now, time_of_day)
        await schedule_round(conn, schedule.region, next_at, now)

    async def on_nudge(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """One gentle reminder for a check-in not finished after a day."""
        checkins = Checkins(conn)
        checkin = await checkins.get(int(job.payload["checkin_id"]))
        if checkin is None or not await checkins.mark_nudged(checkin.id, now):
            return
        person = await People(conn).get(checkin.pseudonym)
        if person is None or not person.reachable:
            return
        if not await _has_feedback_consent(conn, checkin.pseudonym):
            return
        payload = self._invitation(checkin.token, person.locale, "checkin_nudge")
        payload[STALE_AT] = checkin.sent_at + self._expire_after_ms  # closed by then
        await Outbox(conn).enqueue(person.chat_id, PRIORITY_BROADCAST, "message", payload, now)

    async def on_expire(self, conn: aiosqlite.Connection, job: Job, now: int) -> None:
        """A week on, an unfinished check-in closes; if the person is still in it, they are
        quietly taken back to where they were before it (what they answered is kept)."""
        checkins = Checkins(conn)
        checkin = await checkins.get(int(job.payload["checkin_id"]))
        if checkin is None or not await checkins.expire(checkin.id, now):
            return
        await self._take_out_of(conn, checkin.pseudonym, checkin.token, now)

    async def on_withdrawn(
        self, conn: aiosqlite.Connection, pseudonym: str, purposes: frozenset[str], now: int
    ) -> frozenset[str]:
        """No more feedback: close open check-ins (and the check-in dialogue, if the person
        is in it). No more quotes: forget every quote."""
        if "quotes" in purposes:
            await Answers(conn).forget_quotes(pseudonym)
        if "feedback" in purposes:
            await Checkins(conn).expire_all_open(pseudonym, now)
            return frozenset({DIALOGUE})
        return frozenset()

    # --- helpers ---------------------------------------------------------------------------
    async def _take_out_of(
        self, conn: aiosqlite.Connection, pseudonym: str, token: str, now: int
    ) -> None:
        """A check-in just closed: if its person is still in it, they are quietly taken
        back to where they were before it (what they answered is kept)."""
        session = await _session(conn, pseudonym)
        if session.values_of(DIALOGUE).get("checkin") != token:
            return
        person = await People(conn).get(pseudonym)
        if person is None:
            return
        actor = Actor(person.pseudonym, person.chat_id, person.locale)
        await self._conversations.step_in(conn, actor, Abandon(DIALOGUE), now)

    async def _create(
        self, conn: aiosqlite.Connection, actor: Actor, source: str, now: int
    ) -> Checkin:
        person = await People(conn).get(actor.pseudonym)
        region = person.region if person else None
        week = iso_week(now, self._zone)
        checkin = await Checkins(conn).create(
            actor.pseudonym, region, actor.locale, week, source, now
        )
        await self._nudge_and_expire_later(conn, [checkin], now)
        return checkin

    async def _nudge_and_expire_later(
        self, conn: aiosqlite.Connection, checkins: list[Checkin], now: int
    ) -> None:
        """Each check-in's one nudge (a day on, if not finished) and its expiry."""
        jobs: list[tuple[str, str, int, dict[str, Any]]] = []
        for checkin in checkins:
            payload = {"checkin_id": checkin.id}
            jobs.append(
                (NUDGE_JOB, f"{NUDGE_JOB}:{checkin.id}", now + self._nudge_after_ms, payload)
            )
            jobs.append(
                (EXPIRE_JOB, f"{EXPIRE_JOB}:{checkin.id}", now + self._expire_after_ms, payload)
            )
        await Schedules(conn).add_all(jobs, now)

    def _invitation(self, token: str, locale: str, key: str) -> dict[str, Any]:
        button = "start_button" if key == "checkin_invite" else "carry_on_button"
        data = f"{BUTTON_PREFIX}{token}"
        return {
            "text": self._texts.text(locale, key),
            "buttons": [[{"text": self._texts.text(locale, button), "callback_data": data}]],
        }


async def schedule_round(conn: aiosqlite.Connection, region: str, due: int, now: int) -> None:
    """The job for a region's next round (idempotent: keyed by region and due time)."""
    await Schedules(conn).add(
        ROUND_JOB, f"{ROUND_JOB}:{region}:{due}", due, {"region": region, "due": due}, now
    )


async def _schedule_rounds_checks(conn: aiosqlite.Connection, now: int) -> None:
    """The checks of the next day's hours (idempotent: keyed by the hour). A day of them,
    not only the next hour's: a check that fails until it is given up (the disk full for
    hours) takes back what it would have scheduled, and a chain of one would end there
    until the next restart."""
    hour = now // HOUR_MS
    await Schedules(conn).add_all(
        [
            (ROUNDS_CHECK_JOB, f"{ROUNDS_CHECK_JOB}:{later}", later * HOUR_MS, {})
            for later in range(hour + 1, hour + 25)
        ],
        now,
    )


async def _has_feedback_consent(conn: aiosqlite.Connection, pseudonym: str) -> bool:
    return (await ConsentLedger(conn).current(pseudonym)).get("feedback", False)


async def _session(conn: aiosqlite.Connection, pseudonym: str) -> Session:
    stored = await Sessions(conn).load(pseudonym)
    return Session.from_json(stored) if stored else Session()
