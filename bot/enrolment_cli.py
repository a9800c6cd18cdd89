"""Command line for enrolment codes: `python -m bot enrol create --region R --count N --out DIR`."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from bot.enrolment import (
    MAX_BATCH,
    EnrolmentError,
    check_batch_request,
    create_batch,
)
from bot.secrets_file import load_secrets
from bot.settings import BOT_USERNAME_SHAPE, Settings, SettingsError
from state_machines.definition import REGION_SLUGS
from storage.clock import SystemClock
from storage.database import Database

# Telegram usernames: 5-32 characters of letters, digits and _, starting with a letter.


def add_enrol_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `enrol create` to the bot's command line."""
    enrol = subparsers.add_parser("enrol", help="enrolment codes and QR posters for a region")
    actions = enrol.add_subparsers(dest="enrol_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="create single-use codes; write codes.csv and poster.pdf into --out"
    )
    create.add_argument("--region", required=True, help=f"one of: {', '.join(REGION_SLUGS)}")
    create.add_argument("--count", required=True, type=int, help=f"1 to {MAX_BATCH} codes")
    create.add_argument("--out", required=True, type=Path, help="an empty or new folder")
    create.add_argument(
        "--expires-days", type=int, default=90, help="days the codes work (default 90)"
    )
    create.add_argument(
        "--bot-username", help="the bot's Telegram username (default: env BOT_USERNAME)"
    )


def run_enrol(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out an `enrol` command; bad input raises SettingsError (one line, exit 2)."""
    if args.enrol_command != "create":
        raise SettingsError("enrol", f"unknown action '{args.enrol_command}'; use: create")
    try:
        check_batch_request(args.region, args.count, args.expires_days)
    except EnrolmentError as exc:
        raise SettingsError(exc.option, exc.problem) from None
    username = _bot_username(args.bot_username)
    return asyncio.run(_create(settings, args, username))


def _bot_username(given: str | None) -> str:
    """--bot-username, else BOT_USERNAME, without a leading @; checked for shape."""
    username = (given or os.environ.get("BOT_USERNAME", "")).strip().removeprefix("@")
    if not username:
        raise SettingsError(
            "--bot-username/BOT_USERNAME",
            "not set: give the bot's Telegram username, e.g. --bot-username YouSaidBot",
        )
    if not BOT_USERNAME_SHAPE.match(username):
        raise SettingsError(
            "--bot-username/BOT_USERNAME",
            f"'{username}' is not a Telegram username (5-32 letters, digits and _)",
        )
    return username


async def _create(settings: Settings, args: argparse.Namespace, username: str) -> int:
    """Open and migrate the database, create the batch, print a one-line summary."""
    secrets = load_secrets(settings.secrets_path, production=settings.production)
    db = await Database.open(settings.database_path)
    try:
        await db.migrate()
        result = await create_batch(
            db,
            secrets,
            args.region,
            args.count,
            args.expires_days,
            username,
            args.out,
            SystemClock().now_ms(),
        )
    except EnrolmentError as exc:
        raise SettingsError(exc.option, exc.problem) from None
    finally:
        await db.close()
    print(f"created {result.count} codes for {result.region}: {result.csv_path}, {result.pdf_path}")
    return 0
