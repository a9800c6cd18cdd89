"""Access, table-driven: every command and every button route against every role and region.

One real bot (python-telegram-bot, storage, sender) against the local Bot API server. Seven
invented people: a participant in London, staff of London (region A), staff of Wales (region
B), a manager of London, an admin, a London staff member holding the safeguarding duty, and
someone who never wrote before. Real objects in London (a panel with the participant's
invitation, a safety request, a check-in, a delivered update, an answer, a broadcast) give
the buttons their data; each person then sends every command and taps every route with that
data, copied from someone else's message where it is not theirs. The expected outcome of
each (action, role) pair is written out below. The tables are checked against the code: a
command (dialogue YAML, app command table, CLI) or a button route without a row fails.

Also: reused and expired staff invites and enrolment codes, and a participant forwarding a
staff message with its buttons and tapping them.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from bot.access import create_invite
from bot.cli import main as cli_main
from bot.enrolment import create_batch
from bot.local_api import FakePerson, LocalBotApi
from bot.runtime import Runtime
from bot.telegram_adapter import _BROADCAST_STOP, AppServices, _button_routes, _command_routes
from storage.answers import Answers
from storage.broadcasts import Broadcasts
from storage.checkins import Checkins
from storage.panels import Panels
from storage.people import ConsentLedger, People
from storage.safeguarding import SafeguardingRequests
from storage.staff import StaffRoles
from storage.updates import Updates
from tests.conftest import DIALOGUES_DIR
from tests.harness import Chat, Records, eventually, running_bot

# Invented people, one per role.
ROLES = {
    "participant": FakePerson(user_id=740000001, first_name="Pia", language_code="en"),
    "staff_a": FakePerson(user_id=740000002, first_name="Sam", language_code="en"),
    "staff_b": FakePerson(user_id=740000003, first_name="Tegan", language_code="en"),
    "manager_a": FakePerson(user_id=740000004, first_name="Mina", language_code="en"),
    "admin": FakePerson(user_id=740000005, first_name="Ari", language_code="en"),
    "duty_a": FakePerson(user_id=740000006, first_name="Dara", language_code="en"),
    "unknown": FakePerson(user_id=740000007, first_name="Uma", language_code="en"),
}
OTHER = FakePerson(user_id=740000011, first_name="Newt", language_code="en")
REGION_A, REGION_B = "london", "wales"
STAFF_A = ("staff_a", "manager_a", "admin", "duty_a")  # may act for London

# Outcomes: what the person is told (a phrase of the reply), checked with the state below.
REFUSED = "not available"
UNKNOWN = "do not know that command"
OLD_BUTTON = "older message"


@dataclass(frozen=True)
class Case:
    """What one role gets for one action: a phrase the reply must contain."""

    expect: str


def every(role_outcomes: dict[str, str]) -> dict[str, str]:
    assert set(role_outcomes) == set(ROLES), sorted(set(ROLES) ^ set(role_outcomes))
    return role_outcomes


def only(allowed: tuple[str, ...], yes: str, no: str = REFUSED, **special: str) -> dict[str, str]:
    return every({r: special.get(r, yes if r in allowed else no) for r in ROLES})


def same(outcome: str, **special: str) -> dict[str, str]:
    return every({r: special.get(r, outcome) for r in ROLES})


# --- commands ---------------------------------------------------------------------------
# Phrases of the first answer to each command. Staff commands are refused to participants
# and to the unknown person alike; the region is checked again when a staff flow submits.
COMMANDS: dict[str, dict[str, str]] = {
    "help": same("You can send me"),
    # Consents are recorded against the notice read when signing up: someone unknown is
    # sent there first (staff joined by invite, and are not).
    "privacy": same("Here is what you agreed to", unknown="Please sign up first"),
    "language": same("Which language"),
    "area": same("Which area are you on probation in now"),  # always one's own
    "mydata": same("Here is what we keep about you"),  # always one's own
    # Anyone may read the area's updates; only those who said yes are sent new ones.
    "updates": same("The latest updates for your area:", unknown="We do not know your area yet"),
    # Staff were never asked "Keep my answers" (they did not sign up as participants).
    "feedback": same("not asked you yet", participant="5 short questions"),
    "delete": same("This deletes everything"),
    # Staff of any region may start these; the region is checked again on submit (tested
    # in the panel and update files: a Wales staff member cannot publish for London).
    "yousaid": only((*STAFF_A, "staff_b"), "Which themes is this about"),
    "panel_new": only((*STAFF_A, "staff_b"), "What is it called"),
    # The list shows only the person's own regions: Wales staff do not see London's panel.
    "panels": only(STAFF_A, "Housing panel", staff_b="no panels coming up in your areas"),
    # Staff get their own regions' digests (checked below: Wales staff get no London one).
    "digest": only((*STAFF_A, "staff_b"), "digest for last week is on its way"),
    # Managers and admins only: staff may be the writer's own officer.
    "review": only(("manager_a", "admin"), "people let us quote"),
    "start": same("You have already started"),
    "cancel": same("We stopped there"),
    "stop": same("You will get no more messages"),
}
# The powers of the command line (`python -m bot ...`: roles, invites, enrolment codes,
# backups, keys...) have no Telegram command at all, whoever sends them.
CLI_ONLY_EXPECT = UNKNOWN


# --- button routes ----------------------------------------------------------------------
# Data is made from the real London objects (see `Objects.data`), so for everyone but its
# owner it is data copied from someone else's message (forged).
ROUTES: dict[str, dict[str, str]] = {
    # The participant's panel invitation (Maybe): only theirs.
    "pr": only(("participant",), "as a maybe"),
    # /panels buttons (door tickets of a London panel): staff of London only.
    "pm": only(STAFF_A, "No one has a place"),
    # Answer a participant's relayed reply: staff of the panel's region only.
    "pa": only(STAFF_A, "Write your message about Housing panel"),
    # Carry on with a check-in: the participant's own only.
    "ck": only(("participant",), "5 short questions"),
    # Reply under a message from probation staff (safety relay): the requester only.
    "sg": only(("participant",), "Write your message to them"),
    # "Write to them" under a safety alert: the duty holders of the region only; not the
    # admin, not the manager, not other London staff.
    "sa": only(("duty_a",), "Write your message to them"),
    # The /mydata file: always the tapping person's own data (the data names no one).
    "md": same("everything we keep about you"),
    # Reaction to a 'you said, we did' update: the person it was delivered to only.
    "us": only(("participant",), "Thank you for telling us"),
    # Take an update back (from /updates): staff of its region, as may publish it.
    "uw": only(STAFF_A, "Take back the update about Housing"),
    # Change an answer's themes (/review): managers of the answer's region, and admins.
    "rt": only(("manager_a", "admin"), "Which themes is this answer about"),
    # Stop a broadcast: its organiser, staff of its region, admins. Tapped last (it stops
    # it); stopping edits the progress message instead of replying, so who stopped it is
    # read from the audit log below.
    "bc": only(STAFF_A, ""),
}
ROUTE_PATTERNS = {
    "pr": "pr:",
    "pm": "pm:",
    "pa": "pa:",
    "ck": "ck:",
    "sg": "sg:",
    "sa": "sa:",
    "md": "md:file",
    "us": "us:",
    "uw": "uw:",
    "rt": "rt:",
    "bc": "bc:",
}


class _Anything:
    """Stands in for the services when only the tables' keys and patterns are read."""

    def __getattr__(self, name: str) -> Any:
        return self


NO_SERVICES = cast(AppServices, _Anything())


def cli_commands() -> set[str]:
    """The sub-commands of `python -m bot`, read from its own help."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli_main(["--help"])
    names = re.findall(r"^    ([a-z][a-z-]+)", out.getvalue(), re.MULTILINE)
    assert "roles" in names and "invite" in names, names
    return set(names)


def telegram_commands() -> set[str]:
    """Every command a person can send: the dialogues' and the app's, and /start."""
    import yaml

    names = {"start"}
    for path in DIALOGUES_DIR.glob("*.yaml"):
        document = yaml.safe_load(path.read_text("utf-8")) or {}
        names |= set((document.get("commands") or {}).keys())
    return names | set(_command_routes(NO_SERVICES))


def test_every_command_and_route_has_a_row() -> None:
    """A command or button route added without a row here makes this fail."""
    assert set(COMMANDS) == telegram_commands()
    routes = [p.pattern for p, _ in _button_routes(NO_SERVICES)]
    routes.append(_BROADCAST_STOP.pattern)
    for pattern in routes:
        owners = [
            k for k, prefix in ROUTE_PATTERNS.items() if pattern.startswith(f"^{re.escape(prefix)}")
        ]
        assert len(owners) == 1, (pattern, owners)
    assert len(routes) == len(ROUTES) == len(ROUTE_PATTERNS)
    assert cli_commands() - telegram_commands(), "some powers are for the command line only"
    for outcomes in [*COMMANDS.values(), *ROUTES.values()]:
        assert set(outcomes) == set(ROLES)


# --- the end-to-end run -----------------------------------------------------------------


@dataclass
class Objects:
    panel: int
    invitation: str
    request: str
    checkin: str
    delivery: str
    answer: int
    broadcast: int
    update: int

    def data(self, route: str) -> str:
        return {
            "pr": f"pr:{self.invitation}:m",
            "pm": f"pm:{self.panel}:t",
            "pa": f"pa:{self.invitation}",
            "ck": f"ck:{self.checkin}",
            "sg": f"sg:{self.request}:r",
            "sa": f"sa:{self.request}",
            "md": "md:file",
            "us": f"us:{self.delivery}:h",
            "uw": f"uw:{self.update}",
            "rt": f"rt:{self.answer}",
            "bc": f"bc:{self.broadcast}",
        }[route]


async def set_up(api: LocalBotApi, runtime: Runtime) -> Objects:
    """The roles, as `roles grant` leaves them, and London's objects, as the flows leave
    them (the flows themselves are tested in their own files)."""
    now = runtime.clock.now_ms()
    who = runtime.service.pseudonym_of
    participant = who(ROLES["participant"].user_id)
    for role, person in ROLES.items():
        if role != "unknown":
            api.add_chat(person)
    async with runtime.db.transaction() as conn:
        people = People(conn)
        for role, person in ROLES.items():
            if role == "unknown":
                continue
            await people.touch(who(person.user_id), person.chat_id, "en", now)
            await people.set_region(who(person.user_id), REGION_A, now)
        for purpose in ("feedback", "panel_invitations", "updates", "quotes"):
            await ConsentLedger(conn).record(participant, purpose, True, "v1", now)
        roles = StaffRoles(conn)
        await roles.grant(who(ROLES["staff_a"].user_id), "staff", REGION_A, False, "cli", now)
        await roles.grant(who(ROLES["staff_b"].user_id), "staff", REGION_B, False, "cli", now)
        await roles.grant(who(ROLES["manager_a"].user_id), "manager", REGION_A, False, "cli", now)
        await roles.grant(who(ROLES["admin"].user_id), "admin", None, False, "cli", now)
        await roles.grant(who(ROLES["duty_a"].user_id), "staff", REGION_A, True, "cli", now)
        organiser = who(ROLES["staff_a"].user_id)
        panels = Panels(conn)
        panel = await panels.create(
            REGION_A, "Housing panel", now + 7 * 86_400_000, "Town hall", 5, (), organiser, now
        )
        invitation = await panels.invite(panel, participant, now)
        assert invitation is not None
        await panels.respond(invitation, "yes", now)
        request = await SafeguardingRequests(conn).open(participant, REGION_A, "self_harm", now)
        checkin = await Checkins(conn).create(participant, REGION_A, "en", "2026-W48", "asked", now)
        update = await Updates(conn).publish(
            REGION_A, "changed", ["housing"], "We changed the forms.", None, organiser, now
        )
        delivery = await Updates(conn).deliver(update.id, participant)
        # An answer /review could show: quotable, three days old, from an area where at
        # least k (10) people wrote (a forged button for any other is refused).
        sealed = Records(runtime.settings).secrets.encrypt_text("An invented answer.")
        written = now - 3 * 86_400_000
        answer = await Answers(conn).add(
            participant, "feedback", "q", sealed, written, checkin.id, quote=sealed
        )
        for n in range(10):  # k without the participant: their /delete runs before /review
            writer = f"p-invented-writer-{n}"
            await people.touch(writer, 880000000 + n, "en", now)
            await people.set_region(writer, REGION_A, now)
            await Answers(conn).add(writer, "feedback", "q", sealed, written, quote=sealed)
        broadcast = await Broadcasts(conn).create(
            "panel_invitation",
            f"panel:{panel}",
            REGION_A,
            organiser,
            [(1, {"text": "x"})],
            None,
            now,
        )
    return Objects(
        panel, invitation, request, checkin.token, delivery, answer, broadcast, update.id
    )


class Driver:
    """Sends one action as a person and returns what the bot answered, once settled."""

    def __init__(self, api: LocalBotApi, runtime: Runtime) -> None:
        self.api = api
        self.records = Records(runtime.settings)

    async def settle(self, update_id: int, chat_id: int, before: int) -> str:
        sql_in = "SELECT status FROM inbox WHERE update_id = ?"
        sql_out = "SELECT COUNT(*) FROM outbox WHERE chat_id = ? AND status = 'pending'"
        await eventually(lambda: self.records.query(sql_in, update_id) == [("handled",)])
        await eventually(lambda: self.records.query(sql_out, chat_id) == [(0,)])
        new = self.api.messages(chat_id)[before:]
        return "\n".join((m.text or m.caption or m.file_name or "") for m in new)

    def _anchor(self, person: FakePerson) -> int:
        """A bot message in the person's chat to hang a tap on (Telegram needs one)."""
        messages = self.api.messages(person.chat_id)
        assert messages, "the person needs a bot message first"
        return messages[-1].message_id

    async def say(self, person: FakePerson, text: str) -> str:
        before = len(self.api.messages(person.chat_id))
        update_id = self.api.send_text(person, text)
        return await self.settle(update_id, person.chat_id, before)

    async def say_all(self, person: FakePerson, texts: list[str]) -> str:
        before = len(self.api.messages(person.chat_id))
        update_ids = [self.api.send_text(person, text) for text in texts]
        sql = "SELECT COUNT(*) FROM inbox WHERE status = 'handled' AND update_id IN ({})"
        listed = sql.format(",".join(map(str, update_ids)))
        await eventually(lambda: self.records.query(listed) == [(len(update_ids),)])
        return await self.settle(update_ids[-1], person.chat_id, before)

    async def tap(self, person: FakePerson, data: str) -> str:
        before = len(self.api.messages(person.chat_id))
        update_id = self.api.press_button(person, self._anchor(person), data)
        return await self.settle(update_id, person.chat_id, before)

    async def send(self, person: FakePerson, update: dict[str, Any]) -> str:
        before = len(self.api.messages(person.chat_id))
        update_id = self.api.send_update(update)
        return await self.settle(update_id, person.chat_id, before)


def check(results: dict[tuple[str, str], str], table: dict[str, dict[str, str]]) -> list[str]:
    wrong = []
    for action, outcomes in table.items():
        for role, expect in outcomes.items():
            reply = results[(action, role)]
            refused_wrongly = expect != REFUSED and REFUSED in reply
            if expect.lower() not in reply.lower() or refused_wrongly:
                wrong.append(f"{action} as {role}: expected {expect!r}, got {reply[:120]!r}")
    return wrong


async def test_every_command_and_button_against_every_role(
    api: LocalBotApi, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path) as runtime:
        objects = await set_up(api, runtime)
        driver = Driver(api, runtime)
        records = driver.records
        # Everyone but the unknown person has seen the bot (help) before tapping anything.
        for role, person in ROLES.items():
            if role != "unknown":
                await driver.say(person, "/help")
        results: dict[tuple[str, str], str] = {}
        # Buttons first (the broadcast last: an allowed tap stops it), refused roles first.
        for route in [r for r in ROUTES if r != "bc"] + ["bc"]:
            order = sorted(ROLES, key=lambda r: ROUTES[route][r] != REFUSED)
            for role in order:
                person = ROLES[role]
                if not api.messages(person.chat_id):
                    await driver.say(person, "/help")  # the unknown person writes first
                results[(route, role)] = await driver.tap(person, objects.data(route))
        # Nothing a refused tap would change did change (the participant's own Maybe stands).
        assert records.query("SELECT status FROM safeguarding_requests") == [("asked",)]
        assert records.query("SELECT answer FROM panel_invitations") == [("maybe",)]
        cli_only = sorted(cli_commands() - telegram_commands())
        for role, person in ROLES.items():
            for command in [c for c in COMMANDS if c != "stop"] + ["stop"]:
                results[(command, role)] = await driver.say(person, f"/{command}")
            # All of them at once (one wait): each must be answered as an unknown command.
            replies = await driver.say_all(person, [f"/{c}" for c in cli_only])
            if replies.count(CLI_ONLY_EXPECT) == len(cli_only) and REFUSED not in replies:
                replies = CLI_ONLY_EXPECT
            results.update({(f"cli:{c}", role): replies for c in cli_only})
        wrong = check(results, ROUTES) + check(results, COMMANDS)
        wrong += check(results, {f"cli:{c}": same(CLI_ONLY_EXPECT) for c in cli_only})
        assert wrong == [], "\n".join(wrong)
        staff_b_chat = api.messages(ROLES["staff_b"].chat_id)
        assert not any("digest for London" in (m.text or m.caption or "") for m in staff_b_chat)
        # Refusals changed nothing: no staff-only audit entry by anyone not allowed.
        audit = records.query("SELECT actor, action FROM audit_log")
        allowed_actors = {runtime.service.pseudonym_of(ROLES[r].user_id) for r in STAFF_A}
        staff_actors = allowed_actors | {runtime.service.pseudonym_of(ROLES["staff_b"].user_id)}
        for actor, action in audit:
            # Only London's staff act on London's things; Wales staff only list and read.
            assert actor in staff_actors | {"system"}, (actor, action)
            if actor not in allowed_actors | {"system"}:
                assert action in ("panel.listed", "digest.viewed", "answers.reviewed"), action
        stopped = {a for a, act in audit if act == "broadcast.stopped"}
        assert stopped == allowed_actors


# --- links, forwards and copied dialogue buttons ------------------------------------------
# (case, expected phrase of the reply, role held afterwards by the person who used it)
LINK_CASES = [
    ("staff invite, first use", "You are now a staff member for London", "staff"),
    ("the same invite, by someone else", "used already", None),
    ("the same invite, by its first user again", "You used this invite link already", "staff"),
    ("an expired staff invite", "too old", None),
    ("an invite-shaped code never issued", "code I cannot use", None),
    ("enrolment code, first use", "tells us your area", None),
    ("the same enrolment code, by someone else", "code I cannot use", None),
    ("an expired enrolment code", "code I cannot use", None),
]


async def test_links_forwards_and_copied_buttons_grant_nothing(
    api: LocalBotApi, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path) as runtime:
        objects = await set_up(api, runtime)
        driver = Driver(api, runtime)
        records = driver.records
        secrets = records.secrets
        now = runtime.clock.now_ms()
        day = 86_400_000

        async def invite(created_at: int) -> str:
            link = await create_invite(
                runtime.db,
                secrets,
                "staff",
                REGION_A,
                False,
                1,
                "yousaid_test_bot",
                created_at,
                "cli",
            )
            return link.rsplit("=", 1)[1]

        async def code(created_at: int, folder: str) -> str:
            batch = await create_batch(
                runtime.db,
                secrets,
                REGION_B,
                1,
                1,
                "yousaid_test_bot",
                tmp_path / folder,
                created_at,
            )
            return batch.csv_path.read_text().splitlines()[1].split(",")[0]

        fresh, old = await invite(now), await invite(now - 2 * day)
        fresh_code, old_code = await code(now, "a"), await code(now - 2 * day, "b")
        people = [FakePerson(user_id=740000100 + n, first_name=f"Link{n}") for n in range(8)]
        payloads = [fresh, fresh, fresh, old, "s" + "a" * 15, fresh_code, fresh_code, old_code]
        users = [
            people[0],
            people[1],
            people[0],
            people[3],
            people[4],
            people[5],
            people[6],
            people[7],
        ]
        wrong = []
        for (case, expect, role), person, payload in zip(LINK_CASES, users, payloads, strict=True):
            reply = await driver.say(person, f"/start {payload}")
            held = records.query(
                "SELECT role FROM staff_roles WHERE pseudonym = ?", records.pseudonym(person)
            )
            if expect not in reply or held != ([(role,)] if role else []):
                wrong.append(f"{case}: {reply[:80]!r}, roles {held}")
        assert wrong == [], wrong
        assert records.query("SELECT COUNT(*) FROM people WHERE region = ?", REGION_B) == [
            (1,)
        ]  # only the first use of the enrolment code placed someone
        with pytest.raises(ValueError, match="never by an invite link"):
            await create_invite(
                runtime.db, secrets, "admin", None, False, 1, "yousaid_test_bot", now, "cli"
            )

        # A participant forwards the duty holder's safety alert (with its button) to the
        # bot, then taps the button on the forwarded copy: neither does anything.
        participant = ROLES["participant"]
        await driver.say(participant, "/help")
        forwarded = {
            "message_id": 990001,
            "date": int(time.time()),
            "chat": participant.private_chat_json(),
            "from": participant.user_json(),
            "text": "Someone asked for contact.",
            "forward_origin": {"type": "user", "date": 1, "sender_user": runtime_bot(api)},
            "reply_markup": {
                "inline_keyboard": [
                    [
                        {"text": "Write to them", "callback_data": f"sa:{objects.request}"},
                        {"text": "Tickets", "callback_data": f"pm:{objects.panel}:t"},
                    ]
                ]
            },
        }
        assert "your own words" in await driver.send(participant, {"message": forwarded})
        for data in (f"sa:{objects.request}", f"pm:{objects.panel}:t", f"rt:{objects.answer}"):
            query = {
                "id": f"q{data}",
                "from": participant.user_json(),
                "chat_instance": "1",
                "message": forwarded,
                "data": data,
            }
            assert REFUSED in await driver.send(participant, {"callback_query": query}), data

        # A staff dialogue's own button (with its values' digest), copied to a participant:
        # the engine calls it an old button and acts on nothing.
        staff = ROLES["staff_a"]
        await driver.say(staff, "/yousaid")
        staff_buttons = [
            b["callback_data"]
            for m in api.messages(staff.chat_id)
            for row in (m.reply_markup or {}).get("inline_keyboard", [])
            for b in row
        ]
        assert staff_buttons
        for data in staff_buttons[:3]:
            assert OLD_BUTTON in await driver.tap(participant, data)
        session = records.place(participant)
        assert session is None or session[0] not in ("yousaid", "panel_new")
        assert records.query("SELECT COUNT(*) FROM updates") == [(1,)]


def runtime_bot(api: LocalBotApi) -> dict[str, Any]:
    """The bot's own user, as `forward_origin` names it."""
    return {"id": 123456789, "is_bot": True, "first_name": "YouSaid"}


async def test_staff_of_another_region_cannot_submit_for_london(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Wales staff may start /panel_new and /yousaid (they are staff), and the forms offer
    only Wales (so do not ask); London chosen while Wyn was staff there too is refused when
    the form is sent once that role is gone, and nothing is made."""
    async with running_bot(api, tmp_path) as runtime:
        await set_up(api, runtime)
        records = Records(runtime.settings)
        wyn = Chat(api, ROLES["staff_b"])
        when = datetime.now(ZoneInfo("Europe/London")) + timedelta(days=30)
        assert "What is it called" in (await wyn.say("/panel_new")).text
        assert "When is it" in (await wyn.say("Another panel")).text
        assert "Where is it" in (await wyn.say(when.strftime("%d/%m/%Y 14:00"))).text
        assert "How many places" in (await wyn.say("Town hall")).text
        # Wales's staff: not asked the area; the title in Welsh is a must there.
        assert "must have its title in Welsh" in (await wyn.say("3")).text
        await wyn.say("Panel arall")
        assert "What help" in (await wyn.tap("Skip")).text
        assert "Area: Wales" in (await wyn.tap("Done")).text
        await wyn.tap("Do not send")
        wyn_actor = records.pseudonym(ROLES["staff_b"])
        async with runtime.db.transaction() as conn:
            await StaffRoles(conn).grant(wyn_actor, "staff", "london", False, "cli", 0)
        assert "What is it called" in (await wyn.say("/panel_new")).text
        assert "When is it" in (await wyn.say("Another panel")).text
        assert "Where is it" in (await wyn.say(when.strftime("%d/%m/%Y 14:00"))).text
        assert "How many places" in (await wyn.say("Town hall")).text
        assert "Which area" in (await wyn.say("3")).text
        # Typed, an area not offered is no tap (not "a button from an older message").
        assert "Please tap one of the buttons" in (await wyn.say("North East")).text
        await wyn.tap("London")
        await wyn.tap("Skip")
        assert "What help" in (await wyn.tap("Skip")).text
        preview = await wyn.tap("Done")
        assert "London" in preview.text
        await take_away_london(runtime, wyn_actor)
        assert REFUSED in (await wyn.tap("Send the invite")).text
        assert records.query("SELECT COUNT(*) FROM panels") == [(1,)]  # only set_up's

        async with runtime.db.transaction() as conn:
            await StaffRoles(conn).grant(wyn_actor, "staff", "london", False, "cli", 0)
        assert "Which themes" in (await wyn.say("/yousaid")).text
        await wyn.toggle("Housing")
        await wyn.tap("Done")
        await wyn.tap("Yes, go on")
        await wyn.tap("We changed this")
        assert "Which area" in (await wyn.say("An invented change.")).text
        await wyn.tap("London")
        assert "Area: London" in (await wyn.tap("Skip")).text
        await take_away_london(runtime, wyn_actor)
        refused = (await wyn.tap("Send it")).text
        assert "only to the areas where you are staff" in refused  # told why, not vaguely
        assert records.query("SELECT COUNT(*) FROM updates") == [(1,)]  # only set_up's
        assert records.query("SELECT COUNT(*) FROM audit_log WHERE actor = ?", wyn_actor) == [(0,)]


async def take_away_london(runtime: Runtime, who: str) -> None:
    """London's role taken away from `who` while a form is open (as `roles revoke` does)."""
    async with runtime.db.transaction() as conn:
        assert await StaffRoles(conn).revoke(who, "staff", "london")
