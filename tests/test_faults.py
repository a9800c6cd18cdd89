"""The fault suite (issue 7): kill -9 rounds, repeated and shuffled updates, update ids
that jump backwards, a failing or silent Bot API, and a database locked by another writer.
Everything runs the real bot against the local Bot API server; everyone is invented.

Longer runs: `make soak` (200 kill rounds); `make reliability` rewrites docs/reliability.md
from the per-scenario counts these tests write (tests/reliability.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from bot.local_api import FakePerson, LocalBotApi
from storage.clock import ManualClock
from tests.fault_rounds import ONBOARDING, checkin, follow, run_kill_rounds
from tests.harness import TOKEN, Records, running_bot
from tests.reliability import record

KILL_ROUNDS = int(os.environ.get("FAULT_KILL_ROUNDS", "20"))
SEED = int(os.environ.get("FAULT_SEED", "7"))
DAY = 86_400


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
        await asyncio.sleep(0.3)  # let late copies arrive: they must change nothing
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
