"""Who may do what: roles per region, staff invites, and the audit entry for each change.

Roles: participant (no grant), staff, manager, admin. Staff and managers act for the regions
they are granted; admins for all. The safeguarding duty is an assignment (who is told about
a risk), not a permission, so only staff who were given it hold it: not managers or admins.
"""

from __future__ import annotations

import re
import secrets as random_source
from dataclasses import dataclass

import aiosqlite

from bot.secrets_file import Secrets
from bot.settings import BOT_USERNAME_SHAPE
from state_machines.definition import REGION_SLUGS
from storage.database import Database
from storage.queues import Schedules
from storage.staff import ROLES, AuditLog, InviteRedemption, RoleGrant, StaffInvites, StaffRoles

# Lower-case letters and digits without 0/o, 1/l/i: readable aloud and when copied by hand.
# 15 of 31 characters is about 74 bits, far beyond guessing within an invite's life.
INVITE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
INVITE_PREFIX = "s"  # tells a staff invite apart from other /start payloads
_INVITE_LENGTH = 15
_INVITE_CODE = re.compile(f"^{INVITE_PREFIX}[{INVITE_ALPHABET}]{{{_INVITE_LENGTH}}}$")
MAX_INVITE_HOURS = 24 * 30
# Someone given the safeguarding duty is sent, at once, every recent request for contact in
# the region that no one has written to (bot/safety.py runs the job): otherwise a request
# made while nobody held the duty would wait for a re-raise, or for ever.
DUTY_HANDOVER_JOB = "safety_handover"


@dataclass(frozen=True)
class Access:
    """The grants of one person; no grants means a participant."""

    pseudonym: str
    grants: tuple[RoleGrant, ...] = ()

    @property
    def is_admin(self) -> bool:
        return any(g.role == "admin" for g in self.grants)

    @property
    def is_privileged(self) -> bool:
        """Any grant at all (staff, manager or admin somewhere)."""
        return bool(self.grants)

    def is_staff_in(self, region: str) -> bool:
        """May act as staff for the region: staff or manager of it, or an admin."""
        return self.is_admin or any(
            g.region == region and g.role in ("staff", "manager") for g in self.grants
        )

    def is_manager_in(self, region: str) -> bool:
        """May manage the region: its manager, or an admin."""
        return self.is_admin or any(g.region == region and g.role == "manager" for g in self.grants)

    def staff_regions(self) -> frozenset[str]:
        """The regions `is_staff_in` allows (every region for an admin)."""
        if self.is_admin:
            return frozenset(REGION_SLUGS)
        return frozenset(g.region for g in self.grants if g.region is not None)

    def manager_regions(self) -> frozenset[str]:
        """The regions `is_manager_in` allows (every region for an admin)."""
        if self.is_admin:
            return frozenset(REGION_SLUGS)
        return frozenset(g.region for g in self.grants if g.role == "manager" and g.region)

    def roles(self) -> frozenset[str]:
        """The roles a dialogue command may require: staff (of any region, which managers
        and admins also are), manager, admin."""
        roles = {g.role for g in self.grants}
        if roles & {"staff", "manager", "admin"}:
            roles.add("staff")
        if "admin" in roles:
            roles.add("manager")
        return frozenset(roles)

    def has_safeguarding_duty(self, region: str) -> bool:
        return any(g.role == "staff" and g.region == region and g.safeguarding for g in self.grants)


async def access_of(conn: aiosqlite.Connection, pseudonym: str) -> Access:
    """Load what a person may do."""
    return Access(pseudonym, tuple(await StaffRoles(conn).of(pseudonym)))


def check_grant(role: str, region: str | None, safeguarding: bool) -> None:
    """Raise ValueError, in plain words, unless this is a grant that can exist."""
    if role not in ROLES:
        raise ValueError(f"unknown role '{role}'; use one of {', '.join(ROLES)}")
    if role == "admin":
        if region is not None:
            raise ValueError("admins are not tied to a region; leave out the region")
    elif region is None:
        who = "a staff member" if role == "staff" else "a manager"
        raise ValueError(f"{who} needs a region: one of {', '.join(REGION_SLUGS)}")
    elif region not in REGION_SLUGS:
        raise ValueError(f"unknown region '{region}'; use one of {', '.join(REGION_SLUGS)}")
    if safeguarding and role != "staff":
        raise ValueError("only staff can hold the safeguarding duty")


def grant_details(role: str, region: str | None, safeguarding: bool) -> dict[str, str]:
    """What an audit entry says about a grant."""
    details = {"role": role, "safeguarding": "yes" if safeguarding else "no"}
    if region is not None:
        details["region"] = region
    return details


def invite_code_hash(secrets: Secrets, code: str) -> str:
    """The keyed hash an invite is stored under: the code itself is never stored."""
    return secrets.keyed_hash("staff-invite", code)


def new_invite_code() -> str:
    """A fresh code; fits a /start payload (at most 64 of A-Z, a-z, 0-9, _ and -)."""
    return INVITE_PREFIX + "".join(
        random_source.choice(INVITE_ALPHABET) for _ in range(_INVITE_LENGTH)
    )


def is_invite_code(payload: str) -> bool:
    """Whether a /start payload has the shape of a staff invite code."""
    return _INVITE_CODE.match(payload) is not None


def invite_target(code_hash: str) -> str:
    # Enough of the hash to link "created" to "redeemed" in the audit log, nothing usable.
    return f"invite:{code_hash[:12]}"


async def redeem_invite(
    db: Database, secrets: Secrets, code: str, pseudonym: str, now: int
) -> InviteRedemption:
    """Use an invite: claim it, grant its role and audit it, all in one transaction."""
    async with db.transaction() as conn:
        return await redeem_invite_in(conn, secrets, code, pseudonym, now)


async def redeem_invite_in(
    conn: aiosqlite.Connection, secrets: Secrets, code: str, pseudonym: str, now: int
) -> InviteRedemption:
    """`redeem_invite` inside the caller's transaction (e.g. with the update's inbox mark)."""
    if not is_invite_code(code):
        return InviteRedemption("unknown", None)
    code_hash = invite_code_hash(secrets, code)
    redemption = await StaffInvites(conn).redeem(code_hash, pseudonym, now)
    grant = redemption.grant
    if grant is None:
        return redemption
    if grant.role == "admin" and await StaffRoles(conn).holders("admin", None):
        # A first admin's invite, made while there was none; someone is admin since (a
        # second such link, or `roles grant`): it gives nothing now.
        return InviteRedemption("expired", None)
    changed = await StaffRoles(conn).grant(
        pseudonym, grant.role, grant.region, grant.safeguarding, grant.granted_by, now
    )
    if changed and grant.safeguarding and grant.region is not None:
        await hand_over_waiting_requests(conn, pseudonym, grant.region, now)
    await AuditLog(conn).record(
        pseudonym,
        "invite.redeemed",
        invite_target(code_hash),
        grant_details(grant.role, grant.region, grant.safeguarding),
        now,
    )
    return redemption


async def hand_over_waiting_requests(
    conn: aiosqlite.Connection, pseudonym: str, region: str, now: int
) -> None:
    """Schedule the new duty holder's handover (see DUTY_HANDOVER_JOB), due now."""
    await Schedules(conn).add(
        DUTY_HANDOVER_JOB,
        f"{DUTY_HANDOVER_JOB}:{pseudonym}:{region}:{now}",
        now,
        {"holder": pseudonym, "region": region},
        now,
    )


def _check_invite(expires_hours: int, bot_username: str) -> str:
    """Check the invite's life and the bot's username; returns the username without '@'."""
    if not 1 <= expires_hours <= MAX_INVITE_HOURS:
        raise ValueError(f"an invite lasts from 1 to {MAX_INVITE_HOURS} hours")
    username = bot_username.removeprefix("@")
    if not BOT_USERNAME_SHAPE.match(username):
        raise ValueError(f"'{bot_username}' is not a Telegram bot username")
    return username


async def create_invite(
    db: Database,
    secrets: Secrets,
    role: str,
    region: str | None,
    safeguarding: bool,
    expires_hours: int,
    bot_username: str,
    now: int,
    actor: str,
) -> str:
    """Make a one-time invite and return its t.me link (shown once, never stored).

    Admin: only the first one, while there is none, and for an hour at most. Otherwise a
    leaked link would give full access; admins are granted with `roles grant`. The first
    admin has no other way in: `roles grant` needs their Telegram id, which Telegram does
    not show them."""
    check_grant(role, region, safeguarding)
    username = _check_invite(expires_hours, bot_username)
    code = new_invite_code()
    code_hash = invite_code_hash(secrets, code)
    expires_at = now + expires_hours * 3_600_000
    async with db.transaction() as conn:
        if role == "admin":
            if await StaffRoles(conn).holders("admin", None):
                raise ValueError(
                    "admin is granted with `roles grant`, never by an invite link (only the "
                    "first admin is, while there is none)"
                )
            if expires_hours > 1:
                raise ValueError("the first admin's invite lasts 1 hour at most")
        await StaffInvites(conn).add(
            code_hash, role, region, safeguarding, expires_at, now, created_by=actor
        )
        details = grant_details(role, region, safeguarding) | {"expires_at": str(expires_at)}
        await AuditLog(conn).record(actor, "invite.created", invite_target(code_hash), details, now)
    return f"https://t.me/{username}?start={code}"


async def grant_role(
    db: Database,
    pseudonym: str,
    role: str,
    region: str | None,
    safeguarding: bool,
    actor: str,
    now: int,
) -> bool:
    """Grant a role and audit it in one transaction; True when something changed."""
    check_grant(role, region, safeguarding)
    async with db.transaction() as conn:
        changed = await StaffRoles(conn).grant(pseudonym, role, region, safeguarding, actor, now)
        if changed and safeguarding and region is not None:
            await hand_over_waiting_requests(conn, pseudonym, region, now)
        details = grant_details(role, region, safeguarding)
        details["result"] = "granted" if changed else "already held"
        await AuditLog(conn).record(actor, "role.granted", pseudonym, details, now)
    return changed


async def revoke_role(
    db: Database,
    pseudonym: str,
    role: str,
    region: str | None,
    safeguarding_only: bool,
    actor: str,
    now: int,
) -> bool:
    """Revoke a role (or, with safeguarding_only, just a staff member's safeguarding duty)
    and audit it in one transaction; True when something was revoked."""
    check_grant(role, region, safeguarding_only)
    async with db.transaction() as conn:
        roles = StaffRoles(conn)
        if safeguarding_only and region is not None:
            revoked = await roles.revoke_safeguarding(pseudonym, region)
        else:
            revoked = await roles.revoke(pseudonym, role, region)
        details = grant_details(role, region, safeguarding_only)
        details["result"] = "revoked" if revoked else "not held"
        await AuditLog(conn).record(actor, "role.revoked", pseudonym, details, now)
    return revoked
