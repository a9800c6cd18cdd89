"""Feedback check-ins end to end, over HTTP against the local Bot API server: a person asks
for one and answers it; scheduled rounds, the nudge and the expiry survive restarts of the
bot process. Everyone here is invented."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiosqlite
import pytest

from bot import checkins as checkins_module
from bot.checkin_cli import add_checkin_parser, parse_every, run_checkin
from bot.local_api import FakePerson, LocalBotApi
from bot.rendering import Catalogs
from bot.runtime import Runtime
from bot.settings import PROJECT_ROOT, Settings, load_settings
from storage.clock import ManualClock, to_datetime
from storage.people import ConsentLedger, People
from storage.queues import Job
from storage.staff import AuditLog
from tests.harness import (
    ADA,
    BRAN,
    CERI,
    BotProcess,
    Chat,
    Records,
    as_time_goes_by,
    eventually,
    hold_jobs,
    onboard,
    running_bot,
    settled,
)

DAI = FakePerson(user_id=700000004, first_name="Dai", language_code="en")  # invented


async def test_a_check_in_from_feedback_to_thank_you(api: LocalBotApi, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path) as runtime:
        ada = Chat(api, ADA)
        await onboard(ada)  # feedback yes, panels yes, updates no, quotes yes; London
        intro = await ada.say("/feedback")
        assert "5 short questions" in intro.text and "never see your name" in intro.text
        assert "listen to you" in (await ada.tap("Start")).text
        # A number typed instead of tapped, and an emoji: kind answers, the question again.
        assert "Please tap one of the buttons" in (await ada.say("4")).text
        assert "listen to you" in (await ada.say("👍")).text
        first_question, always = ada.find_button("Always")  # on the first question
        assert "respect" in (await ada.tap("Mostly")).text
        # A second tap on the first question (a double tap, or a change of mind later):
        # kindly told, and the stored answer stays as chosen.
        had = len(ada.messages)
        api.press_button(ADA, first_question.message_id, always)
        old = await ada.expect(had + 1)
        assert "older message" in old.text and "respect" in old.text
        simpler = await ada.tap("I don't understand")
        assert "polite" in simpler.text
        assert "fair way" in (await ada.tap("Always")).text
        assert "do what they say" in (await ada.tap("Skip this one")).text
        improve = await ada.tap("Never")
        assert "What one thing" in improve.text
        too_long = await ada.say("x" * 10_000)
        assert "too long" in too_long.text
        thanks = await ada.say("My housing officer never calls back about the flat. Ask Sarah!")
        assert "Thank you" in thanks.text

        records = Records(runtime.settings)
        who = records.pseudonym(ADA)
        (checkin_id, status) = records.query(
            "SELECT id, status FROM checkins WHERE pseudonym = ?", who
        )[0]
        assert status == "completed"
        scores = dict(
            records.query(
                "SELECT principle, score FROM checkin_scores WHERE checkin_id = ?", checkin_id
            )
        )
        assert scores == {"voice": 4, "respect": 5, "neutrality": None, "trust": 1}
        ((answer_id, ciphertext, quote),) = records.query(
            "SELECT id, ciphertext, quote FROM answers WHERE pseudonym = ?", who
        )
        assert b"housing" not in bytes(ciphertext)  # encrypted at rest
        secrets = records.secrets
        assert secrets.decrypt_text(bytes(ciphertext)).startswith("My housing officer")
        assert "Sarah" not in secrets.decrypt_text(bytes(quote))  # scrubbed before quoting
        themes = {
            t
            for (t,) in records.query(
                "SELECT theme FROM answer_themes WHERE answer_id = ?", answer_id
            )
        }
        assert "housing" in themes
        counts = records.query(
            "SELECT region, locale, sent, started, completed FROM checkin_counts"
        )
        assert counts == [("london", "en", 1, 1, 1)]
        assert not records.query("SELECT 1 FROM checkin_counts WHERE region LIKE 'p%'")


async def test_a_written_answer_sent_in_parts_is_kept_whole(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """On a phone one thought often goes as several messages. What Ada sends in the minutes
    after her written answer is added to it (scrubbed again, encrypted, its themes added),
    and she is told so; later, there is nothing to answer."""
    clock = ManualClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        ada = Chat(api, ADA)
        await onboard(ada)  # keep my answers: yes; quotes: yes
        await ada.say("/feedback")
        await ada.tap("Start")
        for answer in ("Sometimes", "Sometimes", "Sometimes", "Sometimes"):
            await ada.tap(answer)
        assert "Thank you" in (await ada.say("My housing officer never calls back")).text
        clock.advance(120)
        added = await ada.say("and I lost my job because Sarah moved my appointment")
        assert "added this to what you wrote" in added.text
        assert "nothing to answer" in (await ada.say("thanks")).text  # not more of it
        records = Records(runtime.settings)
        ((answer_id, ciphertext, quote),) = records.query(
            "SELECT id, ciphertext, quote FROM answers WHERE pseudonym = ?",
            records.pseudonym(ADA),
        )
        whole = records.secrets.decrypt_text(bytes(ciphertext))
        assert whole == (
            "My housing officer never calls back\n"
            "and I lost my job because [name] moved my appointment"
        )
        assert records.secrets.decrypt_text(bytes(quote)) == whole
        themes = {
            t
            for (t,) in records.query(
                "SELECT theme FROM answer_themes WHERE answer_id = ?", answer_id
            )
        }
        assert {"housing", "work_training"} <= themes
        clock.advance(11 * 60)
        assert "nothing to answer" in (await ada.say("thanks")).text


async def test_cancel_leaves_a_check_in_half_way_and_feedback_opens_it_again(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """/cancel leaves the questions without four taps of "Skip this one": nothing more is
    asked, the answer given is kept, and /feedback later opens the same check-in again."""
    async with running_bot(api, tmp_path) as runtime:
        ada = Chat(api, ADA)
        await onboard(ada)
        await ada.say("/feedback")
        await ada.tap("Start")
        assert "respect" in (await ada.tap("Mostly")).text
        assert "We stopped there" in (await ada.say("/cancel")).text
        assert "nothing to answer" in (await ada.say("hello")).text
        again = await ada.say("/feedback")
        assert "5 short questions" in again.text and "Start" in str(again.reply_markup)
        records = Records(runtime.settings)
        assert records.query("SELECT COUNT(*) FROM checkins") == [(1,)]
        assert records.query("SELECT principle, score FROM checkin_scores") == [("voice", 4)]


async def test_no_questions_without_the_feedback_consent(api: LocalBotApi, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path) as runtime:
        bran = Chat(api, BRAN)
        await bran.start()
        await bran.tap("OK, go on")
        for answer in ("No", "No", "No", "No"):
            await bran.tap(answer)
        await bran.tap("Wales")
        reply = await bran.say("/feedback")
        assert "You said no to us keeping your answers" in reply.text
        assert Records(runtime.settings).query("SELECT COUNT(*) FROM checkins") == [(0,)]


async def test_feedback_before_the_question_is_asked_says_how_to_go_on(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Someone half-way through signing up sends /feedback (it is in /help): they were not
    asked "Keep my answers" yet, so they are not told they said no, but how to go on."""
    async with running_bot(api, tmp_path) as runtime:
        ceri = Chat(api, CERI)
        await ceri.start()
        told = await ceri.say("/feedback")
        assert "not asked you yet" in told.text and "/start" in told.text
        assert "already started" in (await ceri.say("/start")).text
        assert Records(runtime.settings).query("SELECT COUNT(*) FROM checkins") == [(0,)]


def _cli(env: dict[str, str], *args: str) -> None:
    """`python -m bot ...` as staff would run it, with the bot's settings."""
    result = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


async def test_scheduled_rounds_nudges_and_expiry_survive_restarts(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """A day is seconds here: the nudge comes after 20 s, the check-in closes after 30 s
    (long enough for Ceri to finish at a person's pace: the bot sends a chat at most 3
    messages in 3.5 s)."""
    timing = {"CHECKIN_NUDGE_HOURS": str(20 / 3600), "CHECKIN_EXPIRE_DAYS": str(30 / 86400)}
    bot = BotProcess(api, tmp_path, **timing)
    chats = [Chat(api, person) for person in (ADA, BRAN, CERI, DAI)]
    async with running_bot(api, tmp_path):  # onboarding, as people would do it
        for chat in chats:
            await onboard(chat)
    ada, bran, ceri, dai = chats
    onboarded = len(ada.messages)
    records = Records(load_settings(bot.env))
    _cli(bot.env, "checkin", "schedule", "--region", "london", "--every", "4w")
    await bot.start()  # the round fell due while the bot was down: it runs now
    try:
        for chat in chats:
            assert "5 short questions about" in (await chat.expect(onboarded + 1)).text
        await ada.tap("Start")
        await ada.tap("Start")  # the intro's Start: under way, not finished
        await ceri.tap("Start")
        await ceri.tap("Start")
        for answer in ("Always", "Always", "Always", "Always", "Skip this one"):
            await ceri.tap(answer)
        await dai.tap("Start")
        assert "any time" in (await dai.tap("Not now")).text  # so no reminder: not nagged
        # Every reply recorded as sent first: one confirmed but not yet recorded would be
        # sent again after the kill (at least once, bounded by what was in flight).
        pending = "SELECT COUNT(*) FROM outbox WHERE status = 'pending'"
        await eventually(lambda: records.query(pending) == [(0,)])
        await bot.kill()  # kill -9 before any nudge is due
        await bot.start()
        nudge = (await ada.api.wait_for_messages(ADA.chat_id, onboarded + 4, 30))[-1]
        assert "questions are still waiting" in (nudge.text or "")  # invite, intro, question, nudge
        assert "questions are still waiting" in (await bran.expect(onboarded + 2)).text
        async with asyncio.timeout(30):  # until the check-ins close
            while records.place(ADA) is not None:  # noqa: ASYNC110 - a database read
                await asyncio.sleep(0.2)
        closed = await ada.tap("Carry on")
        assert "has closed" in closed.text
        await bot.terminate()
        await bot.start()  # once more: nothing is repeated
        await asyncio.sleep(3)
    finally:
        await bot.terminate()
    assert len(ada.messages) == onboarded + 5 and len(bran.messages) == onboarded + 2
    for chat in (ceri, dai):
        assert not any("questions are still waiting" in (m.text or "") for m in chat.messages)
    assert len(dai.messages) == onboarded + 3  # the invitation, the intro, "any time"
    statuses = {p: s for p, s in records.query("SELECT pseudonym, status FROM checkins")}
    assert statuses == {
        records.pseudonym(ADA): "expired",
        records.pseudonym(BRAN): "expired",
        records.pseudonym(CERI): "completed",
        records.pseudonym(DAI): "expired",
    }
    # Ada's and Bran's reminders, and Dai's claimed by "Not now"
    assert records.query("SELECT COUNT(*) FROM checkins WHERE nudged_at IS NOT NULL") == [(3,)]
    assert records.query("SELECT sent, started, completed FROM checkin_counts") == [(4, 2, 1)]


async def test_the_check_in_in_welsh(api: LocalBotApi, tmp_path: Path) -> None:
    """The same check-in, read and answered in Welsh, with skip and simpler words."""
    catalogs = Catalogs(PROJECT_ROOT / "locales", ("en", "cy"))

    def cy(msgid: str) -> str:
        welsh = catalogs.gettext("cy", msgid)
        assert welsh != msgid, f"no Welsh for {msgid!r}"
        return welsh

    async with running_bot(api, tmp_path) as runtime:
        ceri = Chat(api, CERI)
        await ceri.start("Cymraeg")
        await ceri.tap(cy("OK, go on"))
        for answer in ("Yes", "No", "No", "No"):
            await ceri.tap(cy(answer))
        await ceri.tap(cy("Wales"))
        intro = await ceri.say("/feedback")
        assert "5" in intro.text and "We want to know" not in intro.text
        first = await ceri.tap(cy("Start"))
        assert first.text == cy("When you talk to probation, do they listen to you?")
        simpler = await ceri.tap(cy("I don't understand"))
        explained = cy("This asks if you get to say what you think, and if they really hear it.")
        assert simpler.text == explained + "\n\n" + first.text  # the question again below
        await ceri.tap(cy("Always"))
        await ceri.tap(cy("Skip this one"))
        await ceri.tap(cy("Sometimes"))
        improve = await ceri.tap(cy("Not often"))
        assert cy("Skip this one") in str(improve.reply_markup)
        thanks = await ceri.say("Mwy o apwyntiadau gyda'r nos, a help gyda thai")
        assert "Diolch" in thanks.text
        records = Records(runtime.settings)
        (checkin_id,) = records.query("SELECT id FROM checkins WHERE status = 'completed'")[0]
        scores = dict(
            records.query(
                "SELECT principle, score FROM checkin_scores WHERE checkin_id = ?", checkin_id
            )
        )
        assert scores == {"voice": 5, "respect": None, "neutrality": 3, "trust": 2}
        themes = {t for (t,) in records.query("SELECT theme FROM answer_themes")}
        assert "housing" in themes  # "thai": the mutated form of "tai" (houses)
        assert records.query("SELECT locale, completed FROM checkin_counts") == [("cy", 1)]


async def test_saying_no_to_keep_my_answers_stops_a_check_in_under_way(
    api: LocalBotApi, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path) as runtime:
        ada = Chat(api, ADA)
        await onboard(ada)
        await ada.say("/feedback")
        await ada.tap("Start")
        await ada.tap("Mostly")
        await ada.say("/privacy")
        await ada.tap("Keep my answers")
        assert "delete the answers" in (await ada.tap("No")).text
        await ada.tap("No, keep them")
        done = await ada.tap("That is all")
        assert "saved" in done.text
        await settled(api, Records(runtime.settings))
        assert ada.messages[-1] is done  # the check-in is not asked again
        records = Records(runtime.settings)
        assert records.query("SELECT status FROM checkins") == [("expired",)]
        assert records.place(ADA) is None


async def test_a_round_given_up_after_failures_is_scheduled_again(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """A round job that failed for good (a region's check-ins would stop forever) is
    replaced at the next start by the next round after now, and only one is waiting."""
    clock = ManualClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        settings = runtime.settings
    first = clock.now_ms() + 3_600_000
    week = 7 * 86_400_000
    with sqlite3.connect(settings.database_path) as conn:
        conn.execute(
            "INSERT INTO checkin_schedules (region, every_days, next_at, created_by, created_at, "
            "updated_at) VALUES ('london', 7, ?, 'staff-0001', 0, 0)",
            (first,),
        )
        conn.execute(
            "INSERT INTO schedules (kind, key, due_at, payload, created_at, status, attempts) "
            "VALUES ('checkin_round', ?, ?, ?, 0, 'failed', 5)",
            (f"checkin_round:london:{first}", first, f'{{"region":"london","due":{first}}}'),
        )
    clock.advance(10 * 86_400)  # ten days later, the bot starts again
    async with running_bot(api, tmp_path, clock=clock):
        pass
    async with running_bot(api, tmp_path, clock=clock):  # and once more: nothing added
        pass
    records = Records(settings)
    assert records.query("SELECT next_at FROM checkin_schedules") == [(first + 2 * week,)]
    waiting = records.query(
        "SELECT key, due_at FROM schedules WHERE kind = 'checkin_round' AND status = 'pending'"
    )
    assert waiting == [(f"checkin_round:london:{first + 2 * week}", first + 2 * week)]


PEOPLE_OF_LONDON = [
    FakePerson(user_id=731000000 + n, first_name=name)
    for n, name in enumerate(("Olwen", "Peredur", "Rhiannon", "Sioned", "Tegid"))
]


async def _sign_up_people_of_london(
    runtime: Runtime, now: int, but_for: str | None = None
) -> list[str]:
    """PEOPLE_OF_LONDON as if onboarded: in London, with the feedback consent (all but
    `but_for`, a pseudonym). Returns their pseudonyms, in the list's order."""
    pseudonyms = [runtime.service.pseudonym_of(p.user_id) for p in PEOPLE_OF_LONDON]
    async with runtime.db.transaction() as conn:
        for person, who in zip(PEOPLE_OF_LONDON, pseudonyms, strict=True):
            await People(conn).touch(who, person.chat_id, "en", now)
            await People(conn).set_region(who, "london", now)
            if who != but_for:
                await ConsentLedger(conn).record(who, "feedback", True, "2026-11-v1", now)
    return pseudonyms


async def _schedule_weekly_round_of_london(runtime: Runtime, now: int) -> None:
    """London's weekly schedule, its round's job due now (the scheduler woken)."""
    async with runtime.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO checkin_schedules (region, every_days, next_at, created_by, "
            "created_at, updated_at) VALUES ('london', 7, ?, 'staff-0001', 0, 0)",
            (now,),
        )
        await checkins_module.schedule_round(conn, "london", now, now)
    runtime.scheduler.wake()


@pytest.mark.parametrize("stopped", [None, "pending", "failed"])
async def test_a_round_asks_a_large_region_in_parts_each_person_once(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopped: str | None
) -> None:
    """A region's round asks at most ROUND_BATCH people per transaction (a whole region in
    one would hold the database lock for half a minute), the rest in parts that follow, all
    in one broadcast; the schedule moves on once, when nobody is left. A round stopped
    between its parts by a restart (its next part still waiting, or given up) goes on at
    the next start: everyone is asked, nobody twice."""
    monkeypatch.setattr(checkins_module, "ROUND_BATCH", 2)
    clock = ManualClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    now, week = clock.now_ms(), 7 * 86_400_000
    for person in PEOPLE_OF_LONDON:
        api.add_chat(person)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        settings = runtime.settings
        pseudonyms = await _sign_up_people_of_london(runtime, now)
    round_key = f"checkin_round:london:{now}"
    # The first part asks the first two in pseudonym order and leaves its position at the
    # second; a fresh round finds a stale position from one given up, which it ignores.
    first_two = sorted(pseudonyms)[:2]
    position = first_two[-1] if stopped else "~ a round given up long ago"
    with sqlite3.connect(settings.database_path) as conn:
        conn.execute(
            "INSERT INTO checkin_schedules (region, every_days, next_at, created_by, created_at, "
            "updated_at, round_after) VALUES ('london', 7, ?, 'staff-0001', 0, 0, ?)",
            (now, position),
        )
        conn.execute(
            "INSERT INTO schedules (kind, key, due_at, payload, created_at, status) "
            "VALUES ('checkin_round', ?, ?, ?, 0, ?)",
            (
                round_key,
                now,
                f'{{"region":"london","due":{now}}}',
                "done" if stopped else "pending",
            ),
        )
        if stopped is not None:  # its first part ran before a restart: two people asked
            conn.execute(
                "INSERT INTO broadcasts (id, kind, subject, region, created_by, total, "
                "created_at) VALUES (1, 'checkin', 'checkin:london', 'london', 'system', 2, ?)",
                (now,),
            )
            part_one = {
                "region": "london",
                "due": now,
                "first": round_key,
                "part": 1,
                "broadcast": 1,
            }
            conn.executemany(
                "INSERT INTO checkins (pseudonym, token, region, locale, week, source, status, "
                "sent_at) VALUES (?, ?, 'london', 'en', '2026-W45', 'scheduled', 'sent', ?)",
                [(who, f"{n:016x}", now) for n, who in enumerate(first_two)],
            )
            conn.execute(
                "INSERT INTO schedules (kind, key, due_at, payload, created_at, status) "
                "VALUES ('checkin_round', ?, ?, ?, 0, ?)",
                (f"{round_key}:part:1", now, json.dumps(part_one), stopped),
            )
    records = Records(settings)
    async with running_bot(api, tmp_path, clock=clock):
        await eventually(
            lambda: records.query("SELECT next_at FROM checkin_schedules") == [(now + week,)]
        )
        await eventually(
            lambda: all(
                api.messages(p.chat_id)
                for p, who in zip(PEOPLE_OF_LONDON, pseudonyms, strict=True)
                if who not in first_two
            )
        )
        await eventually(  # every part of the round has run
            lambda: (
                not records.query(
                    "SELECT 1 FROM schedules WHERE key LIKE ? AND status = 'pending'",
                    f"{round_key}%",
                )
            )
        )
    asked = records.query("SELECT pseudonym, COUNT(*) FROM checkins GROUP BY pseudonym")
    assert sorted(n for _, n in asked) == [1] * len(PEOPLE_OF_LONDON)
    # made again only when given up: a waiting part goes on alone, in the round's broadcast
    resumed = records.query(
        "SELECT COUNT(*) FROM schedules WHERE key LIKE '%:resumed:%' AND key NOT LIKE '%:part:%'"
    )
    assert resumed == [(1 if stopped == "failed" else 0,)]
    broadcasts = records.query("SELECT total FROM broadcasts ORDER BY id")
    assert broadcasts == ([(2,), (3,)] if stopped == "failed" else [(5,)])
    assert records.query("SELECT round_after FROM checkin_schedules") == [(None,)]  # over
    if stopped is None:
        assert records.query("SELECT kind, total FROM broadcasts") == [("checkin", 5)]
        parts = records.query(
            "SELECT key, status FROM schedules WHERE key LIKE ? ORDER BY id", f"{round_key}%"
        )
        assert parts == [  # 2 + 2 + 1, then once more from the beginning: nobody new
            (round_key, "done"),
            (f"{round_key}:part:1", "done"),
            (f"{round_key}:part:2", "done"),
            (f"{round_key}:part:3", "done"),
        ]
    waiting = records.query(
        "SELECT key FROM schedules WHERE kind = 'checkin_round' AND status = 'pending'"
    )
    assert waiting == [(f"checkin_round:london:{now + week}",)]


@pytest.mark.parametrize("keeps_failing", [False, True], ids=["fails a while", "keeps failing"])
async def test_a_round_whose_part_was_given_up_goes_on_within_the_hour(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keeps_failing: bool
) -> None:
    """A round's second part fails five times and is given up, while the bot runs. The
    hourly check finds the round stopped between its parts and makes it go on, without a
    restart (before, that region's people went unasked until the next one): everyone is
    asked, nobody twice, and the schedule moves on. A round that fails again each time it
    is resumed is resumed three times, then skipped to its next time (not tried hourly
    for ever)."""
    monkeypatch.setattr(checkins_module, "ROUND_BATCH", 2)
    clock = ManualClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    now, week, hour = clock.now_ms(), 7 * 86_400_000, 3_600_000
    round_key = f"{checkins_module.ROUND_JOB}:london:{now}"
    for person in PEOPLE_OF_LONDON:
        api.add_chat(person)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        failures: list[int] = []

        async def fails(conn: aiosqlite.Connection, job: Job, now: int) -> None:
            if keeps_failing and job.key != round_key:  # all but the first part
                failures.append(now)
                raise ConnectionError("an invented failure of the round")
            if job.payload.get("part") == 1 and len(failures) < 5:
                failures.append(now)
                raise ConnectionError("an invented failure of the part")
            await runtime.checkins.on_round(conn, job, now)

        runtime.scheduler.register(checkins_module.ROUND_JOB, fails, quick=True)
        pseudonyms = await _sign_up_people_of_london(runtime, now)
        await _schedule_weekly_round_of_london(runtime, now)
        records = Records(runtime.settings)
        given_up = "SELECT COUNT(*) FROM schedules WHERE key LIKE '%:part:1' AND status = 'failed'"

        await eventually(as_time_goes_by(clock, runtime, lambda: records.query(given_up) == [(1,)]))
        assert len(failures) == 5
        assert records.query("SELECT COUNT(*) FROM checkins") == [(2,)]  # the first part's
        assert records.query("SELECT next_at FROM checkin_schedules") == [(now,)]  # stuck
        await eventually(
            as_time_goes_by(
                clock,
                runtime,
                lambda: records.query("SELECT next_at FROM checkin_schedules") == [(now + week,)],
            )
        )
        asked = records.query("SELECT pseudonym, COUNT(*) FROM checkins GROUP BY pseudonym")
        resumed_at = [  # the time in the key: a failed job's due_at is its next retry's
            int(str(key).rsplit(":", 1)[1])
            for (key,) in records.query(
                "SELECT key FROM schedules "
                "WHERE key LIKE '%:resumed:%' AND key NOT LIKE '%:part:%' ORDER BY id"
            )
        ]
        checks = records.query(
            "SELECT due_at, done_at FROM schedules WHERE kind = ? AND status = 'done' "
            "ORDER BY due_at",
            checkins_module.ROUNDS_CHECK_JOB,
        )
        next_round = records.query(
            "SELECT status FROM schedules WHERE key = ?",
            f"{checkins_module.ROUND_JOB}:london:{now + week}",
        )
    # the checks ran at 10:00 (11:00, 12:00, 13:00), the clock running ahead of them; on a
    # loaded machine the clock (moved on while the bot works) may reach a later one too
    ran = 4 if keeps_failing else 1
    assert [due for due, _ in checks][:ran] == [now + hour * n for n in range(1, ran + 1)]
    if not keeps_failing:
        assert sorted(asked) == sorted((who, 1) for who in pseudonyms)
        assert resumed_at == [checks[0][1]]  # by the check at 10:00
    else:  # resumed three times, each by a check (10, 11 and 12 o'clock's, on a quiet
        # machine; under load a check can find the resumed part still retrying, and the next
        # one resumes it), then skipped by a later one
        assert sorted(n for _, n in asked) == [1, 1]  # the first part's two, once
        done_at = [done for _, done in checks]
        assert len(resumed_at) == 3 and set(resumed_at) <= set(done_at)
        assert resumed_at == sorted(resumed_at) and max(done_at) > resumed_at[-1]
        assert checks[3][1] >= now + 4 * hour
    assert next_round == [("pending",)]  # next week's round, once


async def test_someone_due_behind_the_round_is_asked_before_it_ends(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round's parts go through the region in pseudonym order, each after the last
    person asked. Someone who becomes due behind that position while the round goes on
    (here: says yes to feedback) is asked by the round's last part, which looks once more
    from the beginning, and nobody is asked twice."""
    monkeypatch.setattr(checkins_module, "ROUND_BATCH", 2)
    clock = ManualClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    now, week = clock.now_ms(), 7 * 86_400_000
    for person in PEOPLE_OF_LONDON:
        api.add_chat(person)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        held = hold_jobs(runtime, checkins_module.ROUND_JOB)  # each part run by the test
        # first in pseudonym order: behind the round from its start
        latecomer = min(runtime.service.pseudonym_of(p.user_id) for p in PEOPLE_OF_LONDON)
        pseudonyms = await _sign_up_people_of_london(runtime, now, but_for=latecomer)
        await _schedule_weekly_round_of_london(runtime, now)
        records = Records(runtime.settings)
        asked_so_far = "SELECT COUNT(*) FROM checkins"
        for part in range(6):
            await eventually(lambda: len(held) > part)  # noqa: B023 - awaited at once
            async with runtime.db.transaction() as conn:
                await runtime.checkins.on_round(conn, held[part], clock.now_ms())
            if part == 0:  # the first two asked; now the latecomer says yes
                assert records.query(asked_so_far) == [(2,)]
                async with runtime.db.transaction() as conn:
                    await ConsentLedger(conn).record(
                        latecomer, "feedback", True, "2026-11-v1", clock.now_ms()
                    )
            if records.query("SELECT next_at FROM checkin_schedules") == [(now + week,)]:
                break
        asked = records.query("SELECT pseudonym, COUNT(*) FROM checkins GROUP BY pseudonym")
    assert sorted(asked) == sorted((who, 1) for who in pseudonyms)
    assert part == 3  # 2 + 2 behind the first two, then 1 (the latecomer) from the start


async def test_the_next_round_asks_again_those_who_did_not_finish_the_last(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weekly round falls due when last week's check-ins are a week old, the moment they
    close. It closes those not finished (not started, or left part-way: Tegid's is still
    open in his chat) and asks their people again, rather than leave them out because one
    is still open; and it asks everyone last week's round asked, however late its parts
    ran (here ten minutes apart, and this week's all at once)."""
    monkeypatch.setattr(checkins_module, "ROUND_BATCH", 2)
    clock = ManualClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    now, week = clock.now_ms(), 7 * 86_400_000
    for person in PEOPLE_OF_LONDON:
        api.add_chat(person)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        held = hold_jobs(runtime, checkins_module.ROUND_JOB)  # each part run by the test
        pseudonyms = await _sign_up_people_of_london(runtime, now)
        records = Records(runtime.settings)
        # the last in pseudonym order: asked by last week's last part, 20 minutes late
        last = max(zip(pseudonyms, PEOPLE_OF_LONDON, strict=True))[1]
        chat = Chat(api, last)

        async def run_round(due: int, minutes_apart: int) -> None:
            while records.query("SELECT next_at FROM checkin_schedules") == [(due,)]:
                await eventually(lambda: bool(held))
                async with runtime.db.transaction() as conn:
                    await runtime.checkins.on_round(conn, held.pop(0), clock.now_ms())
                clock.advance(minutes_apart * 60)
                runtime.scheduler.wake()

        await _schedule_weekly_round_of_london(runtime, now)
        await run_round(now, minutes_apart=10)
        assert "5 short questions about" in (await chat.expect(1)).text
        await chat.tap("Start")
        await chat.tap("Start")  # the first question: under way, not finished
        assert records.place(last) is not None
        clock.set(to_datetime(now + week))
        runtime.scheduler.wake()
        await run_round(now + week, minutes_apart=0)
        await eventually(  # this week's invitation (after last week's, perhaps its nudge)
            lambda: sum("5 short questions about" in (m.text or "") for m in chat.messages) == 2
        )
        assert records.place(last) is None  # taken out of last week's, quietly
        await chat.tap("Start")  # this week's
        await chat.tap("Start")
        statuses = records.query(
            "SELECT pseudonym, status FROM checkins ORDER BY pseudonym, sent_at"
        )
    assert statuses == [
        (who, status)
        for who in sorted(pseudonyms)
        for status in ("expired", "started" if who == records.pseudonym(last) else "sent")
    ]


def _checkin_cli(settings: Settings, clock: ManualClock, *argv: str) -> int:
    """`python -m bot checkin ...` in this process, at the test's time."""
    parser = argparse.ArgumentParser()
    add_checkin_parser(parser.add_subparsers(dest="command"))
    return run_checkin(settings, parser.parse_args(["checkin", *argv]), clock)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# Rounds around the 2026-27 changes of the clocks in London: back on Sunday 25 Oct 2026
# (02:00 BST -> 01:00 GMT), forward on Sunday 28 Mar 2027 (01:00 GMT -> 02:00 BST). Each
# case: the first round as staff give it, how often, and the two rounds after it (UTC, and
# as `checkin list` shows them).
_ROUNDS_ACROSS_CHANGES = {
    "clocks go back": (
        "2026-10-22 10:00",
        "1w",
        [
            (datetime(2026, 10, 29, 10, 0, tzinfo=UTC), "2026-10-29 10:00"),
            (datetime(2026, 11, 5, 10, 0, tzinfo=UTC), "2026-11-05 10:00"),
        ],
    ),
    "clocks go forward": (  # the 2nd round 13 days and 23 hours after the 1st
        "2027-03-18 10:00",
        "2w",
        [
            (datetime(2027, 4, 1, 9, 0, tzinfo=UTC), "2027-04-01 10:00"),
            (datetime(2027, 4, 15, 9, 0, tzinfo=UTC), "2027-04-15 10:00"),
        ],
    ),
    "a time skipped": (  # 01:30 never shows on 28 Mar: 02:30 that day, then 01:30 again
        "2027-03-21 01:30",
        "1w",
        [
            (datetime(2027, 3, 28, 1, 30, tzinfo=UTC), "2027-03-28 02:30"),
            (datetime(2027, 4, 4, 0, 30, tzinfo=UTC), "2027-04-04 01:30"),
        ],
    ),
    "a time shown twice": (  # 01:30 on 25 Oct: the first (BST), not the second (GMT)
        "2026-10-18 01:30",
        "1w",
        [
            (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "2026-10-25 01:30"),
            (datetime(2026, 11, 1, 1, 30, tzinfo=UTC), "2026-11-01 01:30"),
        ],
    ),
}


@pytest.mark.parametrize(
    "made_before_0020", [False, True], ids=["cli", "schedule made before 0020"]
)
@pytest.mark.parametrize("case", list(_ROUNDS_ACROSS_CHANGES))
async def test_rounds_keep_their_local_time_when_the_clocks_change(
    api: LocalBotApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    made_before_0020: bool,
) -> None:
    """A round set for 10:00 stays at 10:00 in London when the clocks change (N x 24 hours
    on, it ran at 09:00 after they went back, 11:00 after they went forward), and the round
    after they go forward, an hour sooner than N x 24 hours, still asks everyone asked at
    the last one. A round moved on an hour because its time did not exist that day goes
    back to its time the round after, also for a schedule made before the local time was
    kept (read from its next round's time once, then kept)."""
    start, every, rounds = _ROUNDS_ACROSS_CHANGES[case]
    first = _ms(
        datetime.strptime(start, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo("Europe/London"))
    )
    day = 86_400_000
    clock = ManualClock(to_datetime(first - 2 * day))
    for person in PEOPLE_OF_LONDON:
        api.add_chat(person)
    # a check-in closes after 3 days, well before the next round (it would not be asked)
    async with running_bot(api, tmp_path, clock=clock, CHECKIN_EXPIRE_DAYS="3") as runtime:
        settings, records = runtime.settings, Records(runtime.settings)
        await _sign_up_people_of_london(runtime, clock.now_ms())
        if made_before_0020:  # as it stood after the upgrade: no local time kept
            async with runtime.db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO checkin_schedules (region, every_days, next_at, created_by, "
                    "created_at, updated_at) VALUES ('london', ?, ?, 'cli', 0, 0)",
                    (parse_every(every), first),
                )
                await checkins_module.schedule_round(conn, "london", first, clock.now_ms())
        else:
            args = ("schedule", "--region", "london", "--every", every, "--start", start)
            assert await asyncio.to_thread(_checkin_cli, settings, clock, *args) == 0
        open_ones = "SELECT COUNT(*) FROM checkins WHERE closed_at IS NULL"
        due = first
        for n, (moment, shown) in enumerate(rounds, start=1):
            clock.set(to_datetime(due - day))  # the last round's check-ins close meanwhile
            runtime.scheduler.wake()
            await eventually(lambda: records.query(open_ones) == [(0,)])
            clock.set(to_datetime(due))
            runtime.scheduler.wake()
            due = _ms(moment)
            await eventually(
                lambda: records.query("SELECT next_at FROM checkin_schedules") == [(due,)]  # noqa: B023 - awaited at once
            )
            asked = records.query("SELECT COUNT(*) FROM checkins")
            assert asked == [(n * len(PEOPLE_OF_LONDON),)], f"round {n}"
            capsys.readouterr()
            assert await asyncio.to_thread(_checkin_cli, settings, clock, "list") == 0
            listed = capsys.readouterr().out
            assert listed == f"london: every {parse_every(every)} days, next {shown}\n"
        # kept, as the local time staff gave (read from next_at before the first round)
        hour, minute = int(start[11:13]), int(start[14:16])
        kept = records.query("SELECT local_time_ms FROM checkin_schedules")
        assert kept == [((hour * 60 + minute) * 60_000,)]


async def test_a_schedule_that_drifted_before_the_upgrade_goes_back_to_the_time_given(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Before the local time was kept, 10:00 BST on 1 Oct plus 4 x 7 x 24 hours came out
    at 09:00 GMT on 29 Oct. Its next round is at 10:00 again: the time staff gave, from
    the audit log, not the drifted one."""
    london = ZoneInfo("Europe/London")
    given = _ms(datetime(2026, 10, 1, 10, 0, tzinfo=london))
    drifted = given + 28 * 86_400_000
    assert to_datetime(drifted) == datetime(2026, 10, 29, 9, 0, tzinfo=UTC)
    clock = ManualClock(to_datetime(drifted - 2 * 86_400_000))
    for person in PEOPLE_OF_LONDON:
        api.add_chat(person)
    async with running_bot(api, tmp_path, clock=clock, CHECKIN_EXPIRE_DAYS="3") as runtime:
        records = Records(runtime.settings)
        await _sign_up_people_of_london(runtime, clock.now_ms())
        async with runtime.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO checkin_schedules (region, every_days, next_at, created_by, "
                "created_at, updated_at) VALUES ('london', 28, ?, 'cli', 0, 0)",
                (drifted,),
            )
            await checkins_module.schedule_round(conn, "london", drifted, clock.now_ms())
            details = {"every_days": "28", "next_at": str(given)}
            await AuditLog(conn).record("cli", "checkin.scheduled", "region:london", details, 0)
        clock.set(to_datetime(drifted))
        runtime.scheduler.wake()
        back = _ms(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))  # 10:00 GMT
        next_round = "SELECT next_at FROM checkin_schedules"
        await eventually(lambda: records.query(next_round) == [(back,)])
        kept = records.query("SELECT local_time_ms FROM checkin_schedules")
        assert kept == [(10 * 3_600_000,)]


async def test_a_start_in_the_past_or_that_the_clocks_skip_is_refused(
    api: LocalBotApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`checkin schedule --start` refuses, in one line and exit 2 like its other errors, a
    time already past (its round would be sent at once) and one the clocks never show (the
    hour skipped when they go forward, which became another time unsaid); nothing is
    scheduled. The current minute is "now", and the hour after the skip is there."""
    clock = ManualClock(datetime(2027, 3, 27, 12, 0, 30, tzinfo=UTC))  # the day before
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        settings = runtime.settings
    capsys.readouterr()
    refused = {
        "2027-03-28 01:00": "does not exist in Europe/London",
        "2027-03-28 01:59": "does not exist in Europe/London",
        "2027-03-27 11:59": "is in the past",
        "2026-10-22 10:00": "is in the past",
    }
    for start, why in refused.items():
        args = ("schedule", "--region", "london", "--every", "4w", "--start", start)
        assert await asyncio.to_thread(_checkin_cli, settings, clock, *args) == 2, start
        error = capsys.readouterr().err
        assert error.startswith(f"error: --start {start} {why}") and error.count("\n") == 1
    records = Records(settings)
    assert records.query("SELECT COUNT(*) FROM checkin_schedules") == [(0,)]
    for start, next_at in (
        ("2027-03-27 12:00", datetime(2027, 3, 27, 12, 0, tzinfo=UTC)),
        ("2027-03-28 02:00", datetime(2027, 3, 28, 1, 0, tzinfo=UTC)),
    ):
        args = ("schedule", "--region", "london", "--every", "4w", "--start", start)
        assert await asyncio.to_thread(_checkin_cli, settings, clock, *args) == 0
        assert records.query("SELECT next_at FROM checkin_schedules") == [(_ms(next_at),)]


async def test_a_round_stopped_before_it_is_due_asks_nobody(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Staff run `checkin stop` while London's round is already queued: when its job falls
    due it asks nobody (a regression there would ask a whole region after staff said
    stop), nothing is scheduled after it, and the stop is audited."""
    clock = ManualClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    now = clock.now_ms()
    for person in PEOPLE_OF_LONDON:
        api.add_chat(person)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        held = hold_jobs(runtime, checkins_module.ROUND_JOB)
        await _sign_up_people_of_london(runtime, now)
        await _schedule_weekly_round_of_london(runtime, now)
        await eventually(lambda: bool(held))
        stop = ("stop", "--region", "london")
        assert await asyncio.to_thread(_checkin_cli, runtime.settings, clock, *stop) == 0
        async with runtime.db.transaction() as conn:
            await runtime.checkins.on_round(conn, held.pop(0), clock.now_ms())
        records = Records(runtime.settings)
        await settled(api, records)
        assert records.query("SELECT COUNT(*) FROM checkins") == [(0,)]
        assert records.query("SELECT COUNT(*) FROM checkin_schedules") == [(0,)]
        assert records.pending_jobs(checkins_module.ROUND_JOB) == 0
        assert records.query("SELECT target FROM audit_log WHERE action = 'checkin.stopped'") == [
            ("region:london",)
        ]
    assert not any(api.messages(p.chat_id) for p in PEOPLE_OF_LONDON)


async def test_words_typed_at_a_check_in_question_are_kept_not_dropped(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Ada types her complaint at "Do they listen to you?", where only a tap answers: it is
    her voice, kept as a written answer with its themes, and she is asked to tap as well.
    A word or two ("idk") is only asked again; at the intro (whether to begin) nothing is
    kept."""
    async with running_bot(api, tmp_path) as runtime:
        ada = Chat(api, ADA)
        await onboard(ada)  # keep my answers: yes
        await ada.say("/feedback")
        records = Records(runtime.settings)
        answers = "SELECT question FROM answers"
        at_intro = await ada.say("why do you want to know all this about me")
        assert "tap one of the buttons" in at_intro.text
        await ada.tap("Start")
        assert "tap one of the buttons" in (await ada.say("idk really")).text
        kept = await ada.say("They never listen, my housing is a mess and nobody helps")
        assert "We kept what you wrote" in kept.text and "listen to you" in kept.text
        assert records.query(answers) == [("aside",)]
        themes = "SELECT theme FROM answer_themes"
        assert ("housing",) in records.query(themes)
        await ada.tap("Never")  # and the tap still answers the question
        await settled(api, records)
        assert records.query("SELECT principle, score FROM checkin_scores") == [("voice", 1)]
