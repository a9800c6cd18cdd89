"""Quotes in the digest: only from people who gave the quote consent, scrubbed, a few per
theme, only under themes the digest publishes, and never from someone who withdrew the
consent or was forgotten, in every format.

Everyone here is invented."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from bot.answer_keeper import AnswerKeeper
from bot.digest import build_digests, to_csv, to_markdown
from bot.digest_quotes import QUOTES_PER_THEME, read_quotes
from bot.digest_report import render_html
from bot.local_api import FakePerson, LocalBotApi
from bot.secrets_file import generate_secrets_file, load_secrets
from bot.settings import PROJECT_ROOT
from bot.themes import load_taxonomy
from storage.answers import Answers
from storage.checkins import Checkins
from storage.clock import ManualClock
from storage.database import Database
from storage.digest_data import NATIONAL, DigestFigures, week_bounds
from storage.erasure import erase_person
from storage.people import ConsentLedger, People
from storage.staff import StaffRoles
from tests.digest_synthetic import HOUR, ZONE
from tests.harness import Chat, running_bot

K, WEEK = 5, "2026-W47"
THEMES = [(t.id, t.label) for t in load_taxonomy(PROJECT_ROOT / "dialogues" / "themes.yaml").themes]
LABELS = dict(THEMES)
WORDS = [
    "alder",
    "birch",
    "cedar",
    "damson",
    "elder",
    "fir",
    "gorse",
    "hazel",
    "ivy",
    "juniper",
    "kale",
    "larch",
    "maple",
    "oak",
    "yew",
]


async def test_quotes_come_only_from_consent_and_only_under_published_themes(
    tmp_path: Path,
) -> None:
    secrets = generate_secrets_file(tmp_path / "secrets")
    keeper = AnswerKeeper(secrets, None)
    db = await Database.open(str(tmp_path / "quotes.db"))
    start = week_bounds(WEEK, ZONE)[0]
    try:
        await db.migrate()
        async with db.transaction() as conn:
            people, ledger = People(conn), ConsentLedger(conn)
            # Eight people raise housing (three of them keep their words to themselves),
            # two raise money (too few to publish), five work.
            for n in range(15):
                pseudonym, t = f"p-{n:04d}", start + (n + 1) * HOUR
                await people.touch(pseudonym, 30_000_000 + n, "en", t)
                await people.set_region(pseudonym, "london", t)
                await ledger.record(pseudonym, "feedback", True, "v1", t)
                await ledger.record(pseudonym, "quotes", n not in (1, 3, 5), "v1", t)
                text = f"Housing is hard, {WORDS[n]}. Ring 07700 900{n:03d} or ada{n}@example.org"
                answer = await keeper.keep(conn, pseudonym, "updates", "more", text, "en", t)
                assert answer is not None
                theme = "housing" if n < 8 else "money_benefits" if n < 10 else "work_training"
                await Checkins(conn).tag_answer(answer, [theme], "staff")
            # The newest quotable one withdraws the consent; the one before is forgotten.
            await ledger.record("p-0007", "quotes", False, "v1", start + 20 * HOUR)
            await Answers(conn).forget_quotes("p-0007")
            await erase_person(conn, "p-0006", 30_000_006, start + 21 * HOUR)
        async with db.read() as conn:
            async with DigestFigures(conn) as figures:
                # London and the national view only: the regions with nobody in them would make
                # the national figures a sum with hidden zero parts, and hide more.
                data = {r: await figures.read(r, WEEK, ZONE) for r in (NATIONAL, "london")}
            # The temporary tables (they name people) last no longer than the read.
            async with conn.execute("SELECT name FROM sqlite_temp_master") as cursor:
                assert await cursor.fetchall() == []
            digests = build_digests(data, K, (), THEMES, ZONE)
            london = digests["london"]
            quotes = await read_quotes(conn, london, ZONE, secrets.decrypt_text)
            # Read two days and three and a half hours into the week: only answers two
            # days old are quoted (the newest could be placed by the writer's officer).
            soon = start + 2 * 24 * HOUR + 3 * HOUR + HOUR // 2
            early = await read_quotes(conn, london, ZONE, secrets.decrypt_text, now=soon)
    finally:
        await db.close()

    themes = {row.key: row.cells[0] for row in london.section("themes").rows}
    assert not themes["housing"].suppressed and themes["housing"].value == 7
    assert themes["money_benefits"].suppressed  # two people: no quotes either
    # Housing: quotable were 0, 2, 4, 6 (forgotten), 7 (withdrew): the newest three left.
    housing = quotes[LABELS["housing"]]
    assert len(housing) == QUOTES_PER_THEME == 3
    assert list(quotes) == [LABELS["housing"], LABELS["work_training"]]
    assert [q.split(".")[0] for q in housing] == [f"Housing is hard, {WORDS[n]}" for n in (4, 2, 0)]
    # Written in the week's first three and a half hours: 0 to 2 (1 keeps her words).
    assert [q.split(".")[0] for q in early[LABELS["housing"]]] == [
        f"Housing is hard, {WORDS[n]}" for n in (2, 0)
    ]
    for quote in housing:
        assert "07700" not in quote and "@example.org" not in quote  # scrubbed
    for text in (to_markdown(london, quotes), to_csv(london, quotes)):
        assert text.count("Housing is hard") == 6
        assert "07700" not in text
    assert render_html(london, None, "London", quotes).count("<blockquote>") == 6
    # Without quotes, nothing anyone wrote is in the digest.
    assert "Housing is hard" not in to_markdown(london) + to_csv(london)


MIA = FakePerson(user_id=760000011, first_name="Mia")  # manager, London
SAM = FakePerson(user_id=760000012, first_name="Sam")  # staff, London


def reports(api: LocalBotApi, person: FakePerson) -> list[bytes]:
    """The HTML reports the bot sent the person."""
    return [m.content or b"" for m in api.messages(person.chat_id) if m.kind == "document"]


async def test_staff_asking_get_the_figures_and_managers_the_quotes(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """People are told their probation officer never sees their answers: a staff member
    sending /digest gets the region's figures without quotes (the newest of last week's
    words could be placed by whoever supervises the writer); the region's manager gets
    them with the quotes."""
    clock = ManualClock(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))  # Wednesday of W48
    start = week_bounds(WEEK, ZONE)[0]
    for person in (MIA, SAM):
        api.add_chat(person)
    async with running_bot(api, tmp_path, clock=clock, DIGEST_K="5") as runtime:
        keeper = AnswerKeeper(load_secrets(runtime.settings.secrets_path, production=False), None)
        async with runtime.db.transaction() as conn:
            people, ledger = People(conn), ConsentLedger(conn)
            for n in range(8):  # eight people raise housing, all let their words be quoted
                pseudonym, t = f"p-{n:04d}", start + (n + 1) * HOUR
                await people.touch(pseudonym, 30_000_000 + n, "en", t)
                await people.set_region(pseudonym, "london", t)
                await ledger.record(pseudonym, "feedback", True, "v1", t)
                await ledger.record(pseudonym, "quotes", True, "v1", t)
                text = f"Housing is hard, {WORDS[n]}."
                answer = await keeper.keep(conn, pseudonym, "updates", "more", text, "en", t)
                assert answer is not None
                await Checkins(conn).tag_answer(answer, ["housing"], "staff")
            for person, role in ((MIA, "manager"), (SAM, "staff")):
                who = runtime.service.pseudonym_of(person.user_id)
                await people.touch(who, person.chat_id, "en", clock.now_ms())
                await StaffRoles(conn).grant(who, role, "london", False, "cli", 0)
        for person in (SAM, MIA):
            await Chat(api, person).say("/digest")
            async with asyncio.timeout(20):
                while not reports(api, person):  # noqa: ASYNC110 - the server's records
                    await asyncio.sleep(0.05)
    staff_report, manager_report = reports(api, SAM)[0], reports(api, MIA)[0]
    assert b"Housing is hard" not in staff_report and b"<html" in staff_report.lower()
    assert manager_report.count(b"Housing is hard") == QUOTES_PER_THEME
