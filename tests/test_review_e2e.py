"""Theme review over HTTP: managers see only quotable (consented, scrubbed) answers of
their region and correct their themes; managers of another region, and staff (who may be
the writer's officer), cannot. Invented people only."""

from __future__ import annotations

from pathlib import Path

from bot.local_api import FakePerson, LocalBotApi
from bot.review import pick_for_review
from bot.scrub import scrub
from storage.answers import Answers
from storage.checkins import Checkins
from storage.people import People
from storage.staff import StaffRoles
from tests.harness import Chat, Records, running_bot

ORLA = FakePerson(user_id=770000001, first_name="Orla")  # London manager
WYN = FakePerson(user_id=770000002, first_name="Wyn")  # Wales manager
SAM = FakePerson(user_id=770000003, first_name="Sam")  # London staff: maybe Ada's officer
ADA = FakePerson(user_id=770000011, first_name="Ada")  # London, may be quoted
BEA = FakePerson(user_id=770000012, first_name="Bea")  # London, may not be quoted
QUOTED = "Sarah at the housing office says there is no money for the deposit"
# Four more Londoners who may be quoted: with Ada, the five (DIGEST_K here) a region's
# answers must come from before any is shown.
OTHERS = [FakePerson(user_id=770000020 + n, first_name=f"Other{n}") for n in range(4)]
OTHER_WORDS = "The appointments keep moving and nobody tells me"
# Within the 3,500 letters an answer may have, but longer than one Telegram message once
# scrubbed: each postcode becomes "[postcode]".
LONG_WORDS = OTHER_WORDS + ". Offices moved to " + "M1 1AA, " * 420
FRESH_WORDS = "Today the waiting room was full again"
DAY_MS = 86_400_000


def test_the_picks_are_fixed_for_a_reader_and_a_week() -> None:
    """Asking again shows the same answers (no fresh draw to compare with the last), in
    any order the ids come; a new answer displaces at most one; another reader or another
    week has its own ranking."""
    ids = list(range(100, 140))
    picked = pick_for_review(ids, "staff-a", "2026-W48", 10)
    assert len(picked) == 10 and picked == pick_for_review(ids[::-1], "staff-a", "2026-W48", 10)
    assert len(set(picked) - set(pick_for_review([*ids, 140], "staff-a", "2026-W48", 10))) <= 1
    assert picked != pick_for_review(ids, "staff-b", "2026-W48", 10)
    assert picked != pick_for_review(ids, "staff-a", "2026-W49", 10)


async def test_managers_review_and_correct_themes_of_their_region_only(
    api: LocalBotApi, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path, DIGEST_K="5") as runtime:
        now = runtime.clock.now_ms()
        written = now - 3 * DAY_MS  # shown from two days on
        secrets = Records(runtime.settings).secrets
        pseudonym = runtime.service.pseudonym_of
        async with runtime.db.transaction() as conn:
            for person in (ADA, BEA):
                api.add_chat(person)
                await People(conn).touch(pseudonym(person.user_id), person.chat_id, "en", now)
                await People(conn).set_region(pseudonym(person.user_id), "london", now)
            text = secrets.encrypt_text(QUOTED)
            quote = secrets.encrypt_text(scrub(QUOTED))
            quoted = await Answers(conn).add(
                pseudonym(ADA.user_id), "feedback", "improve", text, written, quote=quote
            )
            private = await Answers(conn).add(
                pseudonym(BEA.user_id), "feedback", "improve", text, written
            )
            for answer in (quoted, private):
                await Checkins(conn).tag_answer(answer, ["housing"])
            roles = StaffRoles(conn)
            await roles.grant(pseudonym(ORLA.user_id), "manager", "london", False, "cli", 0)
            await roles.grant(pseudonym(WYN.user_id), "manager", "wales", False, "cli", 0)
            await roles.grant(pseudonym(SAM.user_id), "staff", "london", False, "cli", 0)

        orla = Chat(api, ORLA)
        # One writer is too few: her answer, the newest, would be easy to place.
        assert "Fewer than 5 people" in (await orla.say("/review")).text
        async with runtime.db.transaction() as conn:
            for person in OTHERS:
                who = pseudonym(person.user_id)
                await People(conn).touch(who, person.chat_id, "en", now)
                await People(conn).set_region(who, "london", now)
                said = LONG_WORDS if person is OTHERS[-1] else OTHER_WORDS
                words = secrets.encrypt_text(said)
                quote = secrets.encrypt_text(scrub(said))
                await Answers(conn).add(who, "feedback", "improve", words, written, quote=quote)
            # written an hour ago: its writer's officer could place it, so it waits two days
            fresh = secrets.encrypt_text(FRESH_WORDS)
            fresh_id = await Answers(conn).add(
                who, "feedback", "improve", fresh, now - 3_600_000, quote=fresh
            )
        intro = await orla.say("/review")
        assert "let us quote: 5." in intro.text
        # "fewer than", the intro, five answers (in a random order), the long one in two
        await orla.expect(8)
        assert len(LONG_WORDS) <= 3500 and len(scrub(LONG_WORDS)) > 4096
        assert all(len(m.text) <= 4096 for m in orla.messages)
        long_parts = [m for m in orla.messages if "[postcode], [postcode]" in m.text]
        assert len(long_parts) == 2 and long_parts[0].reply_markup is None
        assert "Themes:" in long_parts[1].text and "rt:" in str(long_parts[1].reply_markup)
        item = next(m for m in orla.messages if f"rt:{quoted}" in str(m.reply_markup))
        assert "[name]" in item.text and "Sarah" not in item.text  # the scrubbed copy only
        assert "Themes: Housing" in item.text
        assert sum(OTHER_WORDS in m.text for m in orla.messages) == 4
        assert not any(FRESH_WORDS in m.text for m in orla.messages)
        api.press_button(ORLA, item.message_id, f"rt:{quoted}")
        await orla.expect(9)
        await orla.toggle("Housing")
        await orla.toggle("Money and benefits")
        assert "digests and updates use these themes" in (await orla.tap("Save")).text
        records = Records(runtime.settings)
        assert records.query(
            "SELECT theme, source FROM answer_themes WHERE answer_id = ?", quoted
        ) == [("money_benefits", "staff")]
        assert records.query("SELECT theme FROM answer_themes WHERE answer_id = ?", private) == [
            ("housing",)
        ]

        # A forged button (answer ids run in order) shows nothing /review would not: not
        # an answer its writer did not let us quote, nor one written an hour ago.
        for forged in (private, fresh_id):
            had = len(orla.messages)
            api.press_button(ORLA, item.message_id, f"rt:{forged}")
            refused = await orla.expect(had + 1)
            assert "not available" in refused.text and "Chosen" not in refused.text

        sam = Chat(api, SAM)
        assert "not available" in (await sam.say("/review")).text
        api.press_button(SAM, sam.messages[-1].message_id, f"rt:{quoted}")
        assert "not available" in (await sam.expect(2)).text

        wyn = Chat(api, WYN)
        assert "no answers to review" in (await wyn.say("/review")).text
        api.press_button(WYN, wyn.messages[-1].message_id, f"rt:{quoted}")
        assert "not available" in (await wyn.expect(2)).text
        assert "participant" not in str(records.query("SELECT action FROM audit_log"))
        actions = {a for (a,) in records.query("SELECT action FROM audit_log")}
        assert {"answers.reviewed", "answer.retagged"} <= actions
