"""Kill -9 rounds: people in the middle of onboarding, check-ins, panel RSVPs and a panel
invitation broadcast while the real bot process (`python -m bot run`) is killed at seeded
random moments and started again.

Used by tests/test_faults.py (a short run in `make test`) and tests/soak.py (`make soak`).

What is checked, all against the bot's own database and the local server's records:
- acknowledged = the person received the reply to an answer. Right after every kill, each
  person with nothing in flight is still at exactly the place (dialogue and state) read
  from the database when their last reply arrived: nothing acknowledged was lost.
- after each restart every person's next reply is the next question of their script, so
  they resume where they were (a repeated reply is allowed: delivery is at least once).
- at the end: each consent, check-in, score, written answer and panel answer is stored
  once (no duplicated rows), the inbox has nothing pending or failed, every invited person
  got their invitation, and `PRAGMA integrity_check` passes.
Everyone here is invented.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.local_api import FakePerson, LocalBotApi, SentMessage
from bot.sender import DEFAULT_CONCURRENCY, FLUSH_AT
from storage.clock import SystemClock
from storage.database import Database
from storage.people import ConsentLedger, People
from storage.staff import StaffRoles
from tests.harness import TOKEN, BotProcess, Records, settings_for

NOTICE = "2026-11-v2"
REPLY_TIMEOUT_S = 90.0
# The bot keeps Telegram's per-chat pace (about one message a second), so a person's script
# spans many rounds: people join in the first half only, a few at a time, so that kills land
# at every stage and the run ends soon after the last round.
JOIN_EVERY = 3  # rounds between newcomers joining
NEWCOMERS = 3  # people joining each time
PANEL_EVERY = 10  # rounds between panels (each one a broadcast to the Wales cohort)
RSVPS_PER_PANEL = 3
PANEL_PLACES = 2  # fewer than the RSVPs, so the waiting list is exercised too


@dataclass(frozen=True)
class Step:
    """One thing a person does and a fragment of the reply that acknowledges it."""

    action: str  # "say", "tap" or "wait" (nothing sent: wait for a message)
    arg: str
    expect: tuple[str, ...]


def _s(action: str, arg: str, *expect: str) -> Step:
    return Step(action, arg, expect)


ONBOARDING = [
    _s("say", "/start", "Which language"),
    _s("tap", "English", "This is YouSaid"),
    _s("tap", "OK, go on", "Can we keep your answers"),
    _s("tap", "Yes", "Can we invite you to panels"),
    _s("tap", "Yes", "Can we tell you what changed"),
    _s("tap", "No", "Can we use your words"),
    _s("tap", "Yes", "Which area"),
    _s("tap", "London", "You are signed up"),
]
EXPECTED_CONSENTS = [
    ("feedback", 1, NOTICE),
    ("panel_invitations", 1, NOTICE),
    ("updates", 0, NOTICE),
    ("quotes", 1, NOTICE),
]


def checkin(text: str) -> list[Step]:
    return [
        _s("say", "/feedback", "5 short questions"),
        _s("tap", "Start", "listen to you"),
        _s("tap", "Mostly", "respect"),
        _s("tap", "Always", "fair way"),
        _s("tap", "Skip this one", "do what they say"),
        _s("tap", "Never", "What one thing"),
        _s("say", text, "Thank you"),
    ]


EXPECTED_SCORES = {"voice": 4, "respect": 5, "neutrality": None, "trust": 1}


def panel_new(title: str, when: str, people: int) -> list[Step]:
    return [
        _s("say", "/panel_new", "What is it called"),
        _s("say", title, "When is it"),
        _s("say", when, "Where is it"),
        _s("say", "Town hall", "How many places"),
        # Staff of Wales only: the area is not asked, and the title in Welsh is a must.
        _s("say", str(PANEL_PLACES), "must have its title in Welsh"),
        _s("say", f"Panel {title}", "in Welsh?"),
        _s("tap", "Skip", "What help"),
        _s("tap", "Done", title),
        _s("tap", "Send the invite", f"invite is going to: {people}."),
    ]


def rsvp(title: str) -> list[Step]:
    return [
        _s("wait", "", f"You are invited to a panel: {title}"),
        _s("tap", "Yes, I can come", "You have a place", "on the waiting list"),
    ]


@dataclass
class Walker:
    """One person working through a script, remembering what was acknowledged."""

    person: FakePerson
    steps: list[Step]
    after: asyncio.Task[None] | None = None  # the same person's previous script
    acked: int = 0
    in_flight: bool = False
    place: object = None  # the dialogue place read from the database at the last ack
    started: bool = False

    @property
    def done(self) -> bool:
        return self.acked == len(self.steps)


@dataclass
class RoundStats:
    rounds: int = 0
    kills: int = 0
    steps_acknowledged: int = 0
    in_flight_at_kill: int = 0
    idle_checked_at_kill: int = 0
    lost_acknowledged: int = 0
    people: int = 0
    panels: int = 0
    invitations_expected: int = 0
    repeated_invitations: int = 0
    integrity_checks: int = 0
    seconds: float = 0.0
    tail_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


class Fleet:
    """The local server, the bot process and everyone talking to it."""

    def __init__(self, api: LocalBotApi, tmp_path: Path, seed: int) -> None:
        self.api = api
        self.tmp_path = tmp_path
        self.rng = random.Random(seed)
        self.bot = BotProcess(api, tmp_path, SEND_RATE_PER_SECOND="400")
        # Set up by set_up(), once the bot has made the secrets file.
        self._records: Records | None = None
        self.walkers: list[Walker] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.stats = RoundStats()
        self.next_user = 740_000_000 + seed % 1000 * 10_000
        self.organiser = self.new_person()
        self.organiser_task: asyncio.Task[None] | None = None
        self.cohort: list[FakePerson] = []
        self.free_texts: dict[int, str] = {}
        self.panels: list[tuple[str, list[FakePerson]]] = []
        self._rsvp_cursor = 0

    @property
    def records(self) -> Records:
        assert self._records is not None, "set_up() first"
        return self._records

    def new_person(self) -> FakePerson:
        self.next_user += 1
        return FakePerson(user_id=self.next_user, first_name="-", language_code="en")

    # -- set-up ---------------------------------------------------------------------

    async def set_up(self, cohort_size: int) -> None:
        """Start the bot; the Wales cohort (consented to panels) and the organiser (Wales
        staff) are written as onboarding and `roles grant` would leave them."""
        await self.bot.start()
        self._records = Records(settings_for(self.api, self.tmp_path))
        self.cohort = [self.new_person() for _ in range(cohort_size)]
        now = SystemClock().now_ms()
        db = await Database.open(str(self.tmp_path / "yousaid.db"))
        try:
            async with db.transaction() as conn:
                for person in self.cohort:
                    self.api.add_chat(person)
                    who = self.records.pseudonym(person)
                    await People(conn).touch(who, person.chat_id, "en", now)
                    await People(conn).set_region(who, "wales", now)
                    await ConsentLedger(conn).record(who, "panel_invitations", True, NOTICE, now)
                organiser = self.records.pseudonym(self.organiser)
                await StaffRoles(conn).grant(organiser, "staff", "wales", False, "cli", now)
        finally:
            await db.close()

    # -- people ---------------------------------------------------------------------

    def launch(self, walker: Walker) -> asyncio.Task[None]:
        self.walkers.append(walker)
        task = asyncio.create_task(self._walk(walker))
        self.tasks.append(task)
        return task

    def newcomer(self) -> None:
        person = self.new_person()
        text = f"The office should open on Saturdays, says person {person.user_id % 10_000}."
        self.free_texts[person.user_id] = text
        self.stats.people += 1
        self.launch(Walker(person, [*ONBOARDING, *checkin(text)]))

    def panel(self) -> None:
        number = len(self.panels) + 1
        title = f"Panel {number:04d}"  # no title is a prefix of another
        when = (datetime.now(UTC) + timedelta(days=30 + number)).strftime("%d/%m/%Y 14:00")
        steps = panel_new(title, when, len(self.cohort))
        self.organiser_task = self.launch(Walker(self.organiser, steps, after=self.organiser_task))
        chosen = [
            self.cohort[(self._rsvp_cursor + n) % len(self.cohort)] for n in range(RSVPS_PER_PANEL)
        ]
        self._rsvp_cursor += RSVPS_PER_PANEL
        self.panels.append((title, chosen))
        self.stats.panels += 1
        for person in chosen:
            earlier = [
                t for w, t in zip(self.walkers, self.tasks, strict=True) if w.person == person
            ]
            previous = earlier[-1] if earlier else None
            self.launch(Walker(person, rsvp(title), after=previous))

    async def _walk(self, walker: Walker) -> None:
        if walker.after is not None:
            await walker.after
        walker.started = True
        anchor: SentMessage | None = None
        for step in walker.steps:
            # A message waited for may have come before this script started.
            before = 0 if step.action == "wait" else len(self.api.messages(walker.person.chat_id))
            walker.in_flight = step.action != "wait"
            if step.action == "say":
                self.api.send_text(walker.person, step.arg)
            elif step.action == "tap":
                message, data = _button_on(self.api, walker.person, anchor, step.arg)
                self.api.press_button(walker.person, message.message_id, data)
            anchor = await self._reply(walker, before, step)
            walker.place = self.records.place(walker.person)
            walker.acked += 1
            walker.in_flight = False
            self.stats.steps_acknowledged += 1

    async def _reply(self, walker: Walker, before: int, step: Step) -> SentMessage:
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while True:
            messages = self.api.messages(walker.person.chat_id)
            for message in messages[before:]:
                if any(fragment in (message.text or "") for fragment in step.expect):
                    return message
            if time.monotonic() > deadline:
                got = [(m.text or "")[:50] for m in messages[before:]]
                raise AssertionError(
                    f"person {walker.person.user_id % 10_000} step {walker.acked + 1} "
                    f"({step.action} {step.arg[:20]!r}): no reply with {step.expect}; got {got}"
                )
            await asyncio.sleep(0.02)

    # -- the rounds -----------------------------------------------------------------

    async def kill_and_check(self) -> None:
        process = self.bot.process
        if process is not None and process.returncode is not None:
            log = self.bot.log_path.read_text(errors="replace").splitlines()[-15:]
            raise AssertionError(
                f"the bot exited by itself (status {process.returncode}) before kill "
                f"{self.stats.kills + 1}; its log ends:\n" + "\n".join(log)
            )
        await self.bot.kill()
        self.stats.kills += 1
        # A person's latest script that has begun (an earlier one of theirs is history).
        latest = {w.person.user_id: w for w in self.walkers if w.started}
        for walker in latest.values():
            if walker.acked == 0:
                continue
            if walker.in_flight:
                self.stats.in_flight_at_kill += 1
                continue
            self.stats.idle_checked_at_kill += 1
            place = self.records.place(walker.person)
            if place != walker.place:
                self.stats.lost_acknowledged += 1
                self.stats.failures.append(
                    f"after kill {self.stats.kills}: person {walker.person.user_id % 10_000} "
                    f"at {place}, acknowledged {walker.place}"
                )
        check = self.records.query("PRAGMA quick_check")
        self.stats.integrity_checks += 1
        if check != [("ok",)]:
            self.stats.failures.append(f"quick_check after kill {self.stats.kills}: {check}")

    async def run(self, rounds: int) -> RoundStats:
        began = time.monotonic()
        for number in range(rounds):
            if number < rounds // 2 and number % JOIN_EVERY == 0:
                for _ in range(NEWCOMERS):
                    self.newcomer()
            if number % PANEL_EVERY == 0:
                self.panel()
            await asyncio.sleep(self.rng.uniform(0.1, 1.4))
            await self.kill_and_check()
            failed = [t for t in self.tasks if t.done() and t.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
            await self.bot.start()
            self.stats.rounds += 1
        rounds_done = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*self.tasks), timeout=REPLY_TIMEOUT_S * 2)
        self.stats.tail_seconds = round(time.monotonic() - rounds_done, 1)
        await self._settle()
        self.verify()
        self.stats.seconds = round(time.monotonic() - began, 1)
        return self.stats

    async def _settle(self) -> None:
        """Wait until nothing is pending: the inbox handled, the outbox sent."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = self.records.query(
                "SELECT (SELECT COUNT(*) FROM inbox WHERE status = 'pending') + "
                "(SELECT COUNT(*) FROM outbox WHERE status = 'pending')"
            )
            if busy == [(0,)]:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the bot did not settle: inbox or outbox still pending")

    # -- the end state --------------------------------------------------------------

    def verify(self) -> None:
        """Everything acknowledged is stored exactly once; nothing is half done."""
        failures = self.stats.failures
        records = self.records
        for user_id, text in self.free_texts.items():
            person = FakePerson(user_id=user_id, first_name="-")
            who = records.pseudonym(person)
            tag = f"person {user_id % 10_000}"
            if records.consents(person) != EXPECTED_CONSENTS:
                failures.append(f"{tag}: consents {records.consents(person)}")
            region = records.query("SELECT region FROM people WHERE pseudonym = ?", who)
            if region != [("london",)]:
                failures.append(f"{tag}: region {region}")
            checkins = records.query("SELECT id, status FROM checkins WHERE pseudonym = ?", who)
            if len(checkins) != 1 or checkins[0][1] != "completed":
                failures.append(f"{tag}: check-ins {checkins}")
                continue
            scores = dict(
                records.query(
                    "SELECT principle, score FROM checkin_scores WHERE checkin_id = ?",
                    checkins[0][0],
                )
            )
            if scores != EXPECTED_SCORES:
                failures.append(f"{tag}: scores {scores}")
            answers = records.query("SELECT ciphertext FROM answers WHERE pseudonym = ?", who)
            if [records.secrets.decrypt_text(bytes(a[0])) for a in answers] != [text]:  # type: ignore[arg-type]
                failures.append(f"{tag}: {len(answers)} written answers, expected 1")
        self._verify_panels()
        duplicates = records.query(
            "SELECT COUNT(*) FROM (SELECT panel_id, pseudonym FROM panel_invitations "
            "GROUP BY panel_id, pseudonym HAVING COUNT(*) > 1)"
        )
        if duplicates != [(0,)]:
            failures.append(f"duplicated panel invitations: {duplicates}")
        leftover = records.query(
            "SELECT status, COUNT(*) FROM inbox WHERE status <> 'handled' GROUP BY status"
        )
        if leftover:
            failures.append(f"inbox not all handled: {leftover}")
        check = records.query("PRAGMA integrity_check")
        self.stats.integrity_checks += 1
        if check != [("ok",)]:
            failures.append(f"integrity_check: {check}")

    def _verify_panels(self) -> None:
        failures = self.stats.failures
        records = self.records
        sent = Counter(
            (c.chat_id, str(c.params.get("text", "")).split("\n")[0].strip())
            for c in self.api.calls("sendMessage")
            if c.outcome == "ok" and "You are invited to a panel" in str(c.params.get("text", ""))
        )
        for title, chosen in self.panels:
            rows = records.query("SELECT id FROM panels WHERE title = ?", title)
            if len(rows) != 1:
                failures.append(f"{title}: {len(rows)} panels stored")
                continue
            panel_id = rows[0][0]
            repeated = 0
            for person in self.cohort:
                self.stats.invitations_expected += 1
                got = sent[(person.chat_id, f"You are invited to a panel: {title}")]
                if got == 0:
                    failures.append(f"{title}: person {person.user_id % 10_000} not invited")
                repeated += max(0, got - 1)
            # At least once: a kill can repeat only the sends in flight, i.e. under way or
            # confirmed but not yet group-committed (docs/architecture.md, Outbox).
            if repeated > DEFAULT_CONCURRENCY + FLUSH_AT:
                failures.append(f"{title}: {repeated} invitations repeated")
            self.stats.repeated_invitations += repeated
            answers = Counter(
                str(a)
                for (a,) in records.query(
                    "SELECT answer FROM panel_invitations WHERE panel_id = ? AND pseudonym IN "
                    "(SELECT value FROM json_each(?))",
                    panel_id,
                    "[" + ",".join(f'"{records.pseudonym(p)}"' for p in chosen) + "]",
                )
            )
            if answers != Counter({"yes": PANEL_PLACES, "waiting": RSVPS_PER_PANEL - PANEL_PLACES}):
                failures.append(f"{title}: answers {dict(answers)}")
            tickets = records.query(
                "SELECT COUNT(DISTINCT ticket), COUNT(ticket) FROM panel_invitations "
                "WHERE panel_id = ?",
                panel_id,
            )
            if tickets != [(PANEL_PLACES, PANEL_PLACES)]:
                failures.append(f"{title}: tickets {tickets}")

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.bot.terminate()


async def run_kill_rounds(tmp_path: Path, rounds: int, seed: int) -> RoundStats:
    """The whole thing on a fresh server and database."""
    async with LocalBotApi(
        token=TOKEN, bot_username="yousaid_test_bot", callback_query_ttl=600.0
    ) as api:
        fleet = Fleet(api, tmp_path, seed)
        try:
            await fleet.set_up(cohort_size=max(12, RSVPS_PER_PANEL * (rounds // PANEL_EVERY + 1)))
            return await fleet.run(rounds)
        finally:
            await fleet.close()


async def follow(
    api: LocalBotApi,
    person: FakePerson,
    steps: list[Step],
    timeout: float = 20.0,  # noqa: ASYNC109 - per reply, reported with what did arrive
    before_step: Callable[[int], None] | None = None,
) -> list[float]:
    """One person works through a script, each step after the reply to the one before;
    returns how long each reply took (seconds). `before_step(n)` runs before step n."""
    anchor: SentMessage | None = None
    took: list[float] = []
    for number, step in enumerate(steps, 1):
        if before_step is not None:
            before_step(number)
        before = 0 if step.action == "wait" else len(api.messages(person.chat_id))
        began = time.monotonic()
        if step.action == "say":
            api.send_text(person, step.arg)
        elif step.action == "tap":
            message, data = _button_on(api, person, anchor, step.arg)
            api.press_button(person, message.message_id, data)
        while True:
            found = [
                m
                for m in api.messages(person.chat_id)[before:]
                if any(fragment in (m.text or "") for fragment in step.expect)
            ]
            if found:
                anchor = found[0]
                break
            if time.monotonic() - began > timeout:
                got = [(m.text or "")[:50] for m in api.messages(person.chat_id)[before:]]
                raise AssertionError(
                    f"person {person.user_id % 10_000} step {number} ({step.action} "
                    f"{step.arg[:20]!r}): no reply with {step.expect} in {timeout}s; got {got}"
                )
            await asyncio.sleep(0.01)
        took.append(time.monotonic() - began)
    return took


def _button_on(
    api: LocalBotApi, person: FakePerson, anchor: SentMessage | None, label: str
) -> tuple[SentMessage, str]:
    for message in api.messages(person.chat_id):
        if anchor is not None and message.message_id != anchor.message_id:
            continue
        for row in (message.reply_markup or {}).get("inline_keyboard", []):
            for button in row:
                if button["text"] == label:
                    return message, button["callback_data"]
    raise AssertionError(f"no button {label!r} on the acknowledged reply")
