"""Command line: run, sandbox, migrate, check, secrets-init, health, roles, invite, enrol,
checkin, themes, safeguarding, backup, restore, retention, keys."""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
from pathlib import Path

from bot import safeguarding_cli
from bot.catalog_check import check_catalogs, dialogue_texts
from bot.checkin_cli import add_checkin_parser, run_checkin
from bot.dialogue_files import build_engine
from bot.digest_cli import add_parser as add_digest_parser
from bot.digest_cli import run_digest
from bot.enrolment_cli import add_enrol_parser, run_enrol
from bot.error_reporting import setup_logging, setup_sentry
from bot.ops_cli import OPS_COMMANDS, add_ops_parsers, run_ops
from bot.secrets_file import generate_secrets_file
from bot.settings import SHIPPED_LOCALES, Settings, SettingsError, for_sandbox, load_settings
from bot.staff_cli import STAFF_COMMANDS, add_staff_parsers, run_staff
from bot.stop_words import STOP_WORDS_FILE, load_stop_words
from bot.themes_cli import add_parser as add_themes_parser
from bot.themes_cli import run_themes
from state_machines.engine import EngineError
from state_machines.loader import DialogueError
from storage.clock import SystemClock
from storage.database import Database, MigrationError
from storage.queues import HEARTBEAT_KEY, Meta

EXIT_PROBLEMS = 2
_HEALTHY_WITHIN_S = 120


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description=("YouSaid: feedback, panels and 'you said, we did' for people on probation."),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="run the bot (long polling, or a webhook with WEBHOOK_URL)")
    commands.add_parser(
        "sandbox", help="talk to the bot in this terminal, with no token and no Telegram"
    )
    commands.add_parser("migrate", help="bring the database up to date")
    check = commands.add_parser("check", help="validate dialogues and catalogs; exit 2 on errors")
    check.add_argument("--dialogues", type=Path, help="dialogue folder (default: the shipped one)")
    commands.add_parser("secrets-init", help="create the secrets file at SECRETS_PATH (once)")
    commands.add_parser(
        "health", help="exit 0 when a running bot is alive (heartbeat in the last 2 minutes)"
    )
    add_staff_parsers(commands)
    add_enrol_parser(commands)
    add_themes_parser(commands)
    add_checkin_parser(commands)
    safeguarding_cli.add_parser(commands)
    add_digest_parser(commands)
    add_ops_parsers(commands)
    args = parser.parse_args(argv)
    if args.command == "themes":
        # No settings or logging: `themes tag` prints JSON lines and nothing else.
        return run_themes(args)
    try:
        settings = load_settings(os.environ)
        # In the sandbox, log lines would break up the conversation: warnings only, unless
        # LOG_LEVEL asks for more.
        quiet = args.command == "sandbox" and "LOG_LEVEL" not in os.environ
        setup_logging("WARNING" if quiet else settings.log_level)
        if args.command == "check":
            return run_check(settings, args.dialogues)
        if args.command == "migrate":
            return asyncio.run(run_migrate(settings))
        if args.command == "secrets-init":
            return run_secrets_init(settings)
        if args.command in STAFF_COMMANDS:
            return run_staff(settings, args)
        if args.command == "enrol":
            return run_enrol(settings, args)
        if args.command == "safeguarding":
            return safeguarding_cli.main(args, settings.dialogues_dir)
        if args.command == "digest":
            return run_digest(settings, args)
        if args.command == "checkin":
            return run_checkin(settings, args)
        if args.command in OPS_COMMANDS:
            return run_ops(settings, args)
        if args.command == "health":
            if not Path(settings.database_path).exists():
                print("unhealthy: no database yet", file=sys.stderr)
                return 1
            return asyncio.run(run_health(settings))
        setup_sentry(settings.sentry_dsn, settings.environment)
        if args.command == "sandbox":
            from bot.sandbox import run_sandbox  # imports telegram: only when running

            return asyncio.run(run_sandbox(for_sandbox(settings, os.environ)))
        from bot.runtime import StartFailed, run_until_signalled

        try:
            return asyncio.run(run_until_signalled(settings))
        except StartFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    except (DialogueError, EngineError, MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        return 130


def run_check(settings: Settings, dialogues_dir: Path | None) -> int:
    """Print every problem in the dialogues and catalogs; exit 2 when there is any."""
    problems: list[str] = []
    folder = dialogues_dir or settings.dialogues_dir
    try:
        build_engine(folder, zone=settings.timezone)
    except DialogueError as exc:
        problems.extend(str(p) for p in exc.problems)
    except EngineError as exc:
        problems.append(str(exc))
    problems.extend(check_catalogs(settings.locales_dir, SHIPPED_LOCALES, dialogue_texts(folder)))
    try:
        load_stop_words(folder / STOP_WORDS_FILE)
    except (OSError, ValueError) as exc:
        problems.append(str(exc))
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"ok: dialogues in {folder} and catalogs for {', '.join(SHIPPED_LOCALES)}")
    return 0


async def run_migrate(settings: Settings) -> int:
    db = await Database.open(settings.database_path)
    try:
        applied = await db.migrate()
        version = await db.schema_version()
    finally:
        await db.close()
    print(
        f"database at version {version}"
        + (f" (applied {', '.join(applied)})" if applied else " (already up to date)")
    )
    return 0


async def run_health(settings: Settings) -> int:
    """Healthy when the running bot wrote its heartbeat within the last two minutes."""
    db = await Database.open(settings.database_path)
    try:
        async with db.read() as conn:
            beat = await Meta(conn).get(HEARTBEAT_KEY)
    except sqlite3.Error as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    age_s = (SystemClock().now_ms() - int(beat)) / 1000 if beat else None
    if age_s is None or age_s > _HEALTHY_WITHIN_S:
        print("unhealthy: no heartbeat from the bot lately", file=sys.stderr)
        return 1
    print(f"healthy: last heartbeat {age_s:.0f} s ago")
    return 0


def run_secrets_init(settings: Settings) -> int:
    path = Path(settings.secrets_path)
    if path.exists():
        raise SettingsError("SECRETS_PATH", f"{path} already exists; it is never overwritten")
    generate_secrets_file(path)
    print(
        f"created {path} (mode 0600). Back it up: without it, stored data cannot be linked "
        "to people or decrypted."
    )
    return 0
