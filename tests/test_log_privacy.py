"""The session-wide log-privacy check (tests/log_privacy.py) cannot pass vacuously: planted
leaks are caught by its rule, by its wiring into this very session, and by the exit status
of a pytest run."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from bot.local_api import FakePerson, LocalBotApi
from bot.settings import PROJECT_ROOT
from tests.harness import TOKEN
from tests.log_privacy import LogPrivacy, Needles, note_process_log

GWENDOLYN = FakePerson(user_id=700000042, first_name="Gwendolyn", last_name="Pryce")
SAID = "Rhiannon never calls me back"


def _needles(*texts: str) -> Needles:
    needles = Needles(tokens={TOKEN})
    for text in texts:
        needles.add_update({"message": {"from": GWENDOLYN.user_json(), "text": text}})
    return needles


def test_the_rule_keeps_what_identifies_and_skips_what_is_meaningless() -> None:
    needles = _needles("/start", "/start inv-Q7xk2", "Yes", "fine", "12", "!!!!!!", "07700900461")
    needles.add_text("housekeeping")  # the bot's own word (bot/scheduler.py), made up by hypothesis
    needles.add_update({"message": {"from": GWENDOLYN.user_json(), "text": "Siân helped me"}})
    needles.add_update({"message": {"from": GWENDOLYN.user_json(), "text": SAID * 2}})
    # A tap: the person's id counts; the bot's message and its buttons are the bot's words.
    bot_message = {
        "from": {"id": 123456789, "is_bot": True, "first_name": "YouSaid"},
        "chat": GWENDOLYN.private_chat_json(),
        "text": "Can we keep your answers?",
        "reply_markup": {"inline_keyboard": [[{"text": "Keep them", "callback_data": "y"}]]},
    }
    needles.add_update({"callback_query": {"from": GWENDOLYN.user_json(), "message": bot_message}})
    assert needles.texts == {
        "inv-Q7xk2",
        "Siân helped me",
        "Si\\u00e2n helped me",
        SAID * 2,
        SAID[:20],
    }
    assert needles.ids == {"700000042", "7700900461"}
    assert needles.names == {"Gwendolyn", "Pryce"}


@pytest.mark.parametrize(
    ("planted", "kind"),
    [
        (f"GET /bot{TOKEN}/getMe", "token"),
        (f"secret {TOKEN.partition(':')[2]}", "token"),
        ("token 987654321:ZZotherTOKENshapedSECRETvalue_0123456", "token-shaped"),
        ("chat=700000042 sent", "id"),
        ("chat -700000042", "id"),
        ("phone 07700900461", "id"),
        (f"text={SAID!r}", "text"),
        ("quote 'Rhiannon never calls…'", "text"),
        ('{"text": "Si\\u00e2n helped me"}', "text"),
        ("user Gwendolyn wrote", "name"),
    ],
)
def test_a_planted_leak_is_found(planted: str, kind: str) -> None:
    needles = _needles(SAID, "Siân helped me", "07700900461")
    found = needles.find(f"2026-11-26 10:00:00 INFO bot.x: {planted}\n")
    assert {f.split(" ", 1)[0] for f in found} == {kind}


def test_clean_logs_and_near_misses_are_not_leaks() -> None:
    needles = _needles(SAID)
    clean = (
        "INFO bot.conversation: handled update for person 9ee6f26d7f2a\n"
        "DEBUG bot.local_api.dispatch: call sendMessage -> ok 200\n"
        "update 17000000421 seq 70000004 Gwendolyns Rhiannon\n"
        "INFO httpx: HTTP Request: POST http://127.0.0.1:8081/bot<token>/getUpdates\n"
    )
    assert needles.find(clean) == []


async def test_this_session_captures_and_checks_what_is_logged(
    api: LocalBotApi, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The plugin running this session sees updates sent through the local Bot API, every log
    record at DEBUG (formatted as the bot writes it, and bare for our own loggers), and bot
    process logs; planted leaks are found, then taken away so the session still passes."""
    plugin = request.config.pluginmanager.get_plugin("log_privacy")
    assert isinstance(plugin, LogPrivacy)
    api.send_text(GWENDOLYN, SAID)
    assert SAID in plugin.needles.texts and "700000042" in plugin.needles.ids
    assert logging.getLogger("bot.any").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert not logging.getLogger("telegram.ext.ExtBot").isEnabledFor(logging.INFO)

    logging.getLogger("bot.planted").debug("the person said %s", SAID)
    logging.getLogger("storage.planted").info("chat %s", GWENDOLYN.chat_id)
    # A library line with the token in its URL: the bot's formatter masks it.
    logging.getLogger("httpx").warning("HTTP Request: POST http://127.0.0.1:1/bot%s/x", TOKEN)
    process_log = tmp_path / "planted-bot.log"
    process_log.write_text(f"2026-11-26 10:00:00 DEBUG bot.x: token {TOKEN}\n", "utf-8")
    note_process_log(process_log)
    findings = plugin.scan_current()
    assert any(f.startswith(f"text {SAID!r} in: ") and "DEBUG bot.planted" in f for f in findings)
    assert any(f.startswith(f"(bare) text {SAID!r}") for f in findings)
    assert any(f.startswith("(bare) id '700000042' in: storage.planted: chat") for f in findings)
    assert any(f.startswith("token ") and "DEBUG bot.x" in f for f in findings)
    assert not any("httpx" in f for f in findings), findings


PLANTED_SUITE = f"""
import logging

from bot.local_api.notify import Notifier
from bot.local_api.updates import UpdateQueue


def test_leaks_a_text():
    UpdateQueue(Notifier()).push({{"message": {{"from": {{"id": 700000042, "is_bot": False,
        "first_name": "Gwendolyn"}}, "chat": {{"id": 700000042, "type": "private"}},
        "text": {SAID!r}}}}})
    logging.getLogger("bot.planted").debug("the person said %s", {SAID!r})
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "two workers"])
def test_a_leak_fails_a_quiet_run_of_a_single_file(tmp_path: Path, workers: list[str]) -> None:
    """Run pytest -q on one planted test file, with this suite's conftest: the test itself
    passes, yet the run fails and says where the leak is; with pytest-xdist (as `make test`
    runs) too, where the leak is logged in a worker and reported by the controller."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_configure\n")
    (tmp_path / "test_planted.py").write_text(PLANTED_SUITE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers, str(tmp_path)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "1 passed" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 1, result.stdout
    assert "log privacy: LEAKS" in result.stdout
    assert f"test_planted.py::test_leaks_a_text: text {SAID!r}" in result.stdout


def test_a_person_is_logged_by_a_tag_that_holds_nothing_of_their_pseudonym() -> None:
    """The same person has the same tag all through a run (their lines can be followed),
    but the tag shares nothing with the pseudonym, which the key beside the database links
    to a Telegram id long after the log was written."""
    from bot.log_tags import person_tag

    pseudonym = "3f9a1c0b7e2d4a6f8b0c1d2e3f4a5b6c"
    tag = person_tag(pseudonym)
    assert tag == person_tag(pseudonym) and tag != person_tag(pseudonym[::-1])
    assert len(tag) == 10 and tag not in pseudonym and pseudonym[:6] not in tag
    run_again = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from bot.log_tags import person_tag; print(person_tag('{pseudonym}'))",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert run_again.stdout.strip() != tag  # another run: another tag
