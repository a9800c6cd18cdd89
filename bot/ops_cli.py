"""Operations commands: backup, restore, retention, keys (rotation of the text key)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from bot.backup import OpsError, backup, refuse_if_running, restore
from bot.key_rotation import rotate_text_key
from bot.retention import RetentionRules, run_retention
from bot.settings import Settings
from storage.clock import SystemClock
from storage.database import Database

OPS_COMMANDS = ("backup", "restore", "retention", "keys")


def add_ops_parsers(commands: Any) -> None:
    made = commands.add_parser(
        "backup",
        help="copy the database while the bot runs, with the secrets file beside it",
    )
    made.add_argument("--out", type=Path, required=True, help="the backup file to write")
    back = commands.add_parser(
        "restore", help="check a backup, then put it in place of the database (bot stopped)"
    )
    back.add_argument("--from", dest="source", type=Path, required=True, help="the backup")
    back.add_argument(
        "--secrets", type=Path, help="the backup's secrets file (default: FILE.secrets)"
    )
    back.add_argument(
        "--force", action="store_true", help="restore although the bot beat in the last 2 min"
    )
    retention = commands.add_parser("retention", help="delete answers past their retention")
    retention.add_argument("action", choices=["run"])
    keys = commands.add_parser("keys", help="rotate the text key (bot stopped)")
    keys.add_argument("action", choices=["rotate"])
    keys.add_argument(
        "--force", action="store_true", help="rotate although the bot beat in the last 2 min"
    )


def run_ops(settings: Settings, args: argparse.Namespace) -> int:
    database, secrets_path = Path(settings.database_path), Path(settings.secrets_path)
    try:
        if args.command == "backup":
            made = backup(database, secrets_path, args.out)
            print(
                f"backup written: {made.path} ({made.pages} pages, schema version "
                f"{made.version}, {made.seconds:.1f} s)\n"
                f"secrets file:   {made.secrets}\n"
                "The backup is useless without its secrets file: keep the two together, "
                "and as safe as the live data (together they can be read)."
            )
            return 0
        if args.command == "restore":
            result = restore(
                args.source,
                database,
                secrets_path,
                force=args.force,
                source_secrets=args.secrets,
            )
            kept = (
                f"; the one it replaced is kept as {result.kept_as}(.secrets)"
                if result.kept_as
                else ""
            )
            print(f"restored: {database} (schema version {result.version}){kept}")
            if result.keys == "installed":
                print(f"{secrets_path} is now the backup's secrets file")
            elif result.keys == "merged":
                print(
                    f"{secrets_path} now also holds the backup's text key; run "
                    "`python -m bot keys rotate` to re-encrypt under one key"
                )
            return 0
        if args.command == "retention":
            return asyncio.run(_retention(settings))
        refuse_if_running(database, args.force, "rotate the key")
        report = asyncio.run(rotate_text_key(str(database), secrets_path))
        return 0 if report.finished else 1
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


async def _retention(settings: Settings) -> int:
    rules = RetentionRules(settings.retention_months, settings.safeguarding_retention_days)
    db = await Database.open(settings.database_path)
    try:
        await db.migrate()
        deleted = await run_retention(db, rules, SystemClock().now_ms())
    finally:
        await db.close()
    print(
        f"retention ({settings.retention_months} months for answers, check-ins and people "
        "with no consent granted, or who blocked the bot, who have not written since, "
        f"{settings.safeguarding_retention_days} days for safeguarding requests): deleted "
        + ", ".join(f"{count} {table}" for table, count in deleted.items())
    )
    return 0
