"""Free text at rest and the text key's rotation: no answer is readable in the database
files without the key; after `python -m bot keys rotate` every answer reads back under the
new key, the old ciphertext is gone from the files, and pseudonyms have not changed. An
interrupted rotation loses nothing and finishes when run again."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import InvalidToken

from bot import key_rotation
from bot.key_rotation import ENCRYPTED_COLUMNS, rotate_text_key
from bot.local_api import FakePerson, LocalBotApi
from bot.payload_seal import payload_codec
from bot.secrets_file import Secrets, _fernet, load_secrets
from bot.settings import PROJECT_ROOT, Settings
from storage.database import Database
from storage.queues import Outbox
from tests.harness import Chat, Records, onboard, running_bot, settings_for

# Invented people and what they write.
DEWI = FakePerson(user_id=740000001, first_name="Dewi", language_code="en")
EIRA = FakePerson(user_id=740000002, first_name="Eira", language_code="en")
ANSWERS = {
    DEWI: "Zephyrine appointments clash with my shifts at the bakery",
    EIRA: "Quorvath offices should open on Saturday mornings",
}


def raw_files(settings: Settings) -> bytes:
    """The database file, its WAL and shared memory, byte for byte. Read by another process:
    closing a file descriptor of the database in the bot's own process would drop its POSIX
    locks (a test artefact that would let another process think it is alone)."""
    database = Path(settings.database_path)
    files = [str(p) for p in database.parent.glob(database.name + "*")]
    return subprocess.run(["cat", *files], capture_output=True, check=True, timeout=30).stdout


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_PATH": settings.database_path,
        "SECRETS_PATH": settings.secrets_path,
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def answer_a_check_in(chat: Chat, text: str) -> None:
    await onboard(chat)  # feedback yes, panels yes, updates no, quotes yes
    await chat.say("/feedback")
    await chat.tap("Start")
    for score in ("Always", "Mostly", "Sometimes", "Never"):
        await chat.tap(score)
    assert "Thank you" in (await chat.say(text)).text


def stored_texts(settings: Settings) -> dict[str, tuple[bytes, bytes | None]]:
    records = Records(settings)
    return {
        str(p): (bytes(c), None if q is None else bytes(q))  # type: ignore[arg-type]
        for p, c, q in records.query("SELECT pseudonym, ciphertext, quote FROM answers")
    }


async def test_answers_are_unreadable_at_rest_and_survive_a_rotation(
    api: LocalBotApi, tmp_path: Path
) -> None:
    settings = settings_for(api, tmp_path)
    for person in ANSWERS:
        api.add_chat(person)
    async with running_bot(api, tmp_path):
        for person, text in ANSWERS.items():
            await answer_a_check_in(Chat(api, person), text)
        # While the bot runs, the WAL holds the latest pages: still nothing readable.
        raw = raw_files(settings)
        assert Path(f"{settings.database_path}-wal").exists()  # noqa: ASYNC240
        for text in ANSWERS.values():  # the whole answer, and its invented first word
            assert text.encode() not in raw and text.split()[0].encode() not in raw
        refused = cli(settings, "keys", "rotate")  # never while the bot has it open
        assert refused.returncode == 1 and "open in another process" in refused.stderr
    before = load_secrets(settings.secrets_path, production=False)
    old = stored_texts(settings)
    people_before = Records(settings).query("SELECT pseudonym, chat_id FROM people ORDER BY 1")
    assert len(old) == 2 and all(quote is not None for _, quote in old.values())

    backup = str(tmp_path / "before-rotation.db")
    assert cli(settings, "backup", "--out", backup).returncode == 0
    rotated = cli(settings, "keys", "rotate")  # stopped cleanly: no --force needed
    assert rotated.returncode == 0, rotated.stderr
    assert "answers.ciphertext: 2 re-encrypted" in rotated.stdout

    after = load_secrets(settings.secrets_path, production=False)
    assert after.pseudonym_key == before.pseudonym_key  # identities never change
    assert after.text_key != before.text_key and after.old_text_keys == ()
    file = json.loads(Path(settings.secrets_path).read_text())  # noqa: ASYNC240
    assert "old_text_keys" not in file
    records = Records(settings)
    assert records.query("SELECT pseudonym, chat_id FROM people ORDER BY 1") == people_before
    new = stored_texts(settings)
    for person, text in ANSWERS.items():
        pseudonym = after.pseudonym(person.user_id)
        assert pseudonym == before.pseudonym(person.user_id)
        ciphertext, quote = new[pseudonym]
        assert after.decrypt_text(ciphertext) == text
        assert quote is not None and after.decrypt_text(quote)
        with pytest.raises(InvalidToken):
            before.decrypt_text(ciphertext)  # the old key reads nothing any more
    raw = raw_files(settings)
    for ciphertext, quote in old.values():
        assert ciphertext not in raw and (quote or b"") not in raw
    for text in ANSWERS.values():
        assert text.split()[0].encode() not in raw

    # The bot, started again, reads them under the new key (/mydata shows them).
    async with running_bot(api, tmp_path):
        dewi = Chat(api, DEWI)
        had = len(dewi.messages)
        await dewi.say("/mydata")
        await dewi.expect(had + 2)  # the summary, then what was written
        shown = "\n".join(m.text or "" for m in dewi.messages[-4:])
    assert ANSWERS[DEWI] in shown

    # A backup from before the rotation restores readable: its key joins the secrets file
    # (as an old key), and the next rotation re-encrypts it and drops it again.
    restored = cli(settings, "restore", "--from", backup)
    assert restored.returncode == 0 and "keys rotate" in restored.stdout, restored.stderr
    merged = load_secrets(settings.secrets_path, production=False)
    assert merged.text_key == after.text_key and merged.old_text_keys == (before.text_key,)
    assert {merged.decrypt_text(c) for c, _ in stored_texts(settings).values()} == set(
        ANSWERS.values()
    )
    assert cli(settings, "keys", "rotate").returncode == 0
    final = load_secrets(settings.secrets_path, production=False)
    assert final.old_text_keys == () and final.pseudonym_key == before.pseudonym_key
    assert {final.decrypt_text(c) for c, _ in stored_texts(settings).values()} == set(
        ANSWERS.values()
    )


async def test_an_interrupted_rotation_loses_nothing_and_finishes_when_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_path = tmp_path / "secrets"
    database = str(tmp_path / "y.db")
    first = load_secrets(str(secrets_path), production=False)
    texts = [f"invented answer number {n}" for n in range(25)]
    db = await Database.open(database)
    await db.migrate()
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO people (pseudonym, chat_id, locale, created_at, updated_at) "
            "VALUES ('p-fen', 1, 'en', 0, 0)"
        )
        for n, text in enumerate(texts):
            quote = first.encrypt_text(text.upper()) if n % 3 == 0 else None
            await conn.execute(
                "INSERT INTO answers (pseudonym, dialogue, question, ciphertext, created_at, "
                "quote) VALUES ('p-fen', 'feedback', 'improve', ?, ?, ?)",
                (first.encrypt_text(text), n, quote),
            )
        await conn.execute(
            "INSERT INTO inbox (update_id, payload, received_at) VALUES (1, ?, 0)",
            (first.encrypt_text('{"update_id": 1}'),),
        )
    await db.close()

    monkeypatch.setattr(key_rotation, "_BATCH", 4)  # many transactions
    calls = 0
    original = Secrets.encrypt_text

    def failing(self: Secrets, text: str) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 11:  # the process dies in the middle of the third batch
            raise KeyboardInterrupt
        return original(self, text)

    monkeypatch.setattr(Secrets, "encrypt_text", failing)
    with pytest.raises(KeyboardInterrupt):
        await rotate_text_key(database, secrets_path, say=lambda _: None)
    monkeypatch.setattr(Secrets, "encrypt_text", original)

    midway = load_secrets(str(secrets_path), production=False)
    assert midway.old_text_keys == (first.text_key,)  # the old key is still there
    assert midway.pseudonym_key == first.pseudonym_key

    def everything(keys: Secrets) -> list[str]:
        with sqlite3.connect(database) as conn:
            rows = conn.execute("SELECT ciphertext FROM answers ORDER BY id").fetchall()
        return [keys.decrypt_text(bytes(r[0])) for r in rows]

    assert everything(midway) == texts  # readable mid-way: some old, some new
    with sqlite3.connect(database) as conn:
        tokens = [bytes(r[0]) for r in conn.execute("SELECT ciphertext FROM answers")]
    assert 0 < sum(midway.under_current_key(t) for t in tokens) < len(texts)

    said: list[str] = []
    report = await rotate_text_key(database, secrets_path, say=said.append)
    assert report.finished and not report.started_new_key
    assert "carrying on" in said[0]
    final = load_secrets(str(secrets_path), production=False)
    assert final.text_key == midway.text_key and final.old_text_keys == ()
    assert everything(final) == texts
    with sqlite3.connect(database) as conn:
        quotes = [
            final.decrypt_text(bytes(r[0]))
            for r in conn.execute("SELECT quote FROM answers WHERE quote IS NOT NULL ORDER BY id")
        ]
        (payload,) = conn.execute("SELECT payload FROM inbox").fetchone()
    assert quotes == [t.upper() for n, t in enumerate(texts) if n % 3 == 0]
    assert final.decrypt_text(bytes(payload)) == '{"update_id": 1}'


async def test_messages_waiting_to_be_sent_survive_a_rotation(tmp_path: Path) -> None:
    """Outgoing payloads are sealed under the text key (bot/payload_seal.py): a message
    still queued when the key rotates is re-sealed, and the bot reads it with the new key."""
    secrets_path, database = tmp_path / "secrets", str(tmp_path / "y.db")
    first = load_secrets(str(secrets_path), production=False)
    message = {"text": "Your words: Zephyrine clash with my shifts", "forget_chat": True}
    db = await Database.open(database)
    await db.seal_payloads(*payload_codec(first))
    await db.migrate()
    async with db.transaction() as conn:
        await Outbox(conn).enqueue(42, 0, "message", message, 0)
        await Outbox(conn).enqueue(43, 0, "message", {"text": "plain, from a command"}, 0)
    await db.close()
    with sqlite3.connect(database) as conn:
        stored = [str(r[0]) for r in conn.execute("SELECT payload FROM outbox ORDER BY id")]
    assert "Zephyrine" not in stored[0] and json.loads(stored[0])["forget_chat"] is True
    # A row written without the key (by a command) is left as it is and read as it is.
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE outbox SET payload = ? WHERE chat_id = 43", ('{"text":"plain"}',))

    report = await rotate_text_key(database, secrets_path, say=lambda _: None)
    assert report.finished and report.reencrypted["outbox.payload"] == 1
    with sqlite3.connect(database) as conn:  # an admin's action, audited like any other
        audited = conn.execute("SELECT actor, action, details FROM audit_log").fetchall()
    assert [(a, b) for a, b, _ in audited] == [("cli", "keys.rotated")]
    assert json.loads(audited[0][2])["outbox.payload"] == "1"
    final = load_secrets(str(secrets_path), production=False)
    with pytest.raises(InvalidToken):
        final.decrypt_text(json.loads(stored[0])["sealed"].encode())  # the old seal is dead
    db = await Database.open(database)
    await db.seal_payloads(*payload_codec(final))
    try:
        async with db.read() as conn:
            waiting = await Outbox(conn).most_urgent(10, 1)
    finally:
        await db.close()
    assert [m.payload for m in waiting] == [message, {"text": "plain"}]


async def test_every_blob_column_is_rotated(tmp_path: Path) -> None:
    """Encrypted text is stored as BLOB: a new BLOB column must join ENCRYPTED_COLUMNS (or
    this test be told why not), or a rotation would leave it under a forgotten key."""
    db = await Database.open(str(tmp_path / "y.db"))
    await db.migrate()
    blobs = set()
    async with db.read() as conn:
        async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cursor:
            tables = [str(r[0]) for r in await cursor.fetchall()]
        for table in tables:
            async with conn.execute(f"PRAGMA table_info({table})") as cursor:
                for column in await cursor.fetchall():
                    if str(column[2]).upper() == "BLOB":
                        blobs.add((table, str(column[1])))
    await db.close()
    assert blobs == {(c.table, c.column) for c in ENCRYPTED_COLUMNS if not c.sealed_json}
    # Outgoing payloads are TEXT (JSON) sealed whole by the bot (bot/payload_seal.py).
    assert {(c.table, c.column) for c in ENCRYPTED_COLUMNS if c.sealed_json} == {
        ("outbox", "payload")
    }


async def test_a_rotation_reseals_fernet_text_from_before_as_aes_gcm(tmp_path: Path) -> None:
    """Rows written before AES-GCM (Fernet tokens) are read by the bot as they are; a
    rotation rewrites them under the new key in the new form, and the old key is dropped."""
    secrets_path, database = tmp_path / "secrets", str(tmp_path / "y.db")
    first = load_secrets(str(secrets_path), production=False)
    db = await Database.open(database)
    await db.migrate()
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO people (pseudonym, chat_id, locale, created_at, updated_at) "
            "VALUES ('p-old', 1, 'en', 0, 0)"
        )
        for n, text in enumerate(ANSWERS.values()):
            await conn.execute(
                "INSERT INTO answers (pseudonym, dialogue, question, ciphertext, created_at) "
                "VALUES ('p-old', 'feedback', 'improve', ?, ?)",
                (_fernet(first.text_key).encrypt(text.encode()), n),
            )
    await db.close()

    report = await rotate_text_key(database, secrets_path, say=lambda _: None)
    assert report.finished and report.reencrypted["answers.ciphertext"] == len(ANSWERS)
    final = load_secrets(str(secrets_path), production=False)
    assert final.old_text_keys == ()
    with sqlite3.connect(database) as conn:
        tokens = [bytes(r[0]) for r in conn.execute("SELECT ciphertext FROM answers")]
    assert all(t.startswith(b"gcm1:") for t in tokens)
    assert sorted(final.decrypt_text(t) for t in tokens) == sorted(ANSWERS.values())
