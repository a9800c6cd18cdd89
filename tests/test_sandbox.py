"""`python -m bot sandbox` in a pseudo-terminal, typed at as a person would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect

from bot.settings import PROJECT_ROOT


def sandbox(tmp_path: Path) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WEBHOOK_"))}
    env.update(
        DATABASE_PATH=str(tmp_path / "sandbox.db"),
        SECRETS_PATH=str(tmp_path / "secrets"),
        PYTHONUNBUFFERED="1",
    )
    return pexpect.spawn(
        sys.executable,
        ["-m", "bot", "sandbox"],
        cwd=str(PROJECT_ROOT),
        env=env,
        encoding="utf-8",
        timeout=30,
    )


def choose(child: pexpect.spawn, label: str, then: str) -> None:
    """Type the number shown next to `label`, and wait for the bot's next words."""
    child.expect(r"\[(\d+)\] " + label)
    child.sendline(child.match.group(1))
    child.expect(then)


def test_onboarding_by_numbers_survives_a_restart(tmp_path: Path) -> None:
    child = sandbox(tmp_path)
    child.expect("Which language do you want")
    choose(child, "English", "This is YouSaid")
    choose(child, "OK, go on", "Can we keep your answers")
    choose(child, "Yes", "Can we invite you to panels")
    child.expect("> ")
    child.sendline("/quit")
    child.expect("Your place is kept")
    child.expect(pexpect.EOF)

    again = sandbox(tmp_path)
    again.expect("Here is where you were")
    again.expect("Can we invite you to panels")
    choose(again, "No", "Can we tell you what changed")
    choose(again, "Yes", "Can we use your words")
    choose(again, "No", "Which area")
    again.expect("> ")
    again.sendline("hello")  # text where a button is expected
    again.expect("Please tap one of the buttons")
    choose(again, "Wales", "You are signed up")
    again.sendeof()
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 0
