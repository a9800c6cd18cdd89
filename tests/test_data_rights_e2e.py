"""/mydata and /delete end to end: what is kept is shown, and after /delete nothing about
the person is left anywhere in the database files, but a tombstone. Invented people only."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

from cryptography.fernet import InvalidToken

from bot.local_api import LocalBotApi
from bot.scrub import scrub
from tests.harness import ADA, BRAN, Chat, Records, eventually, onboard, running_bot, settled

MARKER = "Quillfeather"  # an invented word, easy to find in raw bytes
OFFICER = "Gwendolyn"  # a name in the answer: not kept
ANSWER = f"My housing officer {OFFICER} never rings back about the {MARKER} flat"
# Encrypted text as stored: AES-GCM tokens, and Fernet ones written before them.
_SEALED = re.compile(rb"(?:gcm1:|gAAAAA)[A-Za-z0-9_\-]{40,}={0,2}")


async def answer_a_check_in(chat: Chat) -> None:
    await chat.say("/feedback")
    await chat.tap("Start")
    for label in ("Mostly", "Sometimes", "Never", "Skip this one"):
        await chat.tap(label)
    assert "Thank you" in (await chat.say(ANSWER)).text


def every_value(records: Records) -> list[tuple[str, str, object]]:
    """(table, column, value) for every cell of every table."""
    found = []
    tables = [t for (t,) in records.query("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        columns = [c[1] for c in records.query(f"PRAGMA table_info({table})")]
        for row in records.query(f"SELECT * FROM {table}"):
            found.extend(
                (str(table), str(col), value) for col, value in zip(columns, row, strict=True)
            )
    return found


def raw_files(database_path: str) -> bytes:
    """The database file, its WAL and shared memory, read by another process (closing a
    descriptor of the database in this process would drop the bot's locks)."""
    database = Path(database_path)
    files = [str(p) for p in database.parent.glob(database.name + "*")]
    return subprocess.run(["cat", *files], capture_output=True, check=True, timeout=30).stdout


async def test_mydata_shows_everything_and_sends_a_file(api: LocalBotApi, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path) as runtime:
        ada = Chat(api, ADA)
        await onboard(ada)
        await answer_a_check_in(ada)
        had = len(ada.messages)
        await ada.say("i want to kill myself")
        await ada.expect(had + 2)  # the numbers, then the contact question
        await ada.tap("Yes, please")
        had = len(ada.messages)
        summary = await ada.say("/mydata")
        assert "Written answers: 1" in summary.text and "Area: London" in summary.text
        listing = await ada.expect(had + 2)
        # What is kept, and so shown: the answer without the name in it.
        assert MARKER in listing.text and "[name]" in listing.text
        assert OFFICER not in listing.text
        before = len(ada.messages)
        message, data = ada.find_button("Get a file")
        api.press_button(ADA, message.message_id, data)
        document = await ada.expect(before + 1)
        assert document.kind == "document" and document.content is not None
        content = document.content.decode("utf-8")
        exported = json.loads(content)
        assert exported["answers"][0]["text"] == scrub(ANSWER) and OFFICER not in content
        # What managers may read of it, and everything the safety request holds: what it
        # was about is the most sensitive thing kept (the right of access covers it).
        assert exported["answers"][0]["as_quoted"] == scrub(ANSWER)
        [request] = exported["safety_requests"]
        assert request["about"] == "suicide" and request["area"] == "london"
        assert {"date", "outcome", "staff_wrote_on", "number_shared_on"} <= set(request)
        assert all(c["notice_version"] for c in exported["consents"])
        assert "housing" in exported["answers"][0]["themes"]
        assert {c["purpose"] for c in exported["consents"]} >= {"feedback", "quotes"}
        assert str(ADA.user_id) not in content
        # The listing and the file went through the outbox: sealed there, so the answer is
        # not readable in the database file or its WAL (the answer itself is encrypted).
        assert MARKER.encode() not in raw_files(runtime.settings.database_path)


async def test_someone_who_moved_changes_their_area_and_goes_on_where_they_were(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """/area, mid-check-in: the new area is kept (it decides their panels, updates, the team
    told when they ask for help, their digest), then the question they were at comes back.
    "Keep my area" changes nothing."""
    async with running_bot(api, tmp_path) as runtime:
        records = Records(runtime.settings)
        ada = Chat(api, ADA)
        await onboard(ada)
        await ada.say("/feedback")
        question = (await ada.tap("Start")).text
        assert "Which area are you on probation in now" in (await ada.say("/area")).text
        before = len(ada.messages)
        await ada.tap("Wales")
        await ada.expect(before + 2)
        changed, asked_again = ada.messages[-2:]
        assert "changed your area" in (changed.text or "")
        assert asked_again.text == question
        where = "SELECT region FROM people WHERE pseudonym = ?"
        assert records.query(where, records.pseudonym(ADA)) == [("wales",)]
        assert "Area: Wales" in (await ada.say("/mydata")).text
        await ada.say("/area")
        before = len(ada.messages)
        assert "same as before" in (await ada.tap("Keep my area")).text
        await ada.expect(before + 2)  # and the question again
        assert records.query(where, records.pseudonym(ADA)) == [("wales",)]
        # Being in a probation area says something about a person: it can be taken back
        # (at sign-up it could be kept back; since, only /delete forgot it).
        await ada.say("/area")
        before = len(ada.messages)
        assert "no longer keep your area" in (await ada.tap("I'd rather not say")).text
        await ada.expect(before + 2)  # and the question again
        assert records.query(where, records.pseudonym(ADA)) == [(None,)]
        assert "Area: Wales" not in (await ada.say("/mydata")).text


async def test_delete_leaves_nothing_but_a_tombstone(api: LocalBotApi, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path) as runtime:
        ada, bran = Chat(api, ADA), Chat(api, BRAN)
        await onboard(ada)
        await onboard(bran)  # someone else, who must keep everything
        await answer_a_check_in(ada)
        records = Records(runtime.settings)
        who = records.pseudonym(ADA)
        assert "cannot be undone" in (await ada.say("/delete")).text
        assert "Nothing was deleted" in (await ada.tap("No, keep everything")).text
        await ada.say("/feedback")  # in the middle of another check-in...
        await ada.tap("Start")
        await ada.say("/delete")
        gone = await ada.tap("Yes, delete it all")
        assert "deleted everything" in gone.text
        await settled(api, Records(runtime.settings))
        assert ada.messages[-1] is gone  # ...which is not taken up again
        async with asyncio.timeout(10):  # the goodbye is sent, then forgotten too
            while records.query("SELECT 1 FROM outbox WHERE chat_id = ?", ADA.chat_id):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        # The WAL is emptied by a stored job (retried while a reader holds it), not here.
        emptied = "SELECT status FROM schedules WHERE kind = 'retention_wal'"
        await eventually(lambda: records.query(emptied) == [("done",)])

        holding = [
            (table, column)
            for table, column, value in every_value(records)
            if value in (who, ADA.chat_id, str(ADA.chat_id))
        ]
        assert holding == [("erasures", "pseudonym")]
        assert records.query("SELECT COUNT(*) FROM people") == [(1,)]  # Bran stays
        assert records.query("SELECT SUM(sent) FROM checkin_counts") == [(2,)]  # totals stay

        database = Path(runtime.settings.database_path)
        for path in (database, database.with_name(database.name + "-wal")):
            if not path.exists():
                continue
            raw = path.read_bytes()
            assert MARKER.encode() not in raw, path.name
            for token in _SEALED.findall(raw):
                try:
                    text = records.secrets.decrypt_text(token)
                except InvalidToken:
                    continue
                assert MARKER not in text, f"{path.name} still holds the answer, encrypted"
