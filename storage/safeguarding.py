"""Safeguarding requests: that a person was signposted, and whether they asked for contact.
No words of theirs are kept here."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import aiosqlite

from storage.database import Row


@dataclass(frozen=True)
class SafeguardingRequest:
    id: int
    token: str
    pseudonym: str
    region: str | None
    category: str
    status: str
    created_at: int
    answered_at: int | None = None  # when the duty staff first wrote to the person
    number_shared_at: int | None = None  # when the person passed staff a phone number


_COLUMNS = (
    "id, token, pseudonym, region, category, status, created_at, answered_at, number_shared_at"
)


def _request(row: Row) -> SafeguardingRequest:
    return SafeguardingRequest(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8]
    )


class SafeguardingRequests:
    """The safeguarding_requests table."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def set_region(self, request_id: int, region: str) -> None:
        """The area of a request opened before the person's area was known."""
        await self._conn.execute(
            "UPDATE safeguarding_requests SET region = ? WHERE id = ? AND region IS NULL",
            (region, request_id),
        )

    async def open(self, pseudonym: str, region: str | None, category: str, now: int) -> str:
        """Record that the person was signposted and asked; returns the request's token."""
        token = secrets.token_hex(8)
        await self._conn.execute(
            "INSERT INTO safeguarding_requests (token, pseudonym, region, category, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (token, pseudonym, region, category, now),
        )
        return token

    async def by_token(self, token: str) -> SafeguardingRequest | None:
        async with self._conn.execute(
            f"SELECT {_COLUMNS} FROM safeguarding_requests WHERE token = ?", (token,)
        ) as cursor:
            row = await cursor.fetchone()
        return _request(row) if row else None

    async def mark_answered(self, request_id: int, now: int) -> None:
        """The duty staff wrote to the person (the first time counts)."""
        await self._conn.execute(
            "UPDATE safeguarding_requests SET answered_at = ? WHERE id = ? AND answered_at IS NULL",
            (now, request_id),
        )

    async def mark_number_shared(self, request_id: int, now: int) -> None:
        """The person passed the duty staff a phone number (the first time counts)."""
        await self._conn.execute(
            "UPDATE safeguarding_requests SET number_shared_at = ? "
            "WHERE id = ? AND number_shared_at IS NULL",
            (now, request_id),
        )

    async def answered_since(self, pseudonym: str, since: int) -> bool:
        """Whether the duty staff wrote to the person, on any of their requests, since
        `since`: someone written to about a later request has been written to."""
        async with self._conn.execute(
            "SELECT 1 FROM safeguarding_requests WHERE pseudonym = ? AND answered_at >= ? LIMIT 1",
            (pseudonym, since),
        ) as cursor:
            return await cursor.fetchone() is not None

    async def decide(self, request_id: int, status: str, now: int) -> bool:
        """Record the person's answer (or the outcome of alerting); only once, from 'asked'."""
        cursor = await self._conn.execute(
            "UPDATE safeguarding_requests SET status = ?, decided_at = ? "
            "WHERE id = ? AND status = 'asked'",
            (status, now, request_id),
        )
        return cursor.rowcount > 0

    async def mark_alert(self, outbox_id: int, request_id: int) -> None:
        """Remember that this outbox row is an alert for the request."""
        await self._conn.execute(
            "UPDATE outbox SET safeguarding_request = ? WHERE id = ?", (request_id, outbox_id)
        )

    async def alert_delivery(self, request_id: int) -> tuple[int, int]:
        """(alerts sent, alerts still waiting to be sent) for a request."""
        async with self._conn.execute(
            "SELECT COALESCE(SUM(status = 'sent'), 0), COALESCE(SUM(status = 'pending'), 0) "
            "FROM outbox WHERE safeguarding_request = ?",
            (request_id,),
        ) as cursor:
            row = await cursor.fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def get(self, request_id: int) -> SafeguardingRequest | None:
        async with self._conn.execute(
            f"SELECT {_COLUMNS} FROM safeguarding_requests WHERE id = ?", (request_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return _request(row) if row else None

    async def mark_unreached(self, request_id: int, now: int) -> bool:
        """No alert for an 'alerted' request reached anyone (blocked, refused)."""
        cursor = await self._conn.execute(
            "UPDATE safeguarding_requests SET status = 'no_one_reached', decided_at = ? "
            "WHERE id = ? AND status = 'alerted'",
            (now, request_id),
        )
        return cursor.rowcount > 0

    async def latest_alerted(self, pseudonym: str, since: int) -> SafeguardingRequest | None:
        """The person's most recent request that reached staff, if it is recent."""
        return await self.latest_open(pseudonym, since, statuses=("alerted",))

    async def waiting_in(self, region: str, since: int) -> list[SafeguardingRequest]:
        """Requests for contact in the region since `since` that no duty holder has written
        to yet (about them or a later request of the person's): the latest per person,
        whether its alert reached someone ('alerted') or no one ('no_one_reached')."""
        async with self._conn.execute(
            f"SELECT {_COLUMNS} FROM safeguarding_requests AS r WHERE region = ? "
            "AND status IN ('alerted', 'no_one_reached') AND created_at >= ? "
            "AND NOT EXISTS (SELECT 1 FROM safeguarding_requests AS later "
            "WHERE later.pseudonym = r.pseudonym AND later.answered_at >= r.created_at) "
            "ORDER BY id",
            (region, since),
        ) as cursor:
            rows = await cursor.fetchall()
        latest = {request.pseudonym: request for request in map(_request, rows)}
        return sorted(latest.values(), key=lambda request: request.id)

    async def reconsider(self, request_id: int, now: int) -> bool:
        """A yes to a question answered no, or asked long ago: open again, and timed from
        now (the alert's "no one has written for N hours", the week a number is passed on
        for, the re-raises), not from when it was first asked."""
        cursor = await self._conn.execute(
            "UPDATE safeguarding_requests SET status = 'asked', decided_at = NULL, "
            "created_at = ? WHERE id = ? AND status IN ('asked', 'declined')",
            (now, request_id),
        )
        return cursor.rowcount > 0

    async def reopen(self, request_id: int, now: int) -> bool:
        """A request no alert reached has reached someone given the duty since."""
        cursor = await self._conn.execute(
            "UPDATE safeguarding_requests SET status = 'alerted', decided_at = ? "
            "WHERE id = ? AND status = 'no_one_reached'",
            (now, request_id),
        )
        return cursor.rowcount > 0

    async def said_yes_before(self, pseudonym: str) -> bool:
        """Whether the person ever said yes to contact (so was shown "Share my number")."""
        async with self._conn.execute(
            "SELECT 1 FROM safeguarding_requests WHERE pseudonym = ? "
            "AND status IN ('alerted', 'no_one_reached') LIMIT 1",
            (pseudonym,),
        ) as cursor:
            return await cursor.fetchone() is not None

    async def latest_open(
        self, pseudonym: str, since: int, statuses: tuple[str, ...] = ("asked", "alerted")
    ) -> SafeguardingRequest | None:
        """The person's latest request since `since` whose contact question is still
        waiting for an answer ('asked') or whose alert went to staff ('alerted')."""
        marks = ", ".join("?" for _ in statuses)
        async with self._conn.execute(
            f"SELECT {_COLUMNS} FROM safeguarding_requests WHERE pseudonym = ? "
            f"AND status IN ({marks}) AND created_at >= ? ORDER BY id DESC LIMIT 1",
            (pseudonym, *statuses, since),
        ) as cursor:
            row = await cursor.fetchone()
        return _request(row) if row else None

    async def latest_answered(self, pseudonym: str, since: int) -> SafeguardingRequest | None:
        """The person's latest request the duty staff wrote to since `since`."""
        async with self._conn.execute(
            f"SELECT {_COLUMNS} FROM safeguarding_requests WHERE pseudonym = ? "
            "AND answered_at >= ? ORDER BY answered_at DESC, id DESC LIMIT 1",
            (pseudonym, since),
        ) as cursor:
            row = await cursor.fetchone()
        return _request(row) if row else None

    async def erase_person(self, pseudonym: str) -> int:
        cursor = await self._conn.execute(
            "DELETE FROM safeguarding_requests WHERE pseudonym = ?", (pseudonym,)
        )
        return cursor.rowcount
