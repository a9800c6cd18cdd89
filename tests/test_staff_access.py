"""Staff roles, access rules, the audit log, one-time invites and the staff command line.

Real SQLite files in tmp_path; every person and Telegram id here is invented.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.access import (
    Access,
    access_of,
    create_invite,
    invite_code_hash,
    is_invite_code,
    new_invite_code,
    redeem_invite,
    redeem_invite_in,
)
from bot.secrets_file import Secrets, load_secrets
from bot.settings import Settings, load_settings
from bot.staff_cli import add_staff_parsers, run_staff
from bot.start_links import redeem_start_payload
from storage.clock import SystemClock
from storage.database import Database
from storage.staff import AuditLog, StaffInvites, StaffRoles

NOW = 1_790_000_000_000
HOUR = 3_600_000
SECRETS = Secrets(b"k" * 32, b"t" * 32)


@pytest.fixture()
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(str(tmp_path / "test.db"))
    await database.migrate()
    yield database
    await database.close()


async def test_grant_is_idempotent_and_revoke_says_whether(db: Database) -> None:
    async with db.transaction() as conn:
        roles = StaffRoles(conn)
        # No people row needed: staff may be granted a role before they ever write.
        assert await roles.grant("p-ann", "staff", "london", False, "cli", NOW)
        assert not await roles.grant("p-ann", "staff", "london", False, "cli", NOW + 1)
        assert await roles.grant("p-ann", "staff", "london", True, "cli", NOW + 2)  # duty added
        assert await roles.grant("p-ann", "manager", "wales", False, "cli", NOW)
        assert await roles.grant("p-root", "admin", None, False, "cli", NOW)
        assert not await roles.grant("p-root", "admin", None, False, "cli", NOW)

        grants = await roles.of("p-ann")
        assert [(g.role, g.region, g.safeguarding) for g in grants] == [
            ("manager", "wales", False),
            ("staff", "london", True),
        ]
        assert len(await roles.all()) == 3
        assert await roles.holders("staff", "london") == ["p-ann"]
        assert await roles.holders("manager", "london") == []
        assert await roles.holders("admin", None) == ["p-root"]
        assert await roles.safeguarding_for("london") == ["p-ann"]

        assert await roles.revoke_safeguarding("p-ann", "london")
        assert await roles.safeguarding_for("london") == []
        assert await roles.revoke("p-ann", "staff", "london")
        assert not await roles.revoke("p-ann", "staff", "london")
        assert await roles.revoke("p-root", "admin", None)
        assert [g.role for g in await roles.all()] == ["manager"]


@pytest.mark.parametrize(
    "row",
    [
        ("admin", "london", 0),  # admins have no region
        ("staff", None, 0),  # staff need one
        ("manager", "atlantis", 0),  # not one of the 12
        ("manager", "wales", 1),  # the duty is for staff only
        ("volunteer", "wales", 0),
    ],
)
async def test_tables_refuse_impossible_grants(
    db: Database, row: tuple[str, str | None, int]
) -> None:
    for table, columns in (
        ("staff_roles", "pseudonym, granted_at, granted_by"),
        ("staff_invites", "code_hash, created_at, created_by"),
    ):
        with pytest.raises(sqlite3.IntegrityError):
            async with db.transaction() as conn:
                extra = ", expires_at" if table == "staff_invites" else ""
                await conn.execute(
                    f"INSERT INTO {table} (role, region, safeguarding, {columns}{extra}) "
                    f"VALUES (?, ?, ?, 'x', 1, 'cli'{', 2' if extra else ''})",
                    row,
                )


GRANTS: dict[str, list[tuple[str, str | None, bool]]] = {
    "participant": [],
    "staff of london": [("staff", "london", False)],
    "manager of wales": [("manager", "wales", False)],
    "admin": [("admin", None, False)],
    "safeguarding staff": [("staff", "london", True)],
}

# who: (is_admin, privileged, {region: (is_staff_in, is_manager_in, safeguarding duty)})
ACCESS_TABLE: dict[str, tuple[bool, bool, dict[str, tuple[bool, bool, bool]]]] = {
    "participant": (
        False,
        False,
        {"london": (False, False, False), "wales": (False, False, False)},
    ),
    "staff of london": (
        False,
        True,
        {"london": (True, False, False), "wales": (False, False, False)},
    ),
    "manager of wales": (
        False,
        True,
        {"london": (False, False, False), "wales": (True, True, False)},
    ),
    "admin": (
        True,
        True,
        {"london": (True, True, False), "north-east": (True, True, False)},
    ),
    "safeguarding staff": (
        False,
        True,
        {"london": (True, False, True), "wales": (False, False, False)},
    ),
}


@pytest.mark.parametrize("who", list(ACCESS_TABLE))
async def test_access_rules(db: Database, who: str) -> None:
    async with db.transaction() as conn:
        for role, region, duty in GRANTS[who]:
            await StaffRoles(conn).grant("p-who", role, region, duty, "cli", NOW)
        access = await access_of(conn, "p-who")
    is_admin, privileged, regions = ACCESS_TABLE[who]
    assert (access.is_admin, access.is_privileged) == (is_admin, privileged)
    for region, expected in regions.items():
        got = (
            access.is_staff_in(region),
            access.is_manager_in(region),
            access.has_safeguarding_duty(region),
        )
        assert got == expected, (who, region)
        assert (region in access.staff_regions()) == expected[0]
    assert len(access.staff_regions()) == (12 if is_admin else len(GRANTS[who]))


def test_a_person_with_no_grants_is_a_participant() -> None:
    nobody = Access("p-new")
    assert not nobody.is_privileged
    assert nobody.staff_regions() == frozenset()


async def test_audit_log_is_append_only(db: Database) -> None:
    async with db.transaction() as conn:
        log = AuditLog(conn)
        await log.record("cli", "role.granted", "p-ann", {"role": "staff"}, NOW)
        await log.record("p-ann", "invite.created", "invite:abc", None, NOW + 1)
        entries = await log.entries(10)
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("p-ann", "invite.created", "invite:abc"),
        ("cli", "role.granted", "p-ann"),
    ]
    assert entries[1].details == {"role": "staff"}
    assert entries[0].details == {}
    for statement in ("UPDATE audit_log SET actor = 'someone'", "DELETE FROM audit_log"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            async with db.transaction() as conn:
                await conn.execute(statement)


def _code_of(link: str) -> str:
    assert link.startswith("https://t.me/YouSaidBot?start=")
    return link.rsplit("=", 1)[1]


async def test_invite_codes_fit_start_payloads_and_are_stored_hashed(db: Database) -> None:
    codes = {new_invite_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(is_invite_code(c) and len(c) == 16 and c.isalnum() for c in codes)
    link = await create_invite(db, SECRETS, "staff", "london", False, 72, "@YouSaidBot", NOW, "cli")
    code = _code_of(link)
    async with db.read() as conn, conn.execute("SELECT * FROM staff_invites") as cursor:
        rows = [tuple(r) for r in await cursor.fetchall()]
    assert rows[0][0] == invite_code_hash(SECRETS, code)
    assert code not in repr(rows)
    assert invite_code_hash(SECRETS, code) != invite_code_hash(Secrets(b"o" * 32, b"t" * 32), code)


async def test_redeeming_grants_the_role_once_and_audits_it(db: Database) -> None:
    link = await create_invite(db, SECRETS, "staff", "wales", True, 72, "YouSaidBot", NOW, "p-boss")
    code = _code_of(link)
    first = await redeem_invite(db, SECRETS, code, "p-new", NOW + 1)
    assert first.status == "ok"
    assert first.grant is not None and first.grant.granted_by == "p-boss"
    second = await redeem_invite(db, SECRETS, code, "p-other", NOW + 2)
    assert (second.status, second.grant) == ("used", None)
    async with db.read() as conn:
        assert (await access_of(conn, "p-new")).has_safeguarding_duty("wales")
        assert not (await access_of(conn, "p-other")).is_privileged
        entries = await AuditLog(conn).entries(10)
    assert [(e.actor, e.action) for e in entries] == [
        ("p-new", "invite.redeemed"),
        ("p-boss", "invite.created"),
    ]
    assert entries[0].target == entries[1].target  # the two entries link up
    assert entries[0].details == {"role": "staff", "region": "wales", "safeguarding": "yes"}
    assert code not in repr(entries)


async def test_only_the_first_admin_comes_by_invite_link(db: Database) -> None:
    """The first admin has no other way in (`roles grant` needs a Telegram id, which
    Telegram does not show): one link, for an hour at most, while there is no admin. A
    second such link made meanwhile gives nothing once someone is admin; after that, no
    link makes an admin (a leaked one would give full access)."""
    with pytest.raises(ValueError, match="1 hour at most"):
        await create_invite(db, SECRETS, "admin", None, False, 2, "YouSaidBot", NOW, "cli")
    first = await create_invite(db, SECRETS, "admin", None, False, 1, "YouSaidBot", NOW, "cli")
    second = await create_invite(db, SECRETS, "admin", None, False, 1, "YouSaidBot", NOW, "cli")
    async with db.transaction() as conn:
        code = first.split("start=")[1]
        assert (await redeem_invite_in(conn, SECRETS, code, "p-ops", NOW + 1)).status == "ok"
        code = second.split("start=")[1]
        late = await redeem_invite_in(conn, SECRETS, code, "p-other", NOW + 2)
        assert late.status == "expired" and late.grant is None
        assert await StaffRoles(conn).holders("admin", None) == ["p-ops"]
    with pytest.raises(ValueError, match="never by an invite link"):
        await create_invite(db, SECRETS, "admin", None, False, 1, "YouSaidBot", NOW, "cli")


async def test_a_grant_without_the_duty_keeps_an_existing_duty(db: Database) -> None:
    async with db.transaction() as conn:
        roles = StaffRoles(conn)
        await roles.grant("p-sam", "staff", "wales", True, "cli", NOW)
        assert not await roles.grant("p-sam", "staff", "wales", False, "cli", NOW + 1)
        assert await roles.safeguarding_for("wales") == ["p-sam"]


async def test_invites_expire_and_unknown_codes_are_refused(db: Database) -> None:
    link = await create_invite(db, SECRETS, "manager", "wales", False, 1, "YouSaidBot", NOW, "cli")
    code = _code_of(link)
    late = await redeem_invite(db, SECRETS, code, "p-late", NOW + HOUR)
    assert late.status == "expired"
    never = new_invite_code()
    assert (await redeem_invite(db, SECRETS, never, "p-x", NOW)).status == "unknown"
    assert (await redeem_invite(db, SECRETS, "not-a-code", "p-x", NOW)).status == "unknown"
    async with db.read() as conn:
        assert not (await access_of(conn, "p-late")).is_privileged
        assert [e.action for e in await AuditLog(conn).entries(10)] == ["invite.created"]


async def test_storage_redeem_claims_with_one_update(db: Database) -> None:
    async with db.transaction() as conn:
        invites = StaffInvites(conn)
        await invites.add("h1", "manager", "london", False, NOW + HOUR, NOW, created_by="cli")
        assert (await invites.redeem("h1", "p-a", NOW + HOUR - 1)).status == "ok"
        assert (await invites.redeem("h1", "p-a", NOW + HOUR - 1)).status == "used_by_you"
        assert (await invites.redeem("h1", "p-b", NOW + HOUR - 1)).status == "used"
        assert (await invites.redeem("h2", "p-a", NOW)).status == "unknown"


@pytest.mark.parametrize(
    ("role", "region", "safeguarding", "hours", "username", "problem"),
    [
        ("chief", "london", False, 72, "YouSaidBot", "unknown role"),
        ("staff", None, False, 72, "YouSaidBot", "needs a region"),
        ("admin", "london", False, 72, "YouSaidBot", "not tied to a region"),
        ("staff", "mars", False, 72, "YouSaidBot", "unknown region"),
        ("manager", "wales", True, 72, "YouSaidBot", "safeguarding"),
        ("staff", "wales", False, 0, "YouSaidBot", "hours"),
        ("staff", "wales", False, 72, "no/such", "username"),
    ],
)
async def test_create_invite_refuses_bad_input(
    db: Database,
    role: str,
    region: str | None,
    safeguarding: bool,
    hours: int,
    username: str,
    problem: str,
) -> None:
    with pytest.raises(ValueError, match=problem):
        await create_invite(db, SECRETS, role, region, safeguarding, hours, username, NOW, "cli")
    async with db.read() as conn:
        assert await AuditLog(conn).entries(10) == []


# The command line, through the real parser.

TELEGRAM_ID = 918_273_645_501


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {
            "DATABASE_PATH": str(tmp_path / "data" / "yousaid.db"),
            "SECRETS_PATH": str(tmp_path / "data" / "secrets"),
        }
    )


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot")
    add_staff_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _cli(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = run_staff(settings, _args(*argv))
    out, err = capsys.readouterr()
    return status, out + err


def _audit(settings: Settings) -> list[tuple[str, str, str]]:
    with sqlite3.connect(settings.database_path) as conn:
        return conn.execute("SELECT actor, action, target FROM audit_log ORDER BY id").fetchall()


def test_cli_grants_lists_and_revokes_without_showing_the_id(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    who = ("--telegram-id", str(TELEGRAM_ID))
    grant = ("roles", "grant", *who, "--role", "staff", "--region", "london", "--safeguarding")
    status, output = _cli(settings, capsys, *grant)
    assert status == 0
    pseudonym = load_secrets(settings.secrets_path, production=False).pseudonym(TELEGRAM_ID)
    granted, note = output.splitlines()
    assert granted == f"granted: staff in london with the safeguarding duty for {pseudonym[:12]}"
    # They never wrote to the bot: nothing of the role can reach them until they do.
    assert note.startswith("note: they have not written to the bot yet") and "/start" in note
    assert _cli(settings, capsys, *grant)[1].startswith("already held")
    assert _cli(settings, capsys, "roles", "grant", *who, "--role", "admin")[0] == 0

    status, listing = _cli(settings, capsys, "roles", "list")
    assert status == 0
    assert listing.splitlines() == [
        f"{pseudonym[:12]}  admin    -",
        f"{pseudonym[:12]}  staff    london              safeguarding",
    ]
    assert pseudonym not in listing  # only the first 12 characters

    revoke = ("roles", "revoke", *who, "--role", "staff", "--region", "london")
    assert _cli(settings, capsys, *revoke, "--safeguarding")[1].startswith("revoked: the safe")
    assert _cli(settings, capsys, *revoke)[1].startswith("revoked: staff in london")
    assert _cli(settings, capsys, *revoke)[1].startswith("not held")
    assert [a[:2] for a in _audit(settings)] == [("cli", "role.granted")] * 3 + [
        ("cli", "role.revoked")
    ] * 3
    assert {a[2] for a in _audit(settings)} == {pseudonym}
    stored = b"".join(p.read_bytes() for p in Path(settings.database_path).parent.glob("*.db*"))
    assert str(TELEGRAM_ID).encode() not in stored


def test_cli_creates_invites(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    create = ("invite", "create", "--role", "manager", "--region", "wales")
    status, output = _cli(settings, capsys, *create, "--bot-username", "YouSaidBot")
    assert status == 0
    code = _code_of(output.splitlines()[-1])
    monkeypatch.setenv("BOT_USERNAME", "YouSaidBot")
    assert _cli(settings, capsys, *create, "--expires-hours", "1")[0] == 0
    assert [a[:2] for a in _audit(settings)] == [("cli", "invite.created")] * 2
    secrets = load_secrets(settings.secrets_path, production=False)

    async def redeem() -> str:
        database = await Database.open(settings.database_path)
        try:
            return (await redeem_invite(database, secrets, code, "p-new", NOW)).status
        finally:
            await database.close()

    assert asyncio.run(redeem()) == "ok"


def test_cli_lists_and_revokes_invites_so_a_leaked_link_grants_nothing(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A link sent to the wrong person (it may carry the safeguarding duty) is revoked
    before anyone uses it: it then grants nothing, and the audit log says who revoked it."""
    create = ("invite", "create", "--role", "staff", "--region", "wales", "--safeguarding")
    status, output = _cli(settings, capsys, *create, "--bot-username", "YouSaidBot")
    assert status == 0
    leaked = _code_of(output.splitlines()[-1])
    _cli(
        settings,
        capsys,
        "invite",
        "create",
        "--role",
        "manager",
        "--region",
        "london",
        "--bot-username",
        "YouSaidBot",
    )
    status, listing = _cli(settings, capsys, "invite", "list")
    assert status == 0 and len(listing.splitlines()) == 2
    line = next(x for x in listing.splitlines() if "safeguarding" in x)
    assert "staff in wales with the safeguarding duty, expires" in line
    assert leaked not in listing  # the code itself is never stored, so never shown
    reference = line.split()[0]

    assert _cli(settings, capsys, "invite", "revoke", "--ref", reference) == (
        0,
        f"revoked: 1 invite ({reference})\n",
    )
    status, listing = _cli(settings, capsys, "invite", "list")
    assert len(listing.splitlines()) == 1 and "manager in london" in listing
    status, again = _cli(settings, capsys, "invite", "revoke", "--ref", reference)
    assert status == 2 and "no unused invite" in again
    assert ("cli", "invite.revoked", f"invite:{reference}") in _audit(settings)
    secrets = load_secrets(settings.secrets_path, production=False)
    later = SystemClock().now_ms() + 1_000

    async def redeem() -> str:
        database = await Database.open(settings.database_path)
        try:
            return (await redeem_invite(database, secrets, leaked, "p-new", later)).status
        finally:
            await database.close()

    assert asyncio.run(redeem()) == "expired"


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (("roles", "grant", "--telegram-id", "12", "--role", "boss"), "unknown role"),
        (("roles", "grant", "--telegram-id", "12", "--role", "staff"), "needs a region"),
        (("roles", "revoke", "--telegram-id", "12", "--role", "admin", "--region", "wales"), "not"),
        (("roles", "grant", "--telegram-id", "12", "--role", "staff", "--region", "x"), "region"),
        (("roles", "grant", "--telegram-id", "@ann", "--role", "admin"), "--telegram-id"),
        (("roles", "grant", "--telegram-id", "-5", "--role", "admin"), "--telegram-id"),
        (("invite", "create", "--role", "staff", "--region", "wales"), "BOT_USERNAME"),
        (
            ("invite", "create", "--role", "staff", "--region", "wales", "--expires-hours", "x"),
            "hours",
        ),
        (("invite", "create", "--role", "manager", "--region", "wales", "--safeguarding"), "staff"),
        (("invite", "revoke", "--ref", "Zz12"), "--ref"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    problem: str,
) -> None:
    monkeypatch.delenv("BOT_USERNAME", raising=False)
    status = run_staff(settings, _args(*argv))
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and problem in err
    assert not Path(settings.database_path).parent.exists()  # refused before touching files


async def test_a_used_invite_reopened_says_what_is_true_now(db: Database) -> None:
    """Its user opening it again is told they have its role; once the role has been taken
    away, only that the link was used (not that they still have it)."""
    link = await create_invite(db, SECRETS, "staff", "london", False, 72, "YouSaidBot", NOW, "cli")
    code = link.split("start=")[1]
    async with db.transaction() as conn:
        first = await redeem_start_payload(conn, SECRETS, "p-kim", code, NOW + 1)
        assert first.reply == "invite_accepted"
        again = await redeem_start_payload(conn, SECRETS, "p-kim", code, NOW + 2)
        assert again.reply == "invite_used_by_you"
        await StaffRoles(conn).revoke("p-kim", "staff", "london")
        revoked = await redeem_start_payload(conn, SECRETS, "p-kim", code, NOW + 3)
        assert revoked.reply == "invite_used"
