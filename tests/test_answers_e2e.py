"""Free-text answers: kept only with the feedback consent, encrypted at rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.local_api import LocalBotApi
from tests.harness import ADA, BRAN, Chat, Records, running_bot, settings_for

PROBE = """\
schema_version: 1
id: probe
start: ask
states:
  ask:
    say: What one thing would make probation better for you?
    text: {max_length: 40, to: thanks, store: better}
  thanks:
    say: Thank you for telling us.
    end: true
"""


@pytest.fixture()
def probe_dialogues(dialogues_copy: Path) -> Path:
    """The shipped dialogues plus a one-question text dialogue started by /probe."""
    (dialogues_copy / "probe.yaml").write_text(PROBE, "utf-8")
    common = dialogues_copy / "common.yaml"
    text = common.read_text("utf-8").replace(
        "commands:\n", "commands:\n  probe:\n    start: probe\n"
    )
    common.write_text(text, "utf-8")
    return dialogues_copy


async def answer_probe(chat: Chat, answer: str) -> None:
    assert "better for you" in (await chat.say("/probe")).text
    assert "40 letters or fewer" in (await chat.say("x" * 41)).text
    assert "Thank you for telling us" in (await chat.say(answer)).text


async def test_text_is_kept_encrypted_only_with_consent(
    api: LocalBotApi, tmp_path: Path, probe_dialogues: Path
) -> None:
    extra = {"DIALOGUES_DIR": str(probe_dialogues)}
    async with running_bot(api, tmp_path, **extra):
        records = Records(settings_for(api, tmp_path, **extra))
        ada, bran = Chat(api, ADA), Chat(api, BRAN)
        await ada.start()
        await ada.tap("OK, go on")
        await ada.tap("Yes")  # keep my answers
        await answer_probe(ada, "Evening appointments please")
        await bran.start()
        await bran.tap("OK, go on")
        await bran.tap("No")  # do not keep my answers
        await answer_probe(bran, "Nobody listens to me")
        rows = records.query("SELECT pseudonym, dialogue, question, ciphertext FROM answers")
    assert [(r[0], r[1], r[2]) for r in rows] == [(records.pseudonym(ADA), "probe", "better")]
    ciphertext = rows[0][3]
    assert isinstance(ciphertext, bytes)
    assert records.secrets.decrypt_text(ciphertext) == "Evening appointments please"
    database = Path(records.settings.database_path)
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    assert b"Evening appointments" not in stored
