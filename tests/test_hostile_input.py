"""Hostile and odd input: arbitrary but well-formed Telegram updates, and one person flooding.

The real bot (python-telegram-bot Application, storage, sender) runs against the local Bot API
server. Hypothesis draws updates of every shape Telegram can send: private messages and
commands, edits, button taps with random or forged `callback_data` (the app routes' prefixes,
other people's real buttons), forwards, media, service notices, group and supergroup chats,
channel posts, `my_chat_member` changes and inline queries. Kinds the bot does not ask
Telegram for (channel posts, inline queries) are handed to the bot's own ingest directly, as
if Telegram sent them anyway. Afterwards: no update made the error handler (or Sentry) fire,
none is left pending, every inbox payload is gone, and no table grew beyond a small constant
per person. Everyone here is invented.

`make test` runs a few dozen examples (the same ones under CI=true); for a long hunt:
`HOSTILE_LONG=1 .venv/bin/python -m pytest -q tests/test_hostile_input.py` (200 each, with
shrinking; about two minutes).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bot import error_reporting
from bot.flood import DEFAULT_LIMIT, DEFAULT_WINDOW_S, FloodGate, Verdict
from bot.local_api import FakePerson, LocalBotApi
from bot.runtime import Runtime
from storage.database import Database
from storage.people import People
from storage.queues import Inbox, Outbox
from tests.harness import Chat, Records, eventually, onboard, running_bot, settings_for

T = TypeVar("T")

# Invented people: four who write to the bot privately, two only ever seen in groups.
PRIVATE = [
    FakePerson(user_id=730000001, first_name="Hana", language_code="en"),
    FakePerson(user_id=730000002, first_name="Ifan", language_code="cy"),
    FakePerson(user_id=730000003, first_name="Jo", language_code=None),
    FakePerson(user_id=730000004, first_name="Kemi", language_code="fr"),
]
GROUP_ONLY = [
    FakePerson(user_id=730000011, first_name="Lior", language_code="en"),
    FakePerson(user_id=730000012, first_name="Mo", language_code="en"),
]
GROUPS = [
    {"id": -730001, "type": "group", "title": "Invented group"},
    {"id": -1000730002, "type": "supergroup", "title": "Invented supergroup"},
]
CHANNEL = {"id": -1000730003, "type": "channel", "title": "Invented channel"}

# Forged callback data starts like the real routes (bot/telegram_adapter.py) and the engine.
PREFIXES = ["pr:", "pm:", "pa:", "ck:", "sg:", "sa:", "md:file", "us:", "rt:", "bc:", "d"]
COMMANDS = [
    "start",
    "help",
    "privacy",
    "language",
    "delete",
    "stop",
    "yousaid",
    "panel_new",
    "panels",
    "feedback",
    "mydata",
    "updates",
    "digest",
    "review",
    "roles",
    "invite",
    "admin",
]

# Hypothesis runs few examples, the same ones on every CI run.
settings.register_profile(
    "hostile",
    max_examples=40,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    # Each example drives the real bot: shrinking a failure would take minutes. The failing
    # example is printed whole; `HOSTILE_LONG=1` runs many more, with shrinking.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "hostile-long",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = "hostile-long" if os.environ.get("HOSTILE_LONG") else "hostile"


@dataclass(frozen=True)
class Step:
    """One update to send, in the abstract (resolved against the bot's messages when sent)."""

    kind: str
    who: int
    text: str
    data: str
    pick: int


def _bytes_at_most(limit: int) -> Callable[[str], str]:
    def cut(text: str) -> str:
        raw = text.encode()[:limit]
        return raw.decode(errors="ignore")

    return cut


_TEXT = st.text(st.characters(codec="utf-8"), max_size=200)  # no lone surrogates
_TOKENISH = st.one_of(
    st.text("0123456789abcdef", min_size=0, max_size=20),
    st.integers(-(10**13), 10**13).map(str),
    st.sampled_from(["y", "n", "m", "r", "x", "t", "s:travel", ":", "::", "1:x", "a" * 16]),
)
_FORGED = st.builds(
    lambda prefix, parts: prefix + ":".join(parts),
    st.sampled_from(PREFIXES),
    st.lists(_TOKENISH, max_size=3),
)
_DATA = st.one_of(_FORGED, _TEXT.map(_bytes_at_most(64)), st.just("")).map(_bytes_at_most(64))
_COMMAND_TEXT = st.builds(
    lambda name, at, rest: f"/{name}{at} {rest}".rstrip(),
    st.sampled_from(COMMANDS) | st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
    st.sampled_from(["", "@yousaid_test_bot", "@other_bot"]),
    st.one_of(st.just(""), _TEXT, st.from_regex(r"s[a-z2-9]{15}", fullmatch=True)),
)

JUNK_KINDS = [
    "edit",
    "tap_forged",
    "tap_other_persons_button",
    "tap_no_message",
    "tap_old_message",
    "forward",
    "forward_from_bot",
    "media",
    "service_private",
    "group_message",
    "group_service",
    "group_edit",
    "group_tap",
    "channel_post",
    "my_member_private",
    "my_member_group",
    "inline_query",
]
LEGIT_KINDS = ["text", "command", "tap_real", "tap_real", "tap_real"]

_STEP = st.builds(
    Step,
    kind=st.sampled_from(JUNK_KINDS),
    who=st.integers(0, len(PRIVATE) - 1),
    text=_TEXT,
    data=_DATA,
    pick=st.integers(0, 10_000),
)
_LEGIT_STEP = st.builds(
    Step,
    kind=st.sampled_from(LEGIT_KINDS),
    who=st.integers(0, len(PRIVATE) - 1),
    text=st.one_of(_TEXT, _COMMAND_TEXT, st.sampled_from(["Yes", "No", "STOP", "1", "ok"])),
    data=_DATA,
    pick=st.integers(0, 10_000),
)
JUNK = st.lists(_STEP, min_size=1, max_size=25)
MIXED = st.lists(st.one_of(_STEP, _LEGIT_STEP, _LEGIT_STEP, _LEGIT_STEP), min_size=1, max_size=30)


class Feeder:
    """Turns abstract steps into real updates: through the local server for the kinds the
    bot asks Telegram for, through the bot's ingest for the rest."""

    def __init__(self, api: LocalBotApi, runtime: Runtime) -> None:
        self.api = api
        self.runtime = runtime
        self.update_ids: list[int] = []
        self.private_updates = 0
        self.legit_updates = 0
        self._direct_ids = itertools.count(900_000_000)
        self._message_ids = itertools.count(500_000)
        self._bot = {"id": 123456789, "is_bot": True, "first_name": "YouSaid"}

    async def feed(self, steps: list[Step]) -> None:
        for step in steps:
            await self._one(step)
        await self.settled()

    async def settled(self) -> None:
        """Every update fed is in the inbox and handled (or given up)."""
        ids = set(self.update_ids)
        records = Records(self.runtime.settings)

        def done() -> bool:
            rows = records.query("SELECT update_id, status FROM inbox")
            seen = {int(str(u)) for u, s in rows if s != "pending"}
            return ids <= seen

        await eventually(done)

    async def _replied(self, person: FakePerson) -> None:
        """Everything sent so far is handled and every reply to the person delivered."""
        await self.settled()
        records = Records(self.runtime.settings)
        sql = "SELECT COUNT(*) FROM outbox WHERE chat_id = ? AND status = 'pending'"
        await eventually(lambda: records.query(sql, person.chat_id) == [(0,)])

    def _message(self, chat: dict[str, Any], sender: dict[str, Any] | None) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
        }
        if sender is not None:
            message["from"] = sender
        return message

    def _send(self, update: dict[str, Any]) -> None:
        self.update_ids.append(self.api.send_update(update))

    async def _direct(self, update: dict[str, Any]) -> None:
        """A kind the bot never asks for, delivered anyway (as a misbehaving peer might)."""
        update_id = next(self._direct_ids)
        self.update_ids.append(update_id)
        await self.runtime.ingest.store([{"update_id": update_id, **update}])

    def _real_or_forged(self, step: Step) -> str:
        buttons = self._buttons(but_not_shown_to=PRIVATE[step.who])
        return buttons[step.pick % len(buttons)] if buttons else "pr:0000000000000000:y"

    def _bot_messages(self, chat_id: int) -> list[Any]:
        return [m for m in self.api.messages(chat_id) if not m.deleted]

    def _buttons(self, but_not_shown_to: FakePerson | None = None) -> list[str]:
        """Every callback_data the bot has shown anyone in a private chat; but not any it
        has shown `but_not_shown_to` too. A dialogue's button data is the same for everyone
        ("English" on the language question), so tapping someone else's copy of a button
        of one's own current question is a real answer, not junk (it once stored a consent
        in the junk test)."""
        own = (
            set()
            if but_not_shown_to is None
            else {
                data
                for message in self._bot_messages(but_not_shown_to.chat_id)
                for data in _buttons_of(message)
            }
        )
        return [
            data
            for person in PRIVATE
            for message in self._bot_messages(person.chat_id)
            for data in _buttons_of(message)
            if data not in own
        ]

    async def _one(self, step: Step) -> None:
        person = PRIVATE[step.who]
        user = person.user_json()
        chat = person.private_chat_json()
        outsider = GROUP_ONLY[step.pick % len(GROUP_ONLY)].user_json()
        group = GROUPS[step.pick % len(GROUPS)]
        kind = step.kind
        if kind == "tap_real":  # as a person does: read the question, then tap
            await self._replied(person)
        if kind in ("tap_real", "tap_forged", "tap_other_persons_button"):
            tapped = self._bot_messages(person.chat_id)
            # Someone else's button: none the person was shown too (see `_buttons`).
            others = kind == "tap_other_persons_button"
            buttons = self._buttons(but_not_shown_to=person if others else None)
            if not tapped:  # no bot message to tap yet: Telegram could not send a tap
                kind = "text"
            else:
                message = tapped[step.pick % len(tapped)]
                data = step.data
                own = _buttons_of(tapped[-1])
                if kind == "tap_real" and own:  # the question they are being asked now
                    message, data = tapped[-1], own[step.pick % len(own)]
                elif kind != "tap_forged" and buttons:
                    data = buttons[step.pick % len(buttons)]
                self.private_updates += 1
                self.legit_updates += kind == "tap_real"
                self.update_ids.append(self.api.press_button(person, message.message_id, data))
                return
        if kind in ("text", "command"):
            text = step.text or "hello"
            if kind == "command" and not text.startswith("/"):
                text = "/" + text
            self.private_updates += 1
            self.legit_updates += 1
            self.update_ids.append(self.api.send_text(person, text))
            return
        private_kinds = ("edit", "forward", "forward_from_bot", "media", "service_private")
        if kind in private_kinds or kind in (
            "tap_no_message",
            "tap_old_message",
            "my_member_private",
        ):
            self.private_updates += 1
        if kind == "edit":
            message = self._message(chat, user) | {"text": step.text or "x"}
            message["edit_date"] = message["date"]
            self._send({"edited_message": message})
        elif kind == "tap_no_message":  # a button of an inline message: no chat at all
            query = {
                "id": str(next(self._message_ids)),
                "from": user,
                "chat_instance": "1",
                "inline_message_id": "AAAA",
                "data": step.data,
            }
            self._send({"callback_query": query})
        elif kind == "tap_old_message":
            # A button under a message older than 48 hours: Telegram sends it inaccessible
            # (date 0, no text), with any data a client cares to send.
            query = {
                "id": str(next(self._message_ids)),
                "from": user,
                "chat_instance": "1",
                "message": {"message_id": 1 + step.pick, "date": 0, "chat": chat},
                "data": step.data or self._real_or_forged(step),
            }
            self._send({"callback_query": query})
        elif kind in ("forward", "forward_from_bot"):
            message = self._message(chat, user) | {"text": step.text or "x"}
            origins: list[dict[str, Any]] = [
                {"type": "user", "date": 1, "sender_user": outsider},
                {"type": "hidden_user", "date": 1, "sender_user_name": "Someone"},
                {"type": "channel", "date": 1, "chat": CHANNEL, "message_id": 7},
            ]
            message["forward_origin"] = origins[step.pick % 3]
            if kind == "forward_from_bot":
                # A staff message with its buttons, sent on by a participant.
                message["forward_origin"] = {"type": "user", "date": 1, "sender_user": self._bot}
                keyboard = [[{"text": "Write to them", "callback_data": step.data or "sa:x"}]]
                message["reply_markup"] = {"inline_keyboard": keyboard}
            self._send({"message": message})
        elif kind == "media":
            self._send({"message": self._media(self._message(chat, user), step)})
        elif kind == "service_private":
            message = self._message(chat, user)
            if step.pick % 2:
                message["message_auto_delete_timer_changed"] = {"message_auto_delete_time": 86400}
            else:
                message["pinned_message"] = {"message_id": 1, "date": 0, "chat": chat}
            self._send({"message": message})
        elif kind == "group_message":
            sender = user if step.pick % 2 else outsider
            message = self._message(group, sender)
            self._send({"message": self._media(message, step) if step.pick % 3 else message})
        elif kind == "group_service":
            message = self._message(group, outsider)
            services: list[dict[str, Any]] = [
                {"new_chat_members": [self._bot, user]},
                {"left_chat_member": outsider},
                {"group_chat_created": True},
                {"new_chat_title": "Renamed"},
            ]
            message.update(services[step.pick % len(services)])
            self._send({"message": message})
        elif kind == "group_edit":
            message = self._message(group, outsider) | {"text": step.text or "x"}
            message["edit_date"] = message["date"]
            self._send({"edited_message": message})
        elif kind == "group_tap":
            message = self._message(group, self._bot) | {"text": "x"}
            query = {
                "id": str(next(self._message_ids)),
                "from": outsider if step.pick % 2 else user,
                "chat_instance": "2",
                "message": message,
                "data": step.data,
            }
            self._send({"callback_query": query})
        elif kind == "channel_post":
            post = self._message(CHANNEL, None) | {"text": step.text or "x"}
            if step.pick % 2:
                post["edit_date"] = post["date"]
                await self._direct({"edited_channel_post": post})
            else:
                await self._direct({"channel_post": post})
        elif kind == "my_member_private":
            status = "kicked" if step.pick % 2 else "member"
            self._send({"my_chat_member": self._membership(chat, user, status)})
        elif kind == "my_member_group":
            where = [*GROUPS, CHANNEL][step.pick % 3]
            status = ["member", "administrator", "left", "kicked"][step.pick % 4]
            self._send({"my_chat_member": self._membership(where, outsider, status)})
        elif kind == "inline_query":
            query = {"id": "9", "from": outsider, "query": step.text[:256], "offset": ""}
            await self._direct({"inline_query": query})
        else:  # pragma: no cover - a kind added above without a branch here
            raise AssertionError(kind)

    def _membership(self, chat: dict[str, Any], by: dict[str, Any], status: str) -> Any:
        new: dict[str, Any] = {"user": self._bot, "status": status}
        if status == "kicked":
            new["until_date"] = 0
        if status == "administrator":
            rights = (
                "can_be_edited is_anonymous can_manage_chat can_delete_messages "
                "can_manage_video_chats can_restrict_members can_promote_members "
                "can_change_info can_invite_users can_post_stories can_edit_stories "
                "can_delete_stories"
            )
            new.update(dict.fromkeys(rights.split(), False))
        old = {"user": self._bot, "status": "left"}
        return {
            "chat": chat,
            "from": by,
            "date": int(time.time()),
            "old_chat_member": old,
            "new_chat_member": new,
        }

    def _media(self, message: dict[str, Any], step: Step) -> dict[str, Any]:
        file = {"file_id": f"f{step.pick}", "file_unique_id": f"u{step.pick}"}
        sender = message.get("from") or {}
        media: list[dict[str, Any]] = [
            {"photo": [{**file, "width": 90, "height": 90}]},
            {"document": {**file, "file_name": "a.pdf", "mime_type": "application/pdf"}},
            {
                "sticker": {
                    **file,
                    "width": 512,
                    "height": 512,
                    "is_animated": False,
                    "is_video": False,
                    "type": "regular",
                }
            },
            {"voice": {**file, "duration": 2}},
            {"location": {"latitude": 51.5, "longitude": -0.12}},
            {
                "contact": {
                    "phone_number": "+440000000000",
                    "first_name": "Someone",
                    # Their own number (as after a safety request), or someone else's.
                    **({"user_id": sender["id"]} if step.pick % 2 and sender else {}),
                }
            },
            {"video": {**file, "width": 9, "height": 9, "duration": 1}},
            {"dice": {"emoji": "🎲", "value": 3}},
            {"venue": {"location": {"latitude": 1, "longitude": 1}, "title": "x", "address": "y"}},
        ]
        message.update(media[step.pick % len(media)])
        if step.pick % 4 == 0 and "dice" not in message and "location" not in message:
            message["caption"] = step.text[:1024]
        return message


def _buttons_of(message: Any) -> list[str]:
    rows = (message.reply_markup or {}).get("inline_keyboard", [])
    return [b["callback_data"] for row in rows for b in row if "callback_data" in b]


def table_counts(records: Records) -> dict[str, int]:
    names = [
        str(n)
        for (n,) in records.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {name: int(str(records.query(f"SELECT COUNT(*) FROM {name}")[0][0])) for name in names}


@pytest.fixture()
def failures(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[list[str]]:
    """Everything that would reach Sentry or read as an unhandled failure in the log."""
    reported: list[str] = []
    monkeypatch.setattr(error_reporting, "report", lambda exc: reported.append(type(exc).__name__))
    caplog.set_level(logging.INFO)
    yield reported
    reported += [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if (r.levelno >= logging.ERROR and r.name != "bot.sender") or "unexpected" in r.getMessage()
    ]


async def _run_hypothesis(
    api: LocalBotApi,
    tmp_path: Path,
    strategy: st.SearchStrategy[list[Step]],
    reported: list[str],
    onboarded: int = 0,
) -> tuple[Feeder, dict[str, int], dict[str, int]]:
    """Run the hypothesis examples in a worker thread; each example's updates are sent from
    this event loop (where the server and the bot run) and awaited until handled. The first
    `onboarded` people are signed up first, so the examples reach past onboarding."""
    async with running_bot(api, tmp_path) as runtime:
        records = Records(runtime.settings)
        for person in PRIVATE[:onboarded]:
            await onboard(Chat(api, person))
        feeder = Feeder(api, runtime)
        loop = asyncio.get_running_loop()
        before = table_counts(records)

        def on_loop(coroutine: Awaitable[T]) -> T:
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)  # type: ignore[arg-type]

        @settings(settings.get_profile(PROFILE))
        @given(strategy)
        def example(steps: list[Step]) -> None:
            already = len(reported)
            on_loop(feeder.feed(steps))
            # Fail on the example that caused it, so Hypothesis prints that example.
            assert reported[already:] == [], reported[already:]

        await asyncio.to_thread(example)
        after = table_counts(records)
    return feeder, before, after


def _assert_inbox_clean(records: Records, feeder: Feeder) -> None:
    rows = records.query("SELECT status, payload IS NULL, attempts FROM inbox")
    assert len(rows) >= len(set(feeder.update_ids))
    assert {(str(s), bool(n), int(str(a))) for s, n, a in rows} == {("handled", True, 0)}


async def _assert_housekeeping_forgets_them(records: Records) -> None:
    """The daily housekeeping's pruning (a week on) leaves no row of any update behind,
    and no finished outgoing message."""
    db = await Database.open(records.settings.database_path)
    try:
        week_on = int(time.time() * 1000) + 8 * 86_400_000
        async with db.transaction() as conn:
            await Inbox(conn).prune(week_on)
            await Outbox(conn).prune(week_on)
    finally:
        await db.close()
    assert records.query("SELECT COUNT(*) FROM inbox") == [(0,)]
    assert records.query("SELECT COUNT(*) FROM outbox WHERE status <> 'pending'") == [(0,)]


def _assert_outsiders_unknown(records: Records) -> None:
    for person in GROUP_ONLY:
        who = records.pseudonym(person)
        for table in ("people", "dialogue_sessions", "consent_ledger", "audit_log"):
            column = "actor" if table == "audit_log" else "pseudonym"
            assert records.query(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", who) == [(0,)]
        assert records.query("SELECT COUNT(*) FROM people WHERE chat_id < 0") == [(0,)]


async def test_junk_updates_of_every_kind_fail_nothing_and_store_nothing(
    api: LocalBotApi, tmp_path: Path, failures: list[str]
) -> None:
    """Edits, forwards, media, forged taps, groups, channels, membership, inline queries:
    the bot answers or ignores each, and keeps at most a person row and a session per
    person who wrote privately; outgoing replies are bounded per update."""
    feeder, before, after = await _run_hypothesis(api, tmp_path, JUNK, failures)
    records = Records(settings_for(api, tmp_path))
    assert failures == []
    _assert_inbox_clean(records, feeder)
    _assert_outsiders_unknown(records)
    grown = {t: after[t] - before[t] for t in after if after[t] != before[t]}
    people = len(PRIVATE)
    allowed = {
        "inbox": len(set(feeder.update_ids)),
        "outbox": 3 * len(feeder.update_ids),  # a reply, an edit of the tapped message, leave
        "people": people,
        "dialogue_sessions": people,
        # The bot's own bookkeeping (poll offset, heartbeat, housekeeping and digest jobs).
        "meta": 5,
        "schedules": 5,
        # Some junk is a person's own doing: a shared phone number after no request, a
        # "not available" refusal. None of it is a stored row beyond these.
    }
    assert set(grown) <= set(allowed), grown
    for table, rows in grown.items():
        assert rows <= allowed[table], (table, rows, allowed[table])
    await _assert_housekeeping_forgets_them(records)


async def test_junk_mixed_with_real_conversation_stays_bounded(
    api: LocalBotApi, tmp_path: Path, failures: list[str]
) -> None:
    """Real taps on the bot's own buttons, texts and commands between the junk take people
    deep into dialogues; still nothing fails, and what is kept is bounded by what they
    really said and chose, never by the junk."""
    feeder, before, after = await _run_hypothesis(api, tmp_path, MIXED, failures, onboarded=2)
    records = Records(settings_for(api, tmp_path))
    assert failures == []
    _assert_inbox_clean(records, feeder)
    _assert_outsiders_unknown(records)
    people = len(PRIVATE)
    legit = feeder.legit_updates
    # Rows one real input can add at most (/stop writes a "no" for each of 4 purposes; an
    # answer is tagged with up to 14 themes); a few rows per person are set up once.
    per_input = {"consent_ledger": 4, "answer_themes": 14, "outbox": 4}
    per_person = {"people": 1, "dialogue_sessions": 1, "erasures": 1}
    for table, count in after.items():
        grown = count - before[table]
        if table == "inbox":
            assert grown == len(set(feeder.update_ids))
            continue
        bound = per_input.get(table, 2) * legit + per_person.get(table, 2) * people
        if table == "outbox":
            bound += 3 * (len(feeder.update_ids) - legit)
        assert grown <= bound, (table, grown, bound)


# --- one person flooding the bot ------------------------------------------------------


def test_the_gate_counts_per_chat_and_window_and_warns_once() -> None:
    clock = [1_000.0]
    gate = FloodGate(limit=3, window_s=10, now=lambda: clock[0])
    verdicts = [gate.check(1) for _ in range(6)]
    assert verdicts == [Verdict.HANDLE] * 3 + [Verdict.WARN, Verdict.DROP, Verdict.DROP]
    assert gate.check(2) is Verdict.HANDLE  # someone else is not affected
    clock[0] += 10
    assert gate.check(1) is Verdict.HANDLE  # a new window
    # A backlog sent slowly but delivered at once (after downtime) is not a flood.
    assert all(gate.check(3, sent_at=900.0 + 5 * n) is Verdict.HANDLE for n in range(12))
    # A date in the future counts as now (so it cannot dodge the limit, nor linger).
    assert [gate.check(4, sent_at=10**12) for _ in range(4)][-1] is Verdict.WARN
    for n in range(2_000):
        clock[0] += 1
        gate.check(10_000 + n)
    assert gate.tracked() < 200  # old windows are forgotten


def test_an_update_tried_again_is_not_counted_again() -> None:
    """A retried update (a database fault, a restart) keeps its first verdict, so retries
    cannot push a person's real answers over the limit."""
    gate = FloodGate(limit=3, window_s=10, now=lambda: 1_000.0)
    first = [gate.check(1, update_id=n) for n in (1, 2, 3)]
    retries = [gate.check(1, update_id=n) for n in (1, 2, 3) for _ in range(9)]
    assert first == [Verdict.HANDLE] * 3 and set(retries) == {Verdict.HANDLE}
    assert gate.check(1, update_id=4) is Verdict.WARN  # a new fourth update is over
    assert gate.check(1, update_id=4) is Verdict.WARN  # and stays so when tried again


async def test_a_flooding_person_is_slowed_politely_and_others_keep_their_pace(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Bran (who reads Welsh) sends 50 messages a second for two seconds. He is told once
    per window, in Welsh, to slow down; what he sent over the limit is dropped unread (no
    reply, no payload kept); Ada's replies keep their normal latency throughout."""
    flooder = FakePerson(user_id=730000021, first_name="Bran", language_code="cy")
    ada = FakePerson(user_id=730000022, first_name="Ada", language_code="en")
    assert settings_for(api, tmp_path, FLOOD_LIMIT="").flood_limit == DEFAULT_LIMIT
    async with running_bot(api, tmp_path, FLOOD_LIMIT=str(DEFAULT_LIMIT)) as runtime:
        records = Records(runtime.settings)
        chat = Chat(api, ada)
        await onboard(chat)
        async with runtime.db.transaction() as conn:  # as onboarding in Welsh leaves him
            now = runtime.clock.now_ms()
            await People(conn).touch(records.pseudonym(flooder), flooder.chat_id, "cy", now)

        async def latency() -> float:
            started = time.monotonic()
            await chat.say("hello")  # one reply: nothing to answer right now
            return time.monotonic() - started

        # Ada is a person too: her own pace stays well under the limit.
        calm = sorted([await latency() for _ in range(5)])
        first_window = int(time.time() // DEFAULT_WINDOW_S)
        flood_ids = []

        async def flood() -> None:
            for n in range(100):
                flood_ids.append(api.send_text(flooder, f"flood message number {n}"))
                await asyncio.sleep(0.02)

        flooding = asyncio.create_task(flood())
        busy = []
        while not flooding.done():
            busy.append(await latency())
            # At a person's pace: on a fast machine, probing flat out would itself pass 30
            # messages in 10 s (with her onboarding taps) and be slowed down.
            await asyncio.sleep(0.35)
        await flooding
        windows = int(time.time() // DEFAULT_WINDOW_S) - first_window + 1

        def all_handled() -> bool:
            rows = records.query(
                "SELECT COUNT(*) FROM inbox WHERE status = 'handled' AND payload IS NULL "
                f"AND update_id IN ({','.join(map(str, flood_ids))})"
            )
            return rows == [(100,)]

        await eventually(all_handled)
        replies = records.query("SELECT COUNT(*) FROM outbox WHERE chat_id = ?", flooder.chat_id)
        await eventually(lambda: len(api.messages(flooder.chat_id)) == replies[0][0])
        received = api.messages(flooder.chat_id)
    slow_down = [m for m in received if "Rydych chi'n anfon llawer" in (m.text or "")]
    assert 1 <= len(slow_down) <= windows
    # At most the limit per window was read and answered (one reply each), plus the notes.
    answered = len(received) - len(slow_down)
    assert answered <= DEFAULT_LIMIT * windows
    assert answered >= DEFAULT_LIMIT  # the first ones were handled as usual
    assert len(received) < 100
    # Nothing of what he sent is kept: no answers, and every inbox payload is gone.
    assert records.query("SELECT COUNT(*) FROM answers") == [(0,)]
    # Ada: as quick during the flood as before it (the median, and no outlier far beyond).
    assert len(busy) >= 3
    # Generous bounds: the machine is shared, and the local server runs in this process.
    assert sorted(busy)[len(busy) // 2] <= max(0.5, 4 * calm[2]), (calm, busy)
    assert max(busy) <= max(2.0, 6 * calm[-1]), (calm, busy)


def test_a_stop_let_through_over_the_limit_does_not_use_up_the_slow_down() -> None:
    """STOP (or a shared number) over the limit is handled, not dropped: taken back from
    the count, it leaves the window's one "slow down" to the next message dropped."""
    gate = FloodGate(limit=2, window_s=10, now=lambda: 100.0)
    assert [gate.check(1, 100.0, n) for n in (1, 2)] == [Verdict.HANDLE] * 2
    assert gate.check(1, 100.0, 3) is Verdict.WARN  # a STOP: let through after all
    gate.excuse(1, 3)
    assert gate.check(1, 100.0, 4) is Verdict.WARN
    assert gate.check(1, 100.0, 5) is Verdict.DROP
