"""Feedback check-ins on a real SQLite file: the anonymous counters, scores, who is due a
round, the one nudge, expiry, themes, and forgetting a person.

Every person here is invented; pseudonyms look like "p-ada"."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.checkins import (
    PRINCIPLES,
    Checkin,
    CheckinAlreadyOpen,
    CheckinCount,
    Checkins,
    CheckinSchedule,
)
from storage.database import Database, bundled_migrations
from storage.people import ConsentLedger, People

NOW = 1_790_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR
WEEK = "2026-W48"
CHAT_IDS = itertools.count(5000)
CHECKIN_TABLES = ("checkins", "checkin_scores", "checkin_counts", "checkin_schedules")


@pytest.fixture()
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(str(tmp_path / "test.db"))
    await database.migrate()
    yield database
    await database.close()


async def add_people(
    db: Database,
    pseudonyms: Sequence[str],
    *,
    region: str | None = "london",
    locale: str = "en",
    consent: bool | None = True,
) -> None:
    """consent None: never asked about feedback."""
    async with db.transaction() as conn:
        people, ledger = People(conn), ConsentLedger(conn)
        for pseudonym in pseudonyms:
            await people.touch(pseudonym, next(CHAT_IDS), locale, NOW)
            if region is not None:
                await people.set_region(pseudonym, region, NOW)
            if consent is not None:
                await ledger.record(pseudonym, "feedback", consent, "v1", NOW)


async def send(
    db: Database,
    pseudonym: str,
    *,
    region: str | None = "london",
    locale: str = "en",
    week: str = WEEK,
    source: str = "scheduled",
    now: int = NOW,
) -> Checkin:
    async with db.transaction() as conn:
        return await Checkins(conn).create(pseudonym, region, locale, week, source, now)


async def counts(db: Database, week: str = WEEK) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(region, locale) -> (sent, started, completed) for one week."""
    async with db.read() as conn:
        found = await Checkins(conn).counts(week)
    return {(c.region, c.locale): (c.sent, c.started, c.completed) for c in found}


async def add_answer(db: Database, pseudonym: str, checkin_id: int | None) -> int:
    """A free-text answer as the bot will store it: already encrypted, linked to a check-in."""
    async with (
        db.transaction() as conn,
        conn.execute(
            "INSERT INTO answers (pseudonym, dialogue, question, ciphertext, created_at, "
            "checkin_id, quote) VALUES (?, 'checkin', 'free_text', ?, ?, ?, ?) RETURNING id",
            (pseudonym, b"gAAAA-not-really", NOW, checkin_id, b"gAAAA-quote"),
        ) as cursor,
    ):
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


# Migrations


async def test_migrations_apply_from_empty_and_over_existing_answers(tmp_path: Path) -> None:
    database = await Database.open(str(tmp_path / "fresh.db"))
    migrations = bundled_migrations()
    checkins_at = next(i for i, m in enumerate(migrations) if m.name == "0007_checkins.sql")
    await database.migrate(migrations[:checkins_at])
    async with database.transaction() as conn:
        # As the schema was then (People.touch writes columns added since).
        await conn.execute(
            "INSERT INTO people (pseudonym, chat_id, locale, created_at, updated_at) "
            "VALUES ('p-ada', 1, 'en', ?, ?)",
            (NOW, NOW),
        )
        await conn.execute(
            "INSERT INTO answers (pseudonym, dialogue, question, ciphertext, created_at) "
            "VALUES ('p-ada', 'onboarding', 'why', x'00', ?)",
            (NOW,),
        )

    assert await database.migrate() == [m.name for m in migrations[checkins_at:]]
    assert await database.schema_version() == len(migrations)
    assert await database.integrity_check() == "ok"
    async with database.read() as conn:
        async with conn.execute("SELECT checkin_id, quote FROM answers") as cursor:
            assert [tuple(r) for r in await cursor.fetchall()] == [(None, None)]
        for table in (*CHECKIN_TABLES, "answer_themes"):
            async with conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None and row[0].rstrip().endswith("STRICT"), table
        async with conn.execute("PRAGMA foreign_key_check") as cursor:
            assert await cursor.fetchall() == []
    await database.close()


async def test_the_tables_refuse_what_cannot_be_true(db: Database) -> None:
    await add_people(db, ["p-ada"])
    checkin = await send(db, "p-ada")
    refused = [
        ("INSERT INTO checkin_scores VALUES (?, 'voice', 6, 0)", (checkin.id,)),
        ("INSERT INTO checkin_scores VALUES (?, 'voice', 0, 0)", (checkin.id,)),
        ("INSERT INTO checkin_scores VALUES (?, 'fairness', 3, 0)", (checkin.id,)),
        ("INSERT INTO checkin_scores VALUES (?, 'voice', 'three', 0)", (checkin.id,)),
        ("UPDATE checkins SET status = 'started' WHERE id = ?", (checkin.id,)),
        ("UPDATE checkins SET status = 'expired' WHERE id = ?", (checkin.id,)),
        ("UPDATE checkins SET status = 'lost' WHERE id = ?", (checkin.id,)),
        ("UPDATE checkins SET source = 'staff' WHERE id = ?", (checkin.id,)),
        ("UPDATE checkins SET week = '2026-48' WHERE id = ?", (checkin.id,)),
        ("UPDATE checkins SET week = '2026-W54' WHERE id = ?", (checkin.id,)),
        ("UPDATE checkin_counts SET started = sent + 1", ()),
        (
            "INSERT INTO checkin_schedules (region, every_days, next_at, created_by, created_at, "
            "updated_at) VALUES ('wales', 0, 0, 's-ivy', 0, 0)",
            (),
        ),
        (
            "INSERT INTO checkin_schedules (region, every_days, next_at, created_by, created_at, "
            "updated_at) VALUES ('wales', 367, 0, 's-ivy', 0, 0)",
            (),
        ),
    ]
    for statement, params in refused:
        with pytest.raises(sqlite3.IntegrityError):
            async with db.transaction() as conn:
                await conn.execute(statement, params)
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            await checkins.record_score(checkin.id, "voice", 6, NOW)
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            await checkins.record_score(checkin.id, "fairness", 3, NOW)
        # A refused score leaves the check-in as it was: not started, not counted.
        assert (await checkins.get(checkin.id)) == checkin
    assert await counts(db) == {("london", "en"): (1, 0, 0)}


# Counters


async def test_counts_by_week_region_and_locale_each_step_once(db: Database) -> None:
    await add_people(db, ["p-ada", "p-bea", "p-cal"])
    await add_people(db, ["p-dev"], locale="cy", region="wales")
    await add_people(db, ["p-eli"], region=None)
    ada = await send(db, "p-ada")
    bea = await send(db, "p-bea", source="asked")
    cal = await send(db, "p-cal")
    dev = await send(db, "p-dev", region="wales", locale="cy")
    eli = await send(db, "p-eli", region=None)
    assert await counts(db) == {
        ("", "en"): (1, 0, 0),
        ("london", "en"): (3, 0, 0),
        ("wales", "cy"): (1, 0, 0),
    }
    assert await counts(db, "2026-W49") == {}

    async with db.transaction() as conn:
        checkins = Checkins(conn)
        # p-ada moves away and switches to Welsh: her check-in still counts where it was sent.
        await People(conn).set_region("p-ada", "wales", NOW + HOUR)
        await People(conn).set_locale("p-ada", "cy", NOW + HOUR)
        assert await checkins.mark_started(ada.id, NOW + HOUR)
        assert not await checkins.mark_started(ada.id, NOW + 2 * HOUR)
        assert await checkins.complete(ada.id, NOW + 3 * HOUR)
        assert not await checkins.complete(ada.id, NOW + 4 * HOUR)
        assert not await checkins.mark_started(ada.id, NOW + 4 * HOUR)
        # Completed straight from 'sent' (every question skipped at once): counted started too.
        assert await checkins.complete(bea.id, NOW + HOUR)
        assert await checkins.record_score(cal.id, "voice", 4, NOW + HOUR)
        assert await checkins.record_score(cal.id, "respect", 5, NOW + HOUR)
        assert await checkins.expire(dev.id, NOW + DAY)
        assert not await checkins.complete(dev.id, NOW + DAY)
        assert await checkins.record_score(eli.id, "trust", None, NOW + HOUR)
        assert await checkins.complete(eli.id, NOW + HOUR)
        later = await checkins.create("p-eli", None, "en", "2026-W49", "asked", NOW + 7 * DAY)
        assert await checkins.mark_started(later.id, NOW + 7 * DAY + HOUR)

    assert await counts(db) == {
        ("", "en"): (1, 1, 1),
        ("london", "en"): (3, 3, 2),
        ("wales", "cy"): (1, 0, 0),
    }
    assert await counts(db, "2026-W49") == {("", "en"): (1, 1, 0)}
    async with db.read() as conn:
        checkins = Checkins(conn)
        assert await checkins.counts(WEEK, ["wales", "scotland"]) == [
            CheckinCount(WEEK, "wales", "cy", 1, 0, 0)
        ]
        assert await checkins.counts(WEEK, []) == []
        done = await checkins.get(ada.id)
    assert done is not None
    assert (done.status, done.started_at, done.completed_at, done.closed_at) == (
        "completed",
        NOW + HOUR,
        NOW + 3 * HOUR,
        NOW + 3 * HOUR,
    )
    assert (done.region, done.locale) == ("london", "en")


STEPS = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(["send", "round", "start", "score", "skip", "complete", "expire", "nudge"]),
    ),
    min_size=5,
    max_size=40,
)
PROPERTY_PEOPLE = ["p-fay", "p-gus", "p-hal"]


async def play(db: Database, steps: list[tuple[int, str]], week: str) -> None:
    """Whatever the order of taps and jobs, the counters say exactly what the check-ins do."""
    now = NOW
    for who, action in steps:
        now += HOUR
        pseudonym = PROPERTY_PEOPLE[who]
        async with db.transaction() as conn:
            checkins = Checkins(conn)
            current = await checkins.open_for(pseudonym)
            if action == "round":  # everyone with none open, as a round's part asks them
                due = [p for p in PROPERTY_PEOPLE if await checkins.open_for(p) is None]
                made = await checkins.create_for_round(
                    [(p, "en") for p in due], "london", week, now
                )
                assert [c.pseudonym for c in made] == due
                continue
            if action == "send":
                if current is not None:
                    with pytest.raises(CheckinAlreadyOpen):
                        await checkins.create(pseudonym, "london", "en", week, "asked", now)
                else:
                    await checkins.create(pseudonym, "london", "en", week, "asked", now)
                continue
            async with conn.execute(
                "SELECT id FROM checkins WHERE pseudonym = ? AND week = ? ORDER BY id DESC LIMIT 1",
                (pseudonym, week),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                continue
            checkin_id = int(row[0])
            if action == "start":
                await checkins.mark_started(checkin_id, now)
            elif action in ("score", "skip"):
                score = 3 if action == "score" else None
                assert await checkins.record_score(checkin_id, "voice", score, now) == (
                    current is not None and current.id == checkin_id
                )
            elif action == "complete":
                await checkins.complete(checkin_id, now)
            elif action == "expire":
                await checkins.expire(checkin_id, now)
            else:
                await checkins.mark_nudged(checkin_id, now)
    async with db.read() as conn:
        async with conn.execute(
            "SELECT COUNT(*), COUNT(started_at), COUNT(completed_at) FROM checkins WHERE week = ?",
            (week,),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        found = await Checkins(conn).counts(week)
    sent, started, completed = (
        (found[0].sent, found[0].started, found[0].completed) if found else (0, 0, 0)
    )
    assert (sent, started, completed) == (row[0], row[1], row[2])


async def test_a_rounds_part_creates_check_ins_in_order_counted_per_language(
    db: Database,
) -> None:
    await add_people(db, ["p-ada", "p-bea", "p-cal"])
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        asked = [("p-cal", "cy"), ("p-ada", "en"), ("p-bea", "cy")]
        made = await checkins.create_for_round(asked, "london", WEEK, NOW)
        assert [(c.pseudonym, c.locale, c.status, c.source) for c in made] == [
            (p, locale, "sent", "scheduled") for p, locale in asked
        ]
        assert len({c.token for c in made}) == 3
        assert await checkins.open_for("p-ada") == made[1]
        assert await checkins.create_for_round([], "london", WEEK, NOW) == []
    expected = {("london", "cy"): (2, 0, 0), ("london", "en"): (1, 0, 0)}
    assert await counts(db) == expected
    with pytest.raises(sqlite3.IntegrityError):  # one open each: the index is the backstop
        async with db.transaction() as conn:
            await Checkins(conn).create_for_round([("p-ada", "en")], "london", WEEK, NOW)
    assert await counts(db) == expected


def test_counters_always_match_the_check_ins(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    database = loop.run_until_complete(Database.open(str(tmp_path / "property.db")))
    weeks = (f"2027-W{n:02d}" for n in itertools.count(1))
    try:
        loop.run_until_complete(database.migrate())
        loop.run_until_complete(add_people(database, PROPERTY_PEOPLE))

        @settings(max_examples=50, deadline=None)
        @given(STEPS)
        def check(steps: list[tuple[int, str]]) -> None:
            # A fresh week per example: counters from earlier examples stay out of the way.
            week = next(weeks)
            loop.run_until_complete(play(database, steps, week))
            # Close what is left open so the next example may send again.
            loop.run_until_complete(expire_everything(database))

        check()
    finally:
        loop.run_until_complete(database.close())
        loop.close()


async def expire_everything(db: Database) -> None:
    async with db.transaction() as conn:
        for pseudonym in PROPERTY_PEOPLE:
            await Checkins(conn).expire_all_open(pseudonym, NOW)


# Scores


async def test_the_last_choice_wins_and_a_skip_is_kept_as_null(db: Database) -> None:
    await add_people(db, ["p-ada"])
    checkin = await send(db, "p-ada")
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        assert await checkins.scores(checkin.id) == {}
        assert await checkins.record_score(checkin.id, "trust", 2, NOW + 1)
        assert await checkins.record_score(checkin.id, "voice", 2, NOW + 2)
        assert await checkins.record_score(checkin.id, "voice", 5, NOW + 3)
        assert await checkins.record_score(checkin.id, "respect", None, NOW + 4)
        assert await checkins.record_score(checkin.id, "trust", None, NOW + 5)
        scores = await checkins.scores(checkin.id)
        started = await checkins.get(checkin.id)
    assert scores == {"voice": 5, "respect": None, "trust": None}
    assert list(scores) == [p for p in PRINCIPLES if p in scores]  # in the order asked
    assert started is not None and (started.status, started.started_at) == ("started", NOW + 1)
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT principle, answered_at FROM checkin_scores WHERE checkin_id = ? "
            "ORDER BY principle",
            (checkin.id,),
        ) as cursor,
    ):
        assert [tuple(r) for r in await cursor.fetchall()] == [
            ("respect", NOW + 4),
            ("trust", NOW + 5),
            ("voice", NOW + 3),
        ]


async def test_a_closed_check_in_takes_no_more_scores(db: Database) -> None:
    await add_people(db, ["p-ada", "p-bea"])
    done = await send(db, "p-ada")
    gone = await send(db, "p-bea")
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        await checkins.record_score(done.id, "voice", 4, NOW + 1)
        await checkins.complete(done.id, NOW + 2)
        await checkins.expire(gone.id, NOW + 2)
        assert not await checkins.record_score(done.id, "voice", 1, NOW + 3)
        assert not await checkins.record_score(gone.id, "voice", 1, NOW + 3)
        assert await checkins.scores(done.id) == {"voice": 4}
        assert await checkins.scores(gone.id) == {}
        expired = await checkins.get(gone.id)
    # A late tap on an expired check-in does not make it look started in the digest.
    assert expired is not None and (expired.status, expired.started_at) == ("expired", None)
    assert await counts(db) == {("london", "en"): (2, 1, 1)}


# Finding check-ins


async def test_tokens_the_open_check_in_and_the_last_one_sent(db: Database) -> None:
    await add_people(db, ["p-ada", "p-bea"])
    async with db.read() as conn:
        assert await Checkins(conn).last_sent_at("p-ada") is None
        assert await Checkins(conn).open_for("p-ada") is None
    first = await send(db, "p-ada", now=NOW)
    assert len(first.token) == 16 and int(first.token, 16) >= 0
    with pytest.raises(CheckinAlreadyOpen):
        await send(db, "p-ada", source="asked", now=NOW + HOUR)
    async with db.transaction() as conn:
        await Checkins(conn).complete(first.id, NOW + HOUR)
    second = await send(db, "p-ada", source="asked", now=NOW + 2 * HOUR)
    async with db.read() as conn:
        checkins = Checkins(conn)
        assert await checkins.by_token(first.token) == await checkins.get(first.id)
        assert await checkins.by_token("0" * 16) is None
        assert await checkins.get(10_000) is None
        assert await checkins.open_for("p-ada") == second
        assert await checkins.open_for("p-bea") is None
        assert await checkins.last_sent_at("p-ada") == NOW + 2 * HOUR
    assert second.source == "asked" and second.token != first.token
    assert second.is_open and not (await get(db, first.id)).is_open
    # The refused second check-in was neither stored nor counted.
    assert await counts(db) == {("london", "en"): (2, 1, 1)}


async def get(db: Database, checkin_id: int) -> Checkin:
    async with db.read() as conn:
        found = await Checkins(conn).get(checkin_id)
    assert found is not None
    return found


# Who is due a round


async def test_due_people_only_the_reachable_consenting_and_not_recently_asked(
    db: Database,
) -> None:
    await add_people(db, ["p-ada", "p-bea", "p-cal", "p-dev", "p-eli", "p-fay", "p-gus"])
    await add_people(db, ["p-hal"], region="wales")
    await add_people(db, ["p-ivy"], region=None)
    await add_people(db, ["p-jon"], consent=None)
    await add_people(db, ["p-kit"], consent=False)
    await add_people(db, ["p-lou"], locale="cy")
    interval = 28 * DAY
    now = NOW + 60 * DAY
    async with db.transaction() as conn:
        people, ledger, checkins = People(conn), ConsentLedger(conn), Checkins(conn)
        # unreachable: blocked the bot
        bea = await people.get("p-bea")
        assert bea is not None
        await people.set_reachable(bea.chat_id, False, NOW)
        # withdrew feedback consent (and gave another, which does not count)
        await ledger.record("p-cal", "feedback", False, "v1", NOW + DAY)
        await ledger.record("p-cal", "panel_invitations", True, "v1", NOW + DAY)
        # withdrew, then consented again: the latest decision counts
        await ledger.record("p-dev", "feedback", False, "v1", NOW + DAY)
        await ledger.record("p-dev", "feedback", True, "v1", NOW + 2 * DAY)
        # asked within the interval, and answered
        eli = await checkins.create("p-eli", "london", "en", WEEK, "asked", now - DAY)
        await checkins.complete(eli.id, now - DAY)
        # asked before the interval, never answered and still open: due, the round replaces
        # it (close_open_sent_by)
        await checkins.create("p-fay", "london", "en", WEEK, "scheduled", now - 40 * DAY)
        # asked before the interval, and done with it: due again
        gus = await checkins.create("p-gus", "london", "en", WEEK, "scheduled", now - 40 * DAY)
        await checkins.expire(gus.id, now - 33 * DAY)
        due = await checkins.due_people("london", now - interval, now)
        wales = await checkins.due_people("wales", now - interval, now)
        after_ada = await checkins.due_people("london", now - interval, now, after="p-ada")
        after_ada_one = await checkins.due_people("london", now - interval, now, 1, "p-ada")
        with pytest.raises(ValueError, match="swapped"):
            await checkins.due_people("london", now, now - interval)
    chats = {}
    async with db.read() as conn, conn.execute("SELECT pseudonym, chat_id FROM people") as cur:
        chats = {r[0]: r[1] for r in await cur.fetchall()}
    assert due == [
        ("p-ada", chats["p-ada"], "en"),
        ("p-dev", chats["p-dev"], "en"),
        ("p-fay", chats["p-fay"], "en"),
        ("p-gus", chats["p-gus"], "en"),
        ("p-lou", chats["p-lou"], "cy"),
    ]
    assert wales == [("p-hal", chats["p-hal"], "en")]
    assert after_ada == due[1:]  # a round's next part goes on after the last person asked
    assert after_ada_one == due[1:2]


async def test_a_round_closes_only_the_open_check_ins_it_replaces(db: Database) -> None:
    """Those given, open, and sent by the time given: closed as expired; the started ones
    come back (their person may be in the dialogue). Finished, newer, and other people's
    check-ins are left as they are."""
    await add_people(db, ["p-ada", "p-bea", "p-cal", "p-dev", "p-eli"])
    now = NOW + 60 * DAY
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        ada = await checkins.create("p-ada", "london", "en", WEEK, "scheduled", now - 7 * DAY)
        await checkins.mark_started(ada.id, now - 6 * DAY)
        bea = await checkins.create("p-bea", "london", "en", WEEK, "scheduled", now - 7 * DAY)
        cal = await checkins.create("p-cal", "london", "en", WEEK, "asked", now - DAY)
        dev = await checkins.create("p-dev", "london", "en", WEEK, "scheduled", now - 7 * DAY)
        await checkins.complete(dev.id, now - 6 * DAY)
        eli = await checkins.create("p-eli", "london", "en", WEEK, "scheduled", now - 7 * DAY)
        people = ["p-ada", "p-bea", "p-cal", "p-dev"]
        replaced = await checkins.close_open_sent_by(people, now - 6 * DAY, now)
        again = await checkins.close_open_sent_by(people, now - 6 * DAY, now)
        nobody = await checkins.close_open_sent_by([], now, now)
        after = {
            c.pseudonym: c
            for c in [await checkins.get(x.id) for x in (ada, bea, cal, dev, eli)]
            if c
        }
    assert replaced == [("p-ada", ada.token)] and again == [] and nobody == []
    assert {who: c.status for who, c in after.items()} == {
        "p-ada": "expired",
        "p-bea": "expired",
        "p-cal": "sent",
        "p-dev": "completed",
        "p-eli": "sent",
    }
    assert after["p-bea"].closed_at == now and after["p-dev"].closed_at != now


async def test_due_people_is_one_indexed_query(db: Database) -> None:
    """No full scan of check-ins or the ledger, whatever their size: people come by region,
    everything else by index. (100,000 people, half in one region: about 0.2 s.)"""
    async with db.read() as conn:
        captured: list[str] = []
        await conn.set_trace_callback(captured.append)
        await Checkins(conn).due_people("london", NOW - DAY, NOW)
        await conn.set_trace_callback(None)  # type: ignore[arg-type]  # stdlib accepts None
        selects = [s for s in captured if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 1
        # The traced statement has its values filled in, which EXPLAIN takes as they are.
        async with conn.execute("EXPLAIN QUERY PLAN " + selects[0]) as cursor:
            plan = [str(r[3]) for r in await cursor.fetchall()]
    assert plan, plan
    assert any("people_by_region" in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan


# The one nudge, expiry


async def test_exactly_one_nudge_and_only_while_open(db: Database) -> None:
    await add_people(db, ["p-ada", "p-bea", "p-cal"])
    ada = await send(db, "p-ada")
    bea = await send(db, "p-bea")
    cal = await send(db, "p-cal")
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        assert await checkins.mark_nudged(ada.id, NOW + DAY)
        assert not await checkins.mark_nudged(ada.id, NOW + 2 * DAY)
        await checkins.record_score(bea.id, "voice", 3, NOW + HOUR)
        assert await checkins.mark_nudged(bea.id, NOW + DAY)  # started counts as open
        await checkins.complete(cal.id, NOW + HOUR)
        assert not await checkins.mark_nudged(cal.id, NOW + DAY)
        assert not await checkins.mark_nudged(10_000, NOW + DAY)
    assert (await get(db, ada.id)).nudged_at == NOW + DAY
    assert (await get(db, cal.id)).nudged_at is None


async def test_expire_once_and_never_after_completion(db: Database) -> None:
    await add_people(db, ["p-ada", "p-bea", "p-cal"])
    ada = await send(db, "p-ada")
    bea = await send(db, "p-bea")
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        assert await checkins.expire(ada.id, NOW + DAY)
        assert not await checkins.expire(ada.id, NOW + 2 * DAY)
        assert not await checkins.mark_nudged(ada.id, NOW + 2 * DAY)
        assert not await checkins.mark_started(ada.id, NOW + 2 * DAY)
        await checkins.complete(bea.id, NOW + HOUR)
        assert not await checkins.expire(bea.id, NOW + DAY)
    expired, completed = await get(db, ada.id), await get(db, bea.id)
    assert (expired.status, expired.closed_at) == ("expired", NOW + DAY)
    assert (completed.status, completed.closed_at) == ("completed", NOW + HOUR)

    # Withdrawing the feedback consent closes what is open, and only that.
    cal = await send(db, "p-cal")
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        assert await checkins.expire_all_open("p-cal", NOW + DAY) == 1
        assert await checkins.expire_all_open("p-cal", NOW + DAY) == 0
        assert await checkins.expire_all_open("p-bea", NOW + DAY) == 0
    assert (await get(db, cal.id)).status == "expired"
    assert (await get(db, bea.id)).status == "completed"


# Themes of free-text answers


async def test_answer_themes_tag_and_retag(db: Database) -> None:
    await add_people(db, ["p-ada"])
    checkin = await send(db, "p-ada")
    answer_id = await add_answer(db, "p-ada", checkin.id)
    other_id = await add_answer(db, "p-ada", None)
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        assert await checkins.themes_of(answer_id) == []
        await checkins.tag_answer(answer_id, ["kept_informed", "housing", "housing"])
        await checkins.tag_answer(answer_id, ["housing", "appointments_reporting"])
        assert await checkins.themes_of(answer_id) == [
            "appointments_reporting",
            "housing",
            "kept_informed",
        ]
        with pytest.raises(TypeError):
            await checkins.tag_answer(answer_id, "housing")

        # Staff read it: their themes replace the guesses, wrong ones included.
        await checkins.retag_answer(answer_id, ["housing", "practitioner_relationship"])
        assert await checkins.themes_of(answer_id) == ["housing", "practitioner_relationship"]
        # A later keyword pass does not undo the staff's reading...
        await checkins.tag_answer(answer_id, ["kept_informed"])
        assert await checkins.themes_of(answer_id) == ["housing", "practitioner_relationship"]
        # ...and staff may add to it.
        await checkins.tag_answer(answer_id, ["travel_costs"], source="staff")
        await checkins.retag_answer(other_id, ["travel_costs"], source="keywords")
        async with conn.execute(
            "SELECT answer_id, theme, source FROM answer_themes ORDER BY answer_id, theme"
        ) as cursor:
            rows = [tuple(r) for r in await cursor.fetchall()]
        # Themes go with their answer.
        await conn.execute("DELETE FROM answers WHERE id = ?", (other_id,))
        assert await checkins.themes_of(other_id) == []
    assert rows == [
        (answer_id, "housing", "staff"),
        (answer_id, "practitioner_relationship", "staff"),
        (answer_id, "travel_costs", "staff"),
        (other_id, "travel_costs", "keywords"),
    ]


# Schedules


async def test_one_round_per_region(db: Database) -> None:
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        await checkins.set_schedule("wales", 28, NOW + DAY, "s-ivy", NOW)
        await checkins.set_schedule("london", 14, NOW + 2 * DAY, "cli", NOW)
        await checkins.set_schedule("wales", 42, NOW + 3 * DAY, "s-jo", NOW + HOUR)
        assert await checkins.schedule_of("wales") == CheckinSchedule(
            "wales", 42, NOW + 3 * DAY, "s-ivy"
        )
        assert await checkins.advance_schedule("wales", NOW + 45 * DAY, NOW + 3 * DAY)
        # the same round run again after a crash: already moved on
        assert not await checkins.advance_schedule("wales", NOW + 45 * DAY, NOW + 3 * DAY)
        assert not await checkins.advance_schedule("wales", NOW, NOW + 3 * DAY)
        assert not await checkins.advance_schedule("scotland", NOW, NOW)
        assert await checkins.schedules() == [
            CheckinSchedule("london", 14, NOW + 2 * DAY, "cli"),
            CheckinSchedule("wales", 42, NOW + 45 * DAY, "s-ivy"),
        ]
        # A round under way keeps its position while its schedule keeps its time; it is
        # forgotten when the round is replaced by another time, or moves on.
        await checkins.move_round_position("wales", "p-kit")
        await checkins.set_schedule("wales", 14, NOW + 45 * DAY, "s-jo", NOW + 4 * DAY)
        assert await checkins.round_position("wales") == "p-kit"
        await checkins.set_schedule("wales", 14, NOW + 46 * DAY, "s-jo", NOW + 4 * DAY)
        assert await checkins.round_position("wales") == ""
        await checkins.move_round_position("wales", "p-kit")
        assert await checkins.advance_schedule("wales", NOW + 60 * DAY, NOW + 46 * DAY)
        assert await checkins.round_position("wales") == ""
        assert await checkins.remove_schedule("london")
        assert not await checkins.remove_schedule("london")
        assert await checkins.schedule_of("london") is None
        with pytest.raises(sqlite3.IntegrityError):
            await checkins.set_schedule("london", 0, NOW, "cli", NOW)


async def test_a_round_keeps_its_local_time_of_day(db: Database) -> None:
    """The rounds' wall-clock time of day (ms after local midnight) stays with the schedule
    as its rounds move on, until staff change it; a schedule made before it was kept has
    none until its next round keeps one."""
    ten, half_past_one = 10 * HOUR, HOUR + HOUR // 2
    async with db.transaction() as conn:
        checkins = Checkins(conn)

        async def kept(region: str) -> int | None:
            schedule = await checkins.schedule_of(region)
            assert schedule is not None
            return schedule.local_time_ms

        await checkins.set_schedule("wales", 7, NOW, "cli", NOW, ten)
        assert await kept("wales") == ten
        assert await checkins.advance_schedule("wales", NOW + 7 * DAY, NOW)
        assert await kept("wales") == ten
        await checkins.set_schedule("wales", 7, NOW + 8 * DAY, "s-jo", NOW, half_past_one)
        assert await kept("wales") == half_past_one
        await checkins.set_schedule("london", 7, NOW, "cli", NOW)  # made before 0020
        assert await kept("london") is None
        assert await checkins.advance_schedule("london", NOW + 7 * DAY, NOW, ten)
        assert await kept("london") == ten
        for impossible in (-1, DAY):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
                await checkins.set_schedule("london", 7, NOW, "cli", NOW, impossible)


# Forgetting a person


async def test_erase_person_leaves_the_counts_and_nothing_that_names_them(db: Database) -> None:
    await add_people(db, ["p-ada", "p-bea"])
    old = await send(db, "p-ada", week="2026-W40", now=NOW - 60 * DAY)
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        await checkins.record_score(old.id, "voice", 2, NOW - 60 * DAY)
        await checkins.complete(old.id, NOW - 60 * DAY)
    current = await send(db, "p-ada")
    bea = await send(db, "p-bea")
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        await checkins.record_score(current.id, "trust", None, NOW + 1)
        await checkins.record_score(bea.id, "trust", 4, NOW + 1)
        await checkins.mark_nudged(current.id, NOW + DAY)
    answer_id = await add_answer(db, "p-ada", current.id)
    bea_answer = await add_answer(db, "p-bea", bea.id)
    async with db.transaction() as conn:
        checkins = Checkins(conn)
        await checkins.tag_answer(answer_id, ["housing"])
        for region, last_asked in (("london", "p-ada"), ("wales", "p-bea")):  # rounds under way
            await checkins.set_schedule(region, 28, NOW, "cli", NOW)
            await checkins.move_round_position(region, last_asked)
    before = (await counts(db), await counts(db, "2026-W40"))

    async with db.transaction() as conn:
        assert await Checkins(conn).erase_person("p-ada") == 2
        # What the rest of erasure does, so the foreign keys can be checked end to end.
        await conn.execute("DELETE FROM answers WHERE pseudonym = 'p-ada'")

    assert (await counts(db), await counts(db, "2026-W40")) == before
    async with db.read() as conn:
        for table in (*CHECKIN_TABLES, "answer_themes", "answers"):
            async with conn.execute(f"SELECT * FROM {table}") as cursor:
                values = [v for row in await cursor.fetchall() for v in row]
            for needle in ("p-ada", old.token, current.token):
                assert needle not in values, (table, needle)
        async with conn.execute("SELECT checkin_id FROM checkin_scores") as cursor:
            assert [r[0] for r in await cursor.fetchall()] == [bea.id]
        async with conn.execute("SELECT id, checkin_id FROM answers") as cursor:
            assert [tuple(r) for r in await cursor.fetchall()] == [(bea_answer, bea.id)]
        async with conn.execute("PRAGMA foreign_key_check") as cursor:
            assert await cursor.fetchall() == []
        checkins = Checkins(conn)
        assert await checkins.open_for("p-ada") is None
        assert await checkins.last_sent_at("p-ada") is None
        assert await checkins.by_token(current.token) is None
        assert await checkins.open_for("p-bea") == await checkins.get(bea.id)
        # london's round goes on from the beginning (those asked are not due); wales's as it was
        assert await checkins.round_position("london") == ""
        assert await checkins.round_position("wales") == "p-bea"
        assert await checkins.erase_person("p-nobody") == 0


async def test_erase_person_also_when_answers_still_point_at_the_check_ins(db: Database) -> None:
    """Answers are erased by another part of the bot, possibly later in the transaction: the
    check-ins must go first without a foreign key failure."""
    await add_people(db, ["p-ada"])
    checkin = await send(db, "p-ada")
    answer_id = await add_answer(db, "p-ada", checkin.id)
    async with db.transaction() as conn:
        assert await Checkins(conn).erase_person("p-ada") == 1
        async with conn.execute(
            "SELECT checkin_id FROM answers WHERE id = ?", (answer_id,)
        ) as cursor:
            row = await cursor.fetchone()
    assert row is not None and row[0] is None
