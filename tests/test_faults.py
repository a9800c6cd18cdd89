"""The fault suite (issue 7): kill -9 rounds, repeated and shuffled updates, update ids
that jump backwards, a failing or silent Bot API, and a database locked by another writer.
Everything runs the real bot against the local Bot API server; everyone is invented.

Longer runs: `make soak` (200 kill rounds); `make reliability` rewrites docs/reliability.md
from the per-scenario counts these tests write (tests/reliability.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bot.local_api import FakePerson, LocalBotApi
from storage.clock import ManualClock
from tests.fault_rounds import (
    EXPECTED_CONSENTS,
    ONBOARDING,
    Step,
    checkin,
    follow,
    run_kill_rounds,
)
from tests.harness import (
    TOKEN,
    Chat,
    Records,
    eventually,
    onboard,
    running_bot,
    settings_for,
    settled,
)
from tests.reliability import record

KILL_ROUNDS = int(os.environ.get("FAULT_KILL_ROUNDS", "20"))
SEED = int(os.environ.get("FAULT_SEED", "7"))
DAY = 86_400
LOCK_SECONDS = [float(s) for s in os.environ.get("FAULT_LOCK_SECONDS", "4,12").split(",")]


def invented(n: int) -> FakePerson:
    return FakePerson(user_id=750_000_000 + n, first_name="-", language_code="en")


async def test_kill_rounds_lose_nothing_acknowledged(tmp_path: Path) -> None:
    """At least 20 kill -9 and restart rounds at seeded random moments across onboarding,
    check-ins, panel creation, the invitation broadcast and RSVPs (tests/fault_rounds.py)."""
    stats = await run_kill_rounds(tmp_path, rounds=KILL_ROUNDS, seed=SEED)
    record("kill_rounds", stats.rounds, not stats.failures, stats)
    assert stats.failures == []
    assert stats.kills == KILL_ROUNDS >= 20
    assert stats.idle_checked_at_kill > 0 and stats.lost_acknowledged == 0


def world(records: Records, people: list[FakePerson], api: LocalBotApi) -> dict[str, object]:
    """Everything the scripts leave behind, without ids and times that differ run to run."""
    state: dict[str, object] = {}
    for person in people:
        who = records.pseudonym(person)
        answers = records.query("SELECT ciphertext FROM answers WHERE pseudonym = ?", who)
        state[f"person {person.user_id % 1000}"] = {
            "consents": records.consents(person),
            "person": records.query(
                "SELECT region, locale, reachable FROM people WHERE pseudonym = ?", who
            ),
            "place": records.place(person),
            "checkins": records.query("SELECT status FROM checkins WHERE pseudonym = ?", who),
            "scores": sorted(
                records.query(
                    "SELECT s.principle, s.score FROM checkin_scores s JOIN checkins c "
                    "ON c.id = s.checkin_id WHERE c.pseudonym = ?",
                    who,
                ),
                key=str,
            ),
            "answers": [records.secrets.decrypt_text(bytes(a)) for (a,) in answers],  # type: ignore[arg-type]
            "themes": sorted(
                str(t)
                for (t,) in records.query(
                    "SELECT t.theme FROM answer_themes t JOIN answers a ON a.id = t.answer_id "
                    "WHERE a.pseudonym = ?",
                    who,
                )
            ),
            # What the person saw, in order: every reply once, nothing twice.
            "received": [m.text for m in api.messages(person.chat_id)],
        }
    state["checkin_counts"] = records.query(
        "SELECT region, locale, sent, started, completed FROM checkin_counts ORDER BY 1, 2"
    )
    state["outbox"] = records.query(
        "SELECT kind, status, COUNT(*) FROM outbox GROUP BY 1, 2 ORDER BY 1, 2"
    )
    state["inbox not handled"] = records.query(
        "SELECT COUNT(*) FROM inbox WHERE status <> 'handled'"
    )
    return state


async def scripted(
    api: LocalBotApi, tmp_path: Path, people: list[FakePerson], faulty: bool
) -> dict[str, object]:
    """Four people onboard, and three days later each does a check-in. `faulty`: every
    update is delivered 1-5 times in shuffled batches, and after the quiet spell the update
    ids start again from 1, below every id already seen."""
    clock = ManualClock()
    if faulty:
        api.repeat_updates(seed=SEED, max_copies=5)
    async with running_bot(api, tmp_path, clock=clock) as runtime:
        await asyncio.gather(*(follow(api, p, ONBOARDING, timeout=15) for p in people))
        clock.advance(3 * DAY)
        if faulty:
            api.restart_update_ids(1)
        texts = [f"The waiting room needs more chairs, from {p.user_id % 1000}." for p in people]
        await asyncio.gather(
            *(follow(api, p, checkin(t), timeout=15) for p, t in zip(people, texts, strict=True))
        )
        records = Records(runtime.settings)
        await settled(api, records)  # late copies handled: they must change nothing
        assert records.query("PRAGMA integrity_check") == [("ok",)]
        return world(records, people, api)


async def test_repeated_shuffled_and_backwards_updates_end_as_one_clean_delivery(
    api: LocalBotApi, tmp_path: Path
) -> None:
    people = [invented(n) for n in range(1, 5)]
    clean_dir, faulty_dir = tmp_path / "clean", tmp_path / "faulty"
    clean_dir.mkdir()
    faulty_dir.mkdir()
    async with LocalBotApi(token=TOKEN, bot_username="yousaid_test_bot") as clean_api:
        clean = await scripted(clean_api, clean_dir, people, faulty=False)
    # The same keys, so the same pseudonyms: the two databases can be compared row for row.
    shutil.copy(clean_dir / "secrets", faulty_dir / "secrets")
    faulty = await scripted(api, faulty_dir, people, faulty=True)
    repeats = api.repeated_deliveries
    record(
        "repeated_shuffled_backwards_updates",
        1,
        faulty == clean,
        {"people": len(people), "extra_copies_delivered": repeats, "ids_restarted": True},
    )
    assert repeats > 20  # the faults really happened
    assert faulty == clean


async def test_a_failing_slow_or_silent_bot_api_loses_nothing_and_others_are_served(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Ada's messages meet 500, a connection cut before and after Telegram acted, 429, a
    slow answer, no answer at all, and getUpdates failing; then she blocks the bot (403).
    Bran and Ceri, talking at the same time, are served throughout; every reply queued
    reaches Ada (a cut after Telegram acted may repeat one); nothing stays queued."""
    ada, bran, ceri = invented(11), invented(12), invented(13)
    holds = []

    def faults_for_ada(step: int) -> None:
        api.set_delay("sendMessage", 0, chat_id=ada.chat_id)
        if step == 2:
            api.fail_next("sendMessage", 500, retry_after=None, chat_id=ada.chat_id)
        elif step == 3:
            api.drop_next("sendMessage", chat_id=ada.chat_id)
        elif step == 4:
            api.drop_next("sendMessage", chat_id=ada.chat_id, after_processing=True)
        elif step == 5:
            api.fail_next("sendMessage", 429, retry_after=1)  # whoever sends next
        elif step == 6:
            api.set_delay("sendMessage", 3.0, chat_id=ada.chat_id)
        elif step == 7:
            holds.append(api.hold("sendMessage", chat_id=ada.chat_id))  # never answered
        elif step == 8:
            api.fail_next("getUpdates", 500, retry_after=None)
            api.drop_next("getUpdates")
        elif step == 9:  # the batch was handed out, but the answer never arrived
            api.drop_next("getUpdates", after_processing=True)

    texts = {
        p.user_id: f"More evening appointments please, from {p.user_id % 100}."
        for p in (ada, bran, ceri)
    }
    async with running_bot(api, tmp_path) as runtime:
        records = Records(runtime.settings)
        took = await asyncio.gather(
            follow(api, ada, [*ONBOARDING, *checkin(texts[ada.user_id])], 30, faults_for_ada),
            follow(api, bran, [*ONBOARDING, *checkin(texts[bran.user_id])], 30),
            follow(api, ceri, [*ONBOARDING, *checkin(texts[ceri.user_id])], 30),
        )
        for hold in holds:
            hold.release(deliver=False)
        # 403: Ada blocks the bot. Her reply cannot reach her: she is marked unreachable
        # and her queue cancelled; Bran is still served; writing again makes her reachable.
        who = records.pseudonym(ada)
        api.block(ada.chat_id)
        api.send_text(ada, "/help")
        await eventually(
            lambda: records.query("SELECT reachable FROM people WHERE pseudonym = ?", who) == [(0,)]
        )
        await follow(api, bran, [Step("say", "/help", ("/privacy",))], 10)
        api.unblock(ada.chat_id)
        await follow(api, ada, [Step("say", "/help", ("/privacy",))], 10)
        assert records.query("SELECT reachable FROM people WHERE pseudonym = ?", who) == [(1,)]
        await eventually(
            lambda: records.query("SELECT COUNT(*) FROM outbox WHERE status = 'pending'") == [(0,)]
        )
        outcomes = {
            (str(who_), str(status)): n
            for who_, status, n in records.query(
                "SELECT CASE chat_id WHEN ? THEN 'ada' ELSE 'others' END, status, COUNT(*) "
                "FROM outbox GROUP BY 1, 2",
                ada.chat_id,
            )
        }
        cancelled = records.query(
            "SELECT chat_id, last_error FROM outbox WHERE status = 'cancelled' GROUP BY 1, 2"
        )
        for person in (ada, bran, ceri):
            assert records.consents(person) == EXPECTED_CONSENTS
            answers = records.query(
                "SELECT ciphertext FROM answers WHERE pseudonym = ?", records.pseudonym(person)
            )
            assert [records.secrets.decrypt_text(bytes(a)) for (a,) in answers] == [  # type: ignore[arg-type]
                texts[person.user_id]
            ]
        assert records.query("SELECT COUNT(*) FROM inbox WHERE status <> 'handled'") == [(0,)]
        assert records.query("PRAGMA integrity_check") == [("ok",)]
    # Everything queued was sent, except the reply to Ada's /help while she had blocked us.
    assert cancelled == [(ada.chat_id, "403: blocked by the person")]
    assert set(outcomes) == {("ada", "sent"), ("ada", "cancelled"), ("others", "sent")}
    ada_took, others_took = took[0], took[1] + took[2]
    # Ada's faults cost her seconds (slow, silent, retried); the others never waited on them.
    assert sum(ada_took) > sum(took[1]) + 5
    assert max(others_took) < 6.0 and sorted(others_took)[len(others_took) // 2] < 0.5
    calls = {c.outcome for c in api.calls() if c.chat_id == ada.chat_id}
    assert {"dropped", "error"} <= calls
    record(
        "bot_api_faults",
        1,
        True,
        {
            "faults": "500, cut before, cut after, 429, 3 s slow, no answer, getUpdates "
            "500, cut before and after, 403",
            "slowest_other_reply_s": round(max(others_took), 2),
            "ada_total_s": round(sum(ada_took), 1),
        },
    )


def hold_the_write_lock(database: Path, seconds: float, started: threading.Event) -> None:
    """A second writer (a backup, an admin command) holding BEGIN IMMEDIATE."""
    conn = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('fault_test', 'x')")
        started.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.mark.parametrize("lock_seconds", LOCK_SECONDS)
async def test_a_database_locked_by_another_writer_only_delays_replies(
    api: LocalBotApi, tmp_path: Path, lock_seconds: float
) -> None:
    """Three people are mid-way through onboarding and a check-in when another writer holds
    the database for a few seconds, then for longer than busy_timeout (10 s; the poller used
    to die of that): every reply comes, later; no one is told something went wrong; nothing
    is stored twice."""
    people = [invented(21), invented(22), invented(23)]
    texts = {
        p.user_id: f"Letters should be in plain words, from {p.user_id % 100}." for p in people
    }
    async with running_bot(api, tmp_path) as runtime:
        records = Records(runtime.settings)
        await asyncio.gather(*(follow(api, p, ONBOARDING[:4], 10) for p in people))
        started = threading.Event()
        locker = asyncio.create_task(
            asyncio.to_thread(
                hold_the_write_lock, runtime.settings.database_path, lock_seconds, started
            )
        )
        while not started.is_set():  # noqa: ASYNC110 - a thread's event
            await asyncio.sleep(0.01)
        began = time.monotonic()
        took = await asyncio.gather(
            *(follow(api, p, [*ONBOARDING[4:], *checkin(texts[p.user_id])], 30) for p in people)
        )
        await locker
        waited = max(t[0] for t in took)
        for person in people:
            assert records.consents(person) == EXPECTED_CONSENTS
            assert records.query(
                "SELECT COUNT(*) FROM answers WHERE pseudonym = ?", records.pseudonym(person)
            ) == [(1,)]
            assert not [m for m in api.messages(person.chat_id) if "went wrong" in (m.text or "")]
        assert records.query("SELECT COUNT(*) FROM inbox WHERE status <> 'handled'") == [(0,)]
        assert records.query("PRAGMA integrity_check") == [("ok",)]
    # The first replies waited for the lock: the lock really was in the way.
    assert waited >= lock_seconds - 0.5, (waited, time.monotonic() - began)
    record(
        f"database_locked_{lock_seconds:g}s",
        1,
        True,
        {"lock_seconds": lock_seconds, "people": len(people), "longest_wait_s": round(waited, 1)},
    )


async def test_an_update_whose_failure_cannot_be_recorded_is_still_tried_again(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handling fails with the database locked, and counting the failure fails for the same
    reason: the update used to stay pending, unanswered, until the next start. It is tried
    again a few seconds on and answered."""
    person = invented(31)
    async with running_bot(api, tmp_path) as runtime:
        service = runtime.service
        handle, count = service.handle_event, service.record_failure
        trouble = {"handling": 1, "counting": 1}

        async def locked_once(*args: object, **kwargs: object) -> None:
            if trouble["handling"]:
                trouble["handling"] -= 1
                raise sqlite3.OperationalError("database is locked")
            await handle(*args, **kwargs)  # type: ignore[arg-type]

        async def not_counted_once(*args: object, **kwargs: object) -> int | None:
            if trouble["counting"]:
                trouble["counting"] -= 1
                raise sqlite3.OperationalError("database is locked")
            return await count(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(service, "handle_event", locked_once)
        monkeypatch.setattr(service, "record_failure", not_counted_once)
        api.send_text(person, "/help")
        await api.wait_for_messages(person.chat_id, 1, timeout=15)
        assert trouble == {"handling": 0, "counting": 0}
        records = Records(runtime.settings)
        await eventually(lambda: records.query("SELECT status FROM inbox") == [("handled",)])


async def at_the_first_question(api: LocalBotApi, person: FakePerson) -> Chat:
    """The person signs up and starts a check-in: its first question is on screen."""
    chat = Chat(api, person)
    await onboard(chat)
    await chat.say("/feedback")
    await chat.tap("Start")
    return chat


async def test_a_typed_answer_does_not_overtake_one_being_tried_again(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ada types "Always" for the first question; the database is locked, so it fails and
    is tried again two seconds on. Meanwhile she types "Never". The second waited for the
    first, so "Always" lands on its question (they were stored the other way round), and
    "Never", typed before the second question came, answers nothing: she is asked it."""
    person = invented(32)
    async with running_bot(api, tmp_path) as runtime:
        chat = await at_the_first_question(api, person)
        service = runtime.service
        handle = service.handle_event
        trouble = {"left": 1}

        async def locked_once(update_id: int, sender: Any, event: Any, *rest: Any) -> None:
            if trouble["left"] and getattr(event, "text", None) == "Always":
                trouble["left"] -= 1
                raise sqlite3.OperationalError("database is locked")
            await handle(update_id, sender, event, *rest)

        monkeypatch.setattr(service, "handle_event", locked_once)
        had = len(chat.messages)
        api.send_text(person, "Always")
        await asyncio.sleep(0.3)  # it has failed; its retry is due in two seconds
        api.send_text(person, "Never")
        asked = await api.wait_for_messages(person.chat_id, had + 2, timeout=15)
        assert "came before this question" in (asked[-1].text or "")
        records = Records(runtime.settings)
        await settled(api, records)
        scores = "SELECT principle, score FROM checkin_scores ORDER BY principle"
        assert records.query(scores) == [("voice", 5)]


async def test_a_stop_does_not_wait_for_a_retry_and_the_next_start_keeps_the_order(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Always" fails and waits for its retry; "Never" waits behind it; then the bot is
    stopped. The stop does not wait for them (it waited up to fifteen minutes); both stay
    in the inbox, and the next start handles them in the order they were sent ("Never",
    typed before the second question came, answers nothing)."""
    person = invented(33)
    async with running_bot(api, tmp_path) as runtime:
        await at_the_first_question(api, person)
        handle = runtime.service.handle_event

        async def locked(update_id: int, sender: Any, event: Any, *rest: Any) -> None:
            if getattr(event, "text", None) == "Always":
                raise sqlite3.OperationalError("database is locked")
            await handle(update_id, sender, event, *rest)

        monkeypatch.setattr(runtime.service, "handle_event", locked)
        api.send_text(person, "Always")
        await asyncio.sleep(0.3)  # it has failed; its retry is due in two seconds
        api.send_text(person, "Never")
        await asyncio.sleep(0.3)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5
    records = Records(settings_for(api, tmp_path))
    assert records.query("SELECT COUNT(*) FROM inbox WHERE status = 'pending'") == [(2,)]
    async with running_bot(api, tmp_path):
        await eventually(
            lambda: records.query("SELECT COUNT(*) FROM inbox WHERE status = 'pending'") == [(0,)]
        )
        scores = "SELECT principle, score FROM checkin_scores ORDER BY principle"
        assert records.query(scores) == [("voice", 5)]
