"""Whom a panel invites first. Places go first come, first served and a region's
invitations take minutes to go out, so the order is who gets a place: each panel walks
its region from its own starting point, round to where it began, not from the same
first pseudonym every time (before, the same few people were first for every panel).

The bot is built but not started: the organiser's transaction and the parts that follow
are run by hand, each its own transaction, as the scheduler would. Everyone here is
invented; pseudonyms look like real ones (32 hex digits), so a starting point can fall
anywhere among them."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import panels as panels_module
from bot.conversation import Actor
from bot.local_api import LocalBotApi
from bot.panels import INVITE_JOB
from bot.runtime import Runtime, build_runtime
from storage import panels as panels_storage
from storage.clock import ManualClock
from storage.panels import Panels
from storage.people import ConsentLedger, People
from storage.queues import Schedules
from storage.staff import StaffRoles
from tests.harness import settings_for

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY_MS = 86_400_000
BATCH = 5
ORGANISER = Actor(hashlib.sha256(b"invented organiser").hexdigest()[:32], 730000000, "en")


def invented(n: int) -> str:
    return hashlib.sha256(f"invented person {n}".encode()).hexdigest()[:32]


REGION = sorted(invented(n) for n in range(40))  # everyone in London, in pseudonym order


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(panels_module, "INVITE_BATCH", BATCH)


def starting_points(monkeypatch: pytest.MonkeyPatch, points: Iterator[str]) -> None:
    """New panels start at these points in turn, not at random ones: the tests' orders
    are then the same every run."""
    monkeypatch.setattr(panels_storage, "new_invite_start", lambda: next(points))


@asynccontextmanager
async def built_bot(api: LocalBotApi, tmp_path: Path, clock: ManualClock) -> AsyncIterator[Runtime]:
    """The bot as `run` builds it, over the test's database, never started."""
    runtime = await build_runtime(settings_for(api, tmp_path), clock=clock, poll_timeout=1)
    try:
        yield runtime
    finally:
        await runtime.db.close()


async def say_yes_to_panels(runtime: Runtime, people: list[str]) -> None:
    """`people` live in London and said yes to panel invitations."""
    now = runtime.clock.now_ms()
    async with runtime.db.transaction() as conn:
        for who in people:
            chat_id = 730000001 + REGION.index(who)
            await People(conn).touch(who, chat_id, "en", now)
            await People(conn).set_region(who, "london", now)
            await ConsentLedger(conn).record(who, "panel_invitations", True, "v1", now)


async def set_up_region(runtime: Runtime, people: list[str]) -> None:
    """`people` said yes to panel invitations in London; so did the organiser, London
    staff (never invited to their own panel)."""
    await say_yes_to_panels(runtime, people)
    now = runtime.clock.now_ms()
    async with runtime.db.transaction() as conn:
        who = ORGANISER.pseudonym
        await People(conn).touch(who, ORGANISER.chat_id, "en", now)
        await People(conn).set_region(who, "london", now)
        await ConsentLedger(conn).record(who, "panel_invitations", True, "v1", now)
        await StaffRoles(conn).grant(who, "staff", "london", False, "cli", now)


async def create_panel(runtime: Runtime, title: str = "Housing panel") -> None:
    """The organiser's transaction: the panel and the first part of its invitations."""
    now = runtime.clock.now_ms()
    values = {
        "region": "london",
        "title": title,
        "place": "Town hall",
        "capacity": "3",
        "starts_at": str(now + 7 * DAY_MS),
    }
    async with runtime.db.transaction() as conn:
        await runtime.panels.create_panel(conn, ORGANISER, values, now)


async def run_a_part(runtime: Runtime) -> bool:
    """The next part of the invitations due, as the scheduler runs it; False: none left."""
    now = runtime.clock.now_ms()
    async with runtime.db.transaction() as conn:
        schedules = Schedules(conn)
        parts = [job for job in await schedules.due(now, 1_000) if job.kind == INVITE_JOB]
        if not parts:
            return False
        await runtime.panels.on_invite_more(conn, parts[0], now)
        await schedules.mark_done(parts[0].id, now)
    return True


async def invited_in_order(runtime: Runtime) -> dict[int, list[str]]:
    """panel id -> its invitations, in the order they were made (and queued to go)."""
    async with runtime.db.read() as conn:
        rows = await conn.execute_fetchall(
            "SELECT panel_id, pseudonym FROM panel_invitations ORDER BY id"
        )
    order: dict[int, list[str]] = {}
    for panel_id, pseudonym in rows:
        order.setdefault(int(panel_id), []).append(str(pseudonym))
    return order


async def test_each_panel_starts_its_invitations_at_its_own_point(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two panels in one region invite different people first; over 30 panels, where a
    person comes in the order is spread out: nobody is in the first part every time, and
    everyone is in the first half for some panels and the second half for others."""
    clock = ManualClock(START)
    # spread as random points would be, but the same each run: n x the golden ratio, turned
    # round the 128-bit space (each point far from the one before)
    golden = 0x9E3779B97F4A7C15F39CC0605CEDC834
    starting_points(monkeypatch, (f"{n * golden % (1 << 128):032x}" for n in itertools.count(1)))
    async with built_bot(api, tmp_path, clock) as runtime:
        await set_up_region(runtime, REGION)
        for n in range(30):
            await create_panel(runtime, f"Panel {n}")
            while await run_a_part(runtime):
                pass
            clock.advance(60)
        orders = await invited_in_order(runtime)

    assert len(orders) == 30
    first, second = orders[1], orders[2]
    assert set(first[:BATCH]).isdisjoint(second[:BATCH])
    for order in orders.values():
        assert sorted(order) == REGION  # each once, the organiser never
        begins = REGION.index(order[0])  # the region's pseudonym order, turned round
        assert order == REGION[begins:] + REGION[:begins]

    first_parts = [set(order[:BATCH]) for order in orders.values()]
    assert set.intersection(*first_parts) == set()
    assert len({order[0] for order in orders.values()}) >= 15
    half = len(REGION) // 2
    for who in REGION:
        places = [order.index(who) for order in orders.values()]
        assert min(places) < half <= max(places), who


async def test_a_walk_that_wraps_round_invites_everyone_once_across_a_restart(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk goes from the panel's point to the end of the pseudonym order and round
    from the beginning. The parts resume from what is stored (the bot restarted after the
    organiser's transaction, and again once the walk has wrapped round): everyone invited
    exactly once, never the organiser, and the organiser told the whole count at once. A
    person who says yes meanwhile is invited if their turn is still to come."""
    clock = ManualClock(START)
    early, late = REGION[:2], REGION[2:]
    starting_points(monkeypatch, iter([REGION[20]]))  # half-way: it wraps round
    async with built_bot(api, tmp_path, clock) as runtime:
        await set_up_region(runtime, late)
        await create_panel(runtime)
    async with built_bot(api, tmp_path, clock) as runtime:  # a restart
        assert await run_a_part(runtime)
        (order,) = (await invited_in_order(runtime)).values()
        assert order[0] != late[0] and len(order) == 2 * BATCH
        await say_yes_to_panels(runtime, early)  # first in the region: still to come
        while REGION.index(order[-1]) > REGION.index(order[0]):  # until it wraps round
            assert await run_a_part(runtime)
            (order,) = (await invited_in_order(runtime)).values()
    async with built_bot(api, tmp_path, clock) as runtime:  # a restart, wrapped round
        while await run_a_part(runtime):
            pass
        (order,) = (await invited_in_order(runtime)).values()
        async with runtime.db.read() as conn:
            broadcasts = list(await conn.execute_fetchall("SELECT total FROM broadcasts"))
            counted = list(
                await conn.execute_fetchall(
                    "SELECT details ->> 'invited' FROM audit_log WHERE action = 'panel.created'"
                )
            )

    assert sorted(order) == REGION and len(set(order)) == len(order)
    begins = REGION.index(order[0])
    assert begins > 2  # its point is among the people there when it was made
    assert order == REGION[begins:] + REGION[:begins]
    assert [tuple(r) for r in counted] == [(str(len(late)),)]  # before the two said yes
    assert [tuple(r) for r in broadcasts] == [(len(REGION),)]


async def test_a_panel_made_before_the_starting_points_goes_on_in_the_plain_order(
    api: LocalBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A panel made before migration 0023 has '' for its point: its invitations, part-way
    through at the upgrade, go on in the plain pseudonym order they began in, across a
    restart, and reach everyone once (read from a new point, they would skip the rest)."""
    clock = ManualClock(START)
    starting_points(monkeypatch, iter([""]))  # as 0023 leaves an existing panel
    async with built_bot(api, tmp_path, clock) as runtime:
        await set_up_region(runtime, REGION)
        await create_panel(runtime)
        assert await run_a_part(runtime)
    async with built_bot(api, tmp_path, clock) as runtime:  # the upgrade's restart
        while await run_a_part(runtime):
            pass
        (order,) = (await invited_in_order(runtime)).values()
    assert order == REGION


async def test_a_part_is_one_statement_through_the_indexes(
    api: LocalBotApi, tmp_path: Path
) -> None:
    """However far the walk has gone, a part reads the region's people from where it left
    off through people_by_region (both halves of the walk, each a bounded range), and
    finds where that was through the invitations' index: no table or index is scanned."""
    clock = ManualClock(START)
    async with built_bot(api, tmp_path, clock) as runtime:
        await set_up_region(runtime, REGION)
        await create_panel(runtime)
        assert await run_a_part(runtime)
        statements: list[str] = []
        async with runtime.db.transaction() as conn:
            await conn.set_trace_callback(statements.append)
            panel = await Panels(conn).get(1)
            assert panel is not None
            found = await runtime.panels._to_invite(conn, panel, BATCH)
            await conn.set_trace_callback(None)
            assert len(found) == BATCH
            (chosen,) = [s for s in statements if "FROM people p" in s]
            plan = [str(r[3]) for r in await conn.execute_fetchall("EXPLAIN QUERY PLAN " + chosen)]

    people = [d for d in plan if d.startswith("SEARCH p ")]
    assert len(people) == 2 and all("INDEX people_by_region" in d for d in people)
    assert "pseudonym>? AND pseudonym<?" in people[1]  # up to the panel's point
    assert [d for d in plan if d.startswith("SCAN") and "subquery" not in d] == []
    assert all("INDEX" in d for d in plan if "panel_invitations" in d)
