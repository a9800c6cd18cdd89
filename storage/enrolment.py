"""Enrolment codes: single-use codes that bind a new person to a region. Only keyed hashes of
the codes are stored; the hashing is done by the application, which holds the key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import aiosqlite

RedemptionStatus = Literal["ok", "used", "expired", "unknown"]


@dataclass(frozen=True)
class Redemption:
    status: RedemptionStatus
    region: str | None  # set only when status is "ok"


@dataclass(frozen=True)
class BatchSummary:
    batch: str
    region: str
    total: int
    used: int
    expired: int  # not used and past its expiry
    unused: int  # still redeemable


class EnrolmentCodes:
    """The enrolment_codes table."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def add(self, code_hash: str, region: str, batch: str, expires_at: int, now: int) -> None:
        """Store the hash of a new code for a region (an existing hash raises IntegrityError)."""
        await self._conn.execute(
            "INSERT INTO enrolment_codes (code_hash, region, batch, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (code_hash, region, batch, now, expires_at),
        )

    async def redeem(self, code_hash: str, now: int) -> Redemption:
        """Use a code once: its region when it was unused and in date, else why not."""
        # Check and mark in one statement, so two people racing for a code cannot both win.
        # The day only: an exact time could be matched to a person's own timestamps.
        day = now - now % 86_400_000
        async with self._conn.execute(
            "UPDATE enrolment_codes SET used_at = ? "
            "WHERE code_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING region",
            (day, code_hash, now),
        ) as cursor:
            row = await cursor.fetchone()
        if row is not None:
            return Redemption("ok", str(row[0]))
        return Redemption(await self._why_not(code_hash), None)

    async def _why_not(self, code_hash: str) -> RedemptionStatus:
        """Classify a code that could not be redeemed."""
        async with self._conn.execute(
            "SELECT used_at FROM enrolment_codes WHERE code_hash = ?", (code_hash,)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return "unknown"
        return "used" if row[0] is not None else "expired"

    async def batch_summary(self, batch: str, now: int) -> BatchSummary | None:
        """How many codes of a batch were used, expired unused, or are still open."""
        async with self._conn.execute(
            "SELECT MIN(region), COUNT(*), "
            "COUNT(used_at), "
            "SUM(used_at IS NULL AND expires_at <= ?), "
            "SUM(used_at IS NULL AND expires_at > ?) "
            "FROM enrolment_codes WHERE batch = ?",
            (now, now, batch),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None or row[1] == 0:
            return None
        return BatchSummary(batch, str(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]))
