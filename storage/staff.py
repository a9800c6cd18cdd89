"""Staff roles, the append-only audit log and one-time staff invites.

People are known by pseudonym only; invite codes arrive already hashed. Checking who may do
what, and what a valid grant is, belongs to bot/access.py; the tables' CHECKs are the backstop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import aiosqlite

from storage.database import Row

ROLES: tuple[str, ...] = ("staff", "manager", "admin")

InviteStatus = Literal["ok", "used", "used_by_you", "expired", "unknown"]


@dataclass(frozen=True)
class RoleGrant:
    pseudonym: str
    role: str
    region: str | None  # None only for admin
    safeguarding: bool
    granted_at: int
    granted_by: str


@dataclass(frozen=True)
class AuditEntry:
    id: int
    actor: str
    action: str
    target: str
    details: dict[str, str]
    recorded_at: int


@dataclass(frozen=True)
class InviteRedemption:
    status: InviteStatus
    grant: RoleGrant | None  # the role the invite carries, when status is "ok"


def _grant(row: Row) -> RoleGrant:
    return RoleGrant(
        row["pseudonym"],
        row["role"],
        row["region"],
        bool(row["safeguarding"]),
        row["granted_at"],
        row["granted_by"],
    )


_GRANT_COLUMNS = "pseudonym, role, region, safeguarding, granted_at, granted_by"


class StaffRoles:
    """Role grants. No row means participant."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def grant(
        self,
        pseudonym: str,
        role: str,
        region: str | None,
        safeguarding: bool,
        granted_by: str,
        now: int,
    ) -> bool:
        """Grant a role; True when something changed (a new grant, or the duty added).

        Granting never removes the safeguarding duty (only `revoke_safeguarding` does), so
        a routine re-grant cannot leave a region with no one to alert."""
        async with self._conn.execute(
            "INSERT INTO staff_roles (pseudonym, role, region, safeguarding, granted_at, "
            "granted_by) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (pseudonym, role, COALESCE(region, '')) DO UPDATE SET "
            "safeguarding = 1, granted_at = excluded.granted_at, "
            "granted_by = excluded.granted_by "
            "WHERE staff_roles.safeguarding = 0 AND excluded.safeguarding = 1 RETURNING id",
            (pseudonym, role, region, int(safeguarding), now, granted_by),
        ) as cursor:
            return await cursor.fetchone() is not None

    async def revoke(self, pseudonym: str, role: str, region: str | None) -> bool:
        """Remove a grant (and any duty that came with it); True when there was one."""
        cursor = await self._conn.execute(
            "DELETE FROM staff_roles WHERE pseudonym = ? AND role = ? "
            "AND COALESCE(region, '') = COALESCE(?, '')",
            (pseudonym, role, region),
        )
        return cursor.rowcount > 0

    async def revoke_safeguarding(self, pseudonym: str, region: str) -> bool:
        """Take the safeguarding duty away but keep the staff role; True when it was held."""
        cursor = await self._conn.execute(
            "UPDATE staff_roles SET safeguarding = 0 WHERE pseudonym = ? AND role = 'staff' "
            "AND region = ? AND safeguarding = 1",
            (pseudonym, region),
        )
        return cursor.rowcount > 0

    async def of(self, pseudonym: str) -> list[RoleGrant]:
        async with self._conn.execute(
            f"SELECT {_GRANT_COLUMNS} FROM staff_roles WHERE pseudonym = ? ORDER BY role, region",
            (pseudonym,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_grant(r) for r in rows]

    async def all(self) -> list[RoleGrant]:
        async with self._conn.execute(
            f"SELECT {_GRANT_COLUMNS} FROM staff_roles ORDER BY role, region, pseudonym"
        ) as cursor:
            rows = await cursor.fetchall()
        return [_grant(r) for r in rows]

    async def holders(self, role: str, region: str | None) -> list[str]:
        """Pseudonyms holding exactly this role in this region (None: admins)."""
        async with self._conn.execute(
            "SELECT pseudonym FROM staff_roles WHERE role = ? "
            "AND COALESCE(region, '') = COALESCE(?, '') ORDER BY pseudonym",
            (role, region),
        ) as cursor:
            rows = await cursor.fetchall()
        return [str(r[0]) for r in rows]

    async def safeguarding_for(self, region: str) -> list[str]:
        """Pseudonyms of the staff holding the safeguarding duty for a region."""
        async with self._conn.execute(
            "SELECT pseudonym FROM staff_roles WHERE role = 'staff' AND region = ? "
            "AND safeguarding = 1 ORDER BY pseudonym",
            (region,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [str(r[0]) for r in rows]


class AuditLog:
    """The append-only record of privileged actions (the table refuses UPDATE and DELETE)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def record(
        self,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, str] | None,
        now: int,
    ) -> None:
        await self._conn.execute(
            "INSERT INTO audit_log (actor, action, target, details, recorded_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (actor, action, target, json.dumps(dict(details or {}), sort_keys=True), now),
        )

    async def latest_details(self, action: str, target: str) -> dict[str, str] | None:
        """The details of the latest entry of `action` on `target`, if any."""
        async with self._conn.execute(
            "SELECT details FROM audit_log WHERE target = ? AND action = ? "
            "ORDER BY id DESC LIMIT 1",
            (target, action),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        details: dict[str, str] = json.loads(row[0])
        return details

    async def entries(self, limit: int = 100) -> list[AuditEntry]:
        """The latest entries, newest first."""
        async with self._conn.execute(
            "SELECT id, actor, action, target, details, recorded_at FROM audit_log "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]


@dataclass(frozen=True)
class OpenInvite:
    """An invite still waiting to be used (its code is never stored, only its hash)."""

    code_hash: str
    role: str
    region: str | None
    safeguarding: bool
    expires_at: int


class StaffInvites:
    """One-time staff invites, known only by the keyed hash of their code."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def add(
        self,
        code_hash: str,
        role: str,
        region: str | None,
        safeguarding: bool,
        expires_at: int,
        now: int,
        *,
        created_by: str,
    ) -> None:
        await self._conn.execute(
            "INSERT INTO staff_invites (code_hash, role, region, safeguarding, created_by, "
            "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (code_hash, role, region, int(safeguarding), created_by, now, expires_at),
        )

    async def redeem(self, code_hash: str, pseudonym: str, now: int) -> InviteRedemption:
        """Use an invite. One UPDATE claims it, so two people racing for one link cannot
        both win; when it claims nothing, a second look says why."""
        async with self._conn.execute(
            "UPDATE staff_invites SET used_at = ?, used_by = ? "
            "WHERE code_hash = ? AND used_at IS NULL AND expires_at > ? "
            "RETURNING role, region, safeguarding, created_by",
            (now, pseudonym, code_hash, now),
        ) as cursor:
            row = await cursor.fetchone()
        if row is not None:
            grant = RoleGrant(
                pseudonym,
                row["role"],
                row["region"],
                bool(row["safeguarding"]),
                now,
                row["created_by"],
            )
            return InviteRedemption("ok", grant)
        return InviteRedemption(await self._why_not(code_hash, pseudonym), None)

    async def open_invites(self, now: int) -> list[OpenInvite]:
        """Invites not used and not expired, soonest to expire first."""
        async with self._conn.execute(
            "SELECT code_hash, role, region, safeguarding, expires_at FROM staff_invites "
            "WHERE used_at IS NULL AND expires_at > ? ORDER BY expires_at, code_hash",
            (now,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [OpenInvite(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

    async def expire(self, reference: str, now: int) -> list[str]:
        """Revoke the open invites whose hash starts with `reference` (the start shown by
        `invite list` and the audit log) by making them expire now; their hashes."""
        async with self._conn.execute(
            "UPDATE staff_invites SET expires_at = MAX(created_at + 1, ?) "
            "WHERE substr(code_hash, 1, ?) = ? AND used_at IS NULL AND expires_at > ? "
            "RETURNING code_hash",
            (now, len(reference), reference, now),
        ) as cursor:
            rows = await cursor.fetchall()
        return [str(r[0]) for r in rows]

    async def _why_not(self, code_hash: str, pseudonym: str) -> InviteStatus:
        async with self._conn.execute(
            "SELECT used_at, used_by FROM staff_invites WHERE code_hash = ?", (code_hash,)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return "unknown"
        if row["used_at"] is None:
            return "expired"
        # The one who used it, opening the link again (from the same message, days on).
        return "used_by_you" if row["used_by"] == pseudonym else "used"
