"""Command line for staff access: `roles grant | revoke | list`, `invite create | list |
revoke`.

Telegram ids are taken only to be turned into pseudonyms at once; they are never stored or
printed. Every change is written to the audit log with the actor "cli".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable

from bot.access import check_grant, create_invite, grant_role, invite_target, revoke_role
from bot.secrets_file import Secrets, load_secrets
from bot.settings import Settings, SettingsError
from state_machines.definition import REGION_SLUGS
from storage.clock import SystemClock
from storage.database import Database, MigrationError
from storage.people import People
from storage.staff import ROLES, AuditLog, RoleGrant, StaffInvites, StaffRoles

EXIT_PROBLEMS = 2
CLI_ACTOR = "cli"
STAFF_COMMANDS = ("roles", "invite")
_SHOWN = 12  # characters of a pseudonym (or an invite's hash) shown, as in the logs
_MIN_REFERENCE = 8  # an invite's reference: enough of its hash to name one

# Roles, regions, ids and hours are taken as text and checked here rather than by argparse
# (whose errors print the usage too), so each mistake is one line on stderr and exit status 2.
_ROLE_HELP = f"one of {', '.join(ROLES)}"
_REGION_HELP = f"staff and managers only; one of {', '.join(REGION_SLUGS)}"


def add_staff_parsers(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add the `roles` and `invite` commands to the main command line."""
    roles = subparsers.add_parser("roles", help="grant, revoke or list staff roles")
    actions = roles.add_subparsers(dest="roles_action", required=True, metavar="ACTION")
    for name, help_text in (
        ("grant", "give someone a role (their Telegram id is never stored)"),
        ("revoke", "take a role away (with --safeguarding: only the safeguarding duty)"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("--telegram-id", required=True, metavar="ID")
        _add_grant_arguments(action)
        action.set_defaults(staff_action=f"roles.{name}")
    listing = actions.add_parser("list", help="list every grant, by pseudonym")
    listing.set_defaults(staff_action="roles.list")

    invite = subparsers.add_parser("invite", help="make one-time invite links for staff")
    invite_actions = invite.add_subparsers(dest="invite_action", required=True, metavar="ACTION")
    create = invite_actions.add_parser("create", help="print a new one-time invite link")
    _add_grant_arguments(create)
    create.add_argument("--expires-hours", default="72", metavar="HOURS", help="default: 72")
    create.add_argument("--bot-username", metavar="NAME", help="default: $BOT_USERNAME")
    create.set_defaults(staff_action="invite.create")
    listed = invite_actions.add_parser("list", help="the invites not used or expired yet")
    listed.set_defaults(staff_action="invite.list")
    revoke = invite_actions.add_parser(
        "revoke", help="make an unused invite expire now (a link sent to the wrong person)"
    )
    revoke.add_argument(
        "--ref", required=True, metavar="REF", help="its reference, as `invite list` shows it"
    )
    revoke.set_defaults(staff_action="invite.revoke")


def _add_grant_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", required=True, metavar="ROLE", help=_ROLE_HELP)
    parser.add_argument("--region", metavar="REGION", help=_REGION_HELP)
    parser.add_argument(
        "--safeguarding", action="store_true", help="staff only: the safeguarding duty"
    )


def run_staff(settings: Settings, args: argparse.Namespace) -> int:
    """Run a `roles` or `invite` command; bad input is one line on stderr and exit 2."""
    try:
        return asyncio.run(_run(settings, args))
    except (ValueError, SettingsError, MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    action: str = args.staff_action
    _check_input(action, args)  # before any file is opened or created
    secrets = None
    if action not in ("roles.list", "invite.list", "invite.revoke"):
        secrets = load_secrets(settings.secrets_path, production=settings.production)
    db = await Database.open(settings.database_path)
    try:
        await db.migrate()
        return await _COMMANDS[action](db, secrets, args)
    finally:
        await db.close()


def _check_input(action: str, args: argparse.Namespace) -> None:
    """Raise ValueError, in plain words, on the first bad argument."""
    if action in ("roles.list", "invite.list"):
        return
    if action == "invite.revoke":
        _reference(args.ref)
        return
    check_grant(args.role, args.region, args.safeguarding)
    if action == "invite.create":
        _expires_hours(args.expires_hours)
        _bot_username(args)
    else:
        _telegram_id(args.telegram_id)


def _telegram_id(text: str) -> int:
    """A Telegram user id: a positive whole number."""
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**63:
        raise ValueError("--telegram-id must be a Telegram user id (digits only)")
    return int(text)


def _reference(text: str) -> str:
    """An invite's reference: the start of its hash, as `invite list` prints it."""
    if not (_MIN_REFERENCE <= len(text) <= 64 and all(c in "0123456789abcdef" for c in text)):
        raise ValueError(
            f"--ref must be an invite's reference as `invite list` shows it "
            f"({_MIN_REFERENCE} or more of 0-9 and a-f)"
        )
    return text


def _expires_hours(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError("--expires-hours must be a whole number of hours, e.g. 72")
    return int(text)


def _bot_username(args: argparse.Namespace) -> str:
    """--bot-username, else BOT_USERNAME from the environment."""
    name = args.bot_username or os.environ.get("BOT_USERNAME", "").strip()
    if not name:
        raise ValueError("give the bot's username with --bot-username NAME or BOT_USERNAME")
    return str(name)


def _pseudonym_of(secrets: Secrets | None, args: argparse.Namespace) -> str:
    assert secrets is not None
    return secrets.pseudonym(_telegram_id(args.telegram_id))


def _now() -> int:
    return SystemClock().now_ms()


def _describe(role: str, region: str | None, safeguarding: bool) -> str:
    where = f" in {region}" if region else ""
    return f"{role}{where}" + (" with the safeguarding duty" if safeguarding else "")


async def _grant(db: Database, secrets: Secrets | None, args: argparse.Namespace) -> int:
    pseudonym = _pseudonym_of(secrets, args)
    changed = await grant_role(
        db, pseudonym, args.role, args.region, args.safeguarding, CLI_ACTOR, _now()
    )
    what = _describe(args.role, args.region, args.safeguarding)
    verb = "granted" if changed else "already held"
    print(f"{verb}: {what} for {pseudonym[:_SHOWN]}")
    async with db.read() as conn:
        known = await People(conn).get(pseudonym)
    if known is None or not known.reachable:
        # Telegram lets a bot write only to people who wrote to it first (and did not block
        # it): until then nothing of their role reaches them. Digests sent meanwhile are
        # not sent again; safety requests are (when they have the duty).
        print(
            "note: they have not written to the bot yet (or blocked it), so it cannot write "
            "to them: ask them to send /start now. Until they do they get no digests, "
            "alerts or replies."
        )
    return 0


async def _revoke(db: Database, secrets: Secrets | None, args: argparse.Namespace) -> int:
    pseudonym = _pseudonym_of(secrets, args)
    revoked = await revoke_role(
        db, pseudonym, args.role, args.region, args.safeguarding, CLI_ACTOR, _now()
    )
    what = _describe(args.role, args.region, False)
    if args.safeguarding:
        what = f"the safeguarding duty in {args.region}"
    verb = "revoked" if revoked else "not held, nothing to revoke"
    print(f"{verb}: {what} for {pseudonym[:_SHOWN]}")
    return 0


def format_grant(grant: RoleGrant) -> str:
    """One line of `roles list`: the pseudonym's start, never a Telegram id."""
    duty = "safeguarding" if grant.safeguarding else ""
    return f"{grant.pseudonym[:_SHOWN]}  {grant.role:<8} {grant.region or '-':<19} {duty}".rstrip()


async def _list(db: Database, secrets: Secrets | None, args: argparse.Namespace) -> int:
    async with db.read() as conn:
        grants = await StaffRoles(conn).all()
    for grant in grants:
        print(format_grant(grant))
    if not grants:
        print("no roles granted: everyone is a participant")
    return 0


async def _invite(db: Database, secrets: Secrets | None, args: argparse.Namespace) -> int:
    assert secrets is not None
    link = await create_invite(
        db,
        secrets,
        args.role,
        args.region,
        args.safeguarding,
        _expires_hours(args.expires_hours),
        _bot_username(args),
        _now(),
        CLI_ACTOR,
    )
    what = _describe(args.role, args.region, args.safeguarding)
    print(f"one-time invite for {what}, valid {args.expires_hours} h (send it privately):")
    print(link)
    return 0


async def _invites(db: Database, secrets: Secrets | None, args: argparse.Namespace) -> int:
    async with db.read() as conn:
        invites = await StaffInvites(conn).open_invites(_now())
    for invite in invites:
        expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(invite.expires_at / 1000))
        what = _describe(invite.role, invite.region, invite.safeguarding)
        print(f"{invite.code_hash[:_SHOWN]}  {what}, expires {expires}")
    if not invites:
        print("no invites waiting to be used")
    return 0


async def _revoke_invite(db: Database, secrets: Secrets | None, args: argparse.Namespace) -> int:
    reference, now = _reference(args.ref), _now()
    async with db.transaction() as conn:
        revoked = await StaffInvites(conn).expire(reference, now)
        for code_hash in revoked:
            await AuditLog(conn).record(
                CLI_ACTOR, "invite.revoked", invite_target(code_hash), {}, now
            )
    if not revoked:
        print(f"error: no unused invite has the reference {reference}", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"revoked: {len(revoked)} invite{'s' if len(revoked) > 1 else ''} ({reference})")
    return 0


_Command = Callable[[Database, Secrets | None, argparse.Namespace], Awaitable[int]]
_COMMANDS: dict[str, _Command] = {
    "roles.grant": _grant,
    "roles.revoke": _revoke,
    "roles.list": _list,
    "invite.create": _invite,
    "invite.list": _invites,
    "invite.revoke": _revoke_invite,
}
