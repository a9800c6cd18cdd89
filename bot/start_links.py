"""What a /start link carries: an enrolment code (binds a participant to a region) or a
one-time staff invite (grants a role). Redeemed inside the update's own transaction, so a
redelivered /start never redeems twice and a rolled-back one never uses a code up."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiosqlite

from bot.access import access_of, is_invite_code, redeem_invite_in
from bot.enrolment import REGION_NAMES, normalise_code, redeem_code
from bot.secrets_file import Secrets
from state_machines.events import Started
from storage.people import People

REGION_KNOWN = "region_known"  # the onboarding fact that skips the region question


# A grant for every region (an admin), named in the welcome.
EVERY_REGION = "every region"


@dataclass(frozen=True)
class StartOutcome:
    """Either a dialogue event to step, or (for staff invites) a message key to reply with."""

    event: Started | None = None
    reply: str | None = None
    params: dict[str, str] = field(default_factory=dict)


async def redeem_start_payload(
    conn: aiosqlite.Connection, secrets: Secrets, pseudonym: str, payload: str, now: int
) -> StartOutcome:
    """Redeem the payload of `/start <payload>`; the person's row must already exist."""
    if is_invite_code(payload):
        redemption = await redeem_invite_in(conn, secrets, payload, pseudonym, now)
        if redemption.grant is not None:
            region = redemption.grant.region
            # English names (msgids): the conversation service says them in the reader's
            # language, as it does the role.
            where = REGION_NAMES.get(region, region) if region else EVERY_REGION
            accepted = (
                "invite_accepted_with_duty" if redemption.grant.safeguarding else "invite_accepted"
            )
            return StartOutcome(
                reply=accepted, params={"role": redemption.grant.role, "region": where}
            )
        status = redemption.status
        if status == "used_by_you" and not (await access_of(conn, pseudonym)).roles():
            status = "used"  # theirs once, but the role has been taken away since
        if status in ("used", "used_by_you", "expired"):
            return StartOutcome(reply=f"invite_{status}")
    code = normalise_code(payload)
    person = await People(conn).get(pseudonym)
    if code is not None and person is not None and person.region is not None:
        # Already placed: a poster's code must not move them (nor be used up).
        return StartOutcome(Started(None))
    if code is not None:
        enrolment = await redeem_code(conn, secrets, code, now)
        if enrolment.status == "ok" and enrolment.region is not None:
            await People(conn).set_region(pseudonym, enrolment.region, now)
            return StartOutcome(Started(payload, True, frozenset({REGION_KNOWN})))
    return StartOutcome(Started(payload, False))
