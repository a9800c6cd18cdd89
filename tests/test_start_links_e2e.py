"""/start links end to end: enrolment codes from a poster, and one-time staff invites."""

from __future__ import annotations

from pathlib import Path

from bot.access import create_invite
from bot.enrolment import create_batch
from bot.local_api import FakePerson, LocalBotApi
from bot.runtime import Runtime
from storage.clock import SystemClock
from tests.harness import ADA, BRAN, CERI, Chat, Records, running_bot, settings_for


async def test_an_enrolment_code_binds_the_region_and_skips_the_question(
    api: LocalBotApi, tmp_path: Path
) -> None:
    async with running_bot(api, tmp_path) as runtime:
        records = Records(settings_for(api, tmp_path))
        batch = await create_batch(
            runtime.db,
            records.secrets,
            "wales",
            2,
            30,
            "yousaid_test_bot",
            tmp_path / "out",
            SystemClock().now_ms(),
        )
        first_code = batch.csv_path.read_text().splitlines()[1].split(",")[0]
        chat = Chat(api, ADA)
        api.send_command(ADA, "start", first_code)
        accepted, language = await api.wait_for_messages(ADA.chat_id, 2)
        assert "That link tells us your area" in accepted.text
        assert "Which language" in language.text
        await chat.tap("English")
        await chat.tap("OK, go on")
        for answer in ("Yes", "No", "No", "No"):
            reply = await chat.tap(answer)
        assert "You are signed up" in reply.text  # no region question
        assert records.query("SELECT region FROM people") == [("wales",)]

        # The same code again (another person): used up, so the region is asked instead.
        other = Chat(api, BRAN)
        api.send_command(BRAN, "start", first_code)
        refused = (await api.wait_for_messages(BRAN.chat_id, 2))[0]
        assert "code I cannot use" in refused.text
        await other.tap("English")
        await other.tap("OK, go on")
        for answer in ("No", "No", "No", "No"):
            reply = await other.tap(answer)
        assert "Which area" in reply.text


async def invite_code(runtime: Runtime, records: Records, role: str, region: str) -> str:
    """The code of a one-day invite made as `invite create` makes it."""
    link = await create_invite(
        runtime.db,
        records.secrets,
        role,
        region,
        False,
        24,
        "yousaid_test_bot",
        SystemClock().now_ms(),
        "cli",
    )
    return link.rsplit("=", 1)[1]


async def test_a_staff_invite_grants_once_and_is_audited(api: LocalBotApi, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path) as runtime:
        records = Records(settings_for(api, tmp_path))
        code = await invite_code(runtime, records, "staff", "london")
        api.send_command(CERI, "start", code)
        welcome = (await api.wait_for_messages(CERI.chat_id, 1))[0]
        assert welcome.text.startswith(
            "Welcome. You are now a staff member for London.\nSend /panel_new"
        )
        api.send_command(ADA, "start", code)  # a second person with the same link
        used = (await api.wait_for_messages(ADA.chat_id, 1))[0]
        assert "used already" in used.text
    assert records.query("SELECT pseudonym, role, region FROM staff_roles") == [
        (records.pseudonym(CERI), "staff", "london")
    ]
    actions = [row[0] for row in records.query("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["invite.created", "invite.redeemed"]


async def test_a_welsh_speaking_managers_welcome_is_all_in_welsh(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """Dilys reads Welsh: her welcome names the role and the area in Welsh ("yn manager ar
    gyfer Wales" put the raw role and the English name into a Welsh sentence)."""
    dilys = FakePerson(user_id=700000031, first_name="Dilys", language_code="cy")
    async with running_bot(api, tmp_path) as runtime:
        records = Records(settings_for(api, tmp_path))
        code = await invite_code(runtime, records, "manager", "wales")
        api.send_command(dilys, "start", code)
        welcome = (await api.wait_for_messages(dilys.chat_id, 1))[0]
        assert "yn rheolwr ar gyfer Cymru" in (welcome.text or "")
