"""Settings and the secrets file: one clear line naming the variable, never a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from bot.cli import EXIT_PROBLEMS
from bot.cli import main as cli_main
from bot.local_api import LocalBotApi
from bot.secrets_file import load_secrets
from bot.settings import (
    PROJECT_ROOT,
    SANDBOX_DATABASE_PATH,
    SettingsError,
    for_sandbox,
    load_settings,
)
from storage.database import bundled_migrations

TOKEN = "123456789:AAinventedTOKENforTESTSonly_abcdefgh"


def run_bot(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TELEGRAM_BOT_TOKEN", "SENTRY_DSN", "YOUSAID_ENV")
    }
    base.update(
        {"DATABASE_PATH": str(tmp_path / "db.sqlite"), "SECRETS_PATH": str(tmp_path / "secrets")}
    )
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=PROJECT_ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("TIMEZONE", "Mars/Olympus", "not a known time zone"),
        ("TELEGRAM_BOT_TOKEN", "not-a-token", "does not look like a bot token"),
        ("TELEGRAM_API_BASE_URL", "ftp://example", "is not an http(s) URL"),
        ("DEFAULT_LOCALE", "fr", "is not shipped"),
        ("SENTRY_DSN", "nonsense", "is not a Sentry DSN"),
        ("YOUSAID_ENV", "staging", "must be development or production"),
        ("SEND_RATE_PER_SECOND", "lots", "must be a number"),
        # A short secret could be guessed, and with it updates forged from any staff id.
        ("WEBHOOK_SECRET", "s3cret", "must be 32-256 characters"),
    ],
)
def test_bad_setting_gives_one_line_naming_it(
    variable: str, value: str, says: str, tmp_path: Path
) -> None:
    webhook = {"WEBHOOK_URL": "https://bot.example.org/telegram"}
    env = {**webhook, variable: value} if variable == "WEBHOOK_SECRET" else {variable: value}
    result = run_bot(["run"], env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {variable}: ") and says in lines[0]


def test_missing_token_says_what_to_set(tmp_path: Path) -> None:
    result = run_bot(["run"], {}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: TELEGRAM_BOT_TOKEN: not set.")
    assert "export TELEGRAM_BOT_TOKEN" in result.stderr


def test_migrate_creates_the_database(tmp_path: Path) -> None:
    result = run_bot(["migrate"], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"database at version {len(bundled_migrations())}" in result.stdout
    assert "already up to date" in run_bot(["migrate"], {}, tmp_path).stdout


def test_defaults() -> None:
    settings = load_settings({})
    # In the project's folder whichever folder a command runs from: `roles grant` run
    # elsewhere used to make a new, empty installation there.
    assert settings.database_path == str(PROJECT_ROOT / "data" / "yousaid.db")
    assert settings.secrets_path == str(PROJECT_ROOT / "data" / "secrets")
    assert settings.timezone == "Europe/London"
    assert settings.api_base_url == "https://api.telegram.org/bot"
    assert settings.bot_token is None and settings.sentry_dsn is None
    assert load_settings({"TELEGRAM_BOT_TOKEN": TOKEN}).require_token() == TOKEN


def test_the_sandbox_keeps_to_a_database_of_its_own_unless_one_is_named() -> None:
    """Sharing the real bot's database, the sandbox's sender would drain real people's
    queued messages into the local stand-in."""
    default = load_settings({})
    assert for_sandbox(default, {}).database_path == SANDBOX_DATABASE_PATH
    assert for_sandbox(default, {}).database_path != default.database_path
    named = load_settings({"DATABASE_PATH": "/srv/try/sandbox.db"})
    assert for_sandbox(named, {"DATABASE_PATH": "/srv/try/sandbox.db"}) == named
    # The Docker image names the real database and runs in production: refused there.
    image = {"DATABASE_PATH": "/data/yousaid.db", "YOUSAID_ENV": "production"}
    with pytest.raises(SettingsError, match="not run in production"):
        for_sandbox(load_settings(image), image)


def test_secrets_generated_private_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "data" / "secrets"
    created = load_secrets(str(path), production=False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "generated a new one" in caplog.text
    again = load_secrets(str(path), production=False)
    assert again == created
    assert created.pseudonym(700000001) == again.pseudonym(700000001)
    assert created.pseudonym(700000001) != created.pseudonym(700000002)
    assert "700000001" not in created.pseudonym(700000001)


def test_secrets_refused_not_generated_in_production(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    with pytest.raises(SettingsError, match=r"^SECRETS_PATH: no secrets file"):
        load_secrets(str(path), production=True)
    assert not path.exists()
    result = run_bot(["run"], {"YOUSAID_ENV": "production", "TELEGRAM_BOT_TOKEN": TOKEN}, tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: SECRETS_PATH:")


def test_secrets_readable_by_others_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    load_secrets(str(path), production=False)
    path.chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        load_secrets(str(path), production=False)
    path.chmod(0o600)
    path.write_text(json.dumps({"version": 1}))
    with pytest.raises(SettingsError, match="not a YouSaid secrets file"):
        load_secrets(str(path), production=False)


def test_the_command_line_says_so_rather_than_failing_at_the_first_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Debian 11 ships SQLite 3.34: the first migration's STRICT tables would fail there."""
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    monkeypatch.setenv("DATABASE_PATH", str(tmp_path / "db.sqlite"))
    monkeypatch.setenv("SECRETS_PATH", str(tmp_path / "secrets"))
    # The command line sets up logging to this test's captured stderr: put the root logger
    # back afterwards, or later tests log into a closed stream.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)

    assert cli_main(["migrate"]) == EXIT_PROBLEMS

    said = capsys.readouterr().err.strip()
    assert said.startswith("error: YouSaid needs SQLite 3.37.0 or newer") and "3.34.1" in said
    assert not (tmp_path / "db.sqlite").exists()  # refused before anything was made


async def run_bot_async(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    """As run_bot, without blocking the event loop (the local server runs in this one)."""
    base = {k: v for k, v in os.environ.items() if k not in ("SENTRY_DSN", "YOUSAID_ENV")}
    base.update(
        {"DATABASE_PATH": str(tmp_path / "db.sqlite"), "SECRETS_PATH": str(tmp_path / "secrets")}
    )
    base.update(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=PROJECT_ROOT,
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_a_start_that_fails_ends_the_process_saying_why_without_the_token(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """A token Telegram refuses, or Telegram out of reach: the process used to print the
    error and then never exit (the database's thread held it), so nothing restarted it;
    and the refused token was printed. Now: one line, exit 1, no token."""
    wrong = "123456789:" + "B" * 35
    refused, said = await run_bot_async(
        ["run"], {"TELEGRAM_BOT_TOKEN": wrong, "TELEGRAM_API_BASE_URL": api.base_url}, tmp_path
    )
    assert refused == 1, said
    assert "Telegram refused the bot token" in said and wrong not in said and "B" * 35 not in said
    assert said.strip().splitlines()[-1].startswith("error: Telegram refused the bot token")
    assert "Traceback" not in said and "Unclosed" not in said
    unreachable = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot",
    }
    failed, said = await run_bot_async(["run"], unreachable, tmp_path)
    assert failed == 1 and "could not reach Telegram" in said, said
    assert TOKEN not in said and TOKEN.split(":")[1] not in said


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    """An image rolled back after an upgrade must not run old code on the new schema."""
    assert run_bot(["migrate"], {}, tmp_path).returncode == 0
    with closing(sqlite3.connect(tmp_path / "db.sqlite")) as conn:
        conn.execute("PRAGMA user_version = 999")
    newest = len(bundled_migrations())
    for command in (["migrate"], ["run"]):
        env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot"}
        result = run_bot(command, env, tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"schema version 999, newer than this code ({newest})" in result.stderr


def test_the_first_command_makes_the_data_folder_private(tmp_path: Path) -> None:
    """`secrets-init` (or `run`) is usually the first thing run: the folder it makes for the
    keys and the database is readable by the bot's own user alone, not only the files."""
    folder = tmp_path / "data"
    env = {"SECRETS_PATH": str(folder / "secrets"), "DATABASE_PATH": str(folder / "y.db")}
    result = run_bot(["secrets-init"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_production_keeps_to_telegrams_rate() -> None:
    """Above ~30 a second Telegram refuses every call for a while (replies and safety
    messages too): production refuses the setting; tests and the sandbox may go faster."""
    with pytest.raises(
        SettingsError, match=r"SEND_RATE_PER_SECOND: must be a number from 0\.1 to 30"
    ):
        load_settings({"YOUSAID_ENV": "production", "SEND_RATE_PER_SECOND": "100"})
    assert load_settings({"YOUSAID_ENV": "production"}).send_rate_per_second == 28
    assert load_settings({"SEND_RATE_PER_SECOND": "200"}).send_rate_per_second == 200
