"""Who a "you said, we did" update is for, part by part (storage/updates.py)."""

from __future__ import annotations

from pathlib import Path

from storage.answers import Answers
from storage.checkins import Checkins
from storage.database import Database
from storage.people import ConsentLedger, People
from storage.updates import Updates

DAY = 86_400_000


async def test_raisers_go_in_pseudonym_order_from_where_the_last_part_ended(
    tmp_path: Path,
) -> None:
    db = await Database.open(str(tmp_path / "updates.db"))
    await db.migrate()
    async with db.transaction() as conn:
        people, ledger = People(conn), ConsentLedger(conn)
        # (pseudonym, when they raised housing, latest decision on updates)
        raised = [("p-a", 10, True), ("p-b", 20, True), ("p-c", 30, False), ("p-d", 40, True)]
        raised += [("p-e", 50, True), ("p-f", 99, True)]  # p-f: after the update was published
        for n, (pseudonym, day, wants) in enumerate(raised):
            await people.touch(pseudonym, 760000001 + n, "en", 0)
            await people.set_region(pseudonym, "london", 0)
            await ledger.record(pseudonym, "updates", wants, "v1", 0)
            answer = await Answers(conn).add(pseudonym, "feedback", "improve", b"-", day * DAY)
            await Checkins(conn).tag_answer(answer, ["housing"])
        updates = Updates(conn)
        update = await updates.publish("london", "changed", ["housing"], "-", None, "p-s", 60 * DAY)

        def names(found: list[tuple[str, int, str]]) -> list[str]:
            return [pseudonym for pseudonym, _, _ in found]

        everyone = await updates.raisers("london", ["housing"], 0, 60 * DAY)
        assert names(everyone) == ["p-a", "p-b", "p-d", "p-e"]
        assert names(await updates.raisers("london", ["housing"], 15 * DAY, 60 * DAY)) == [
            "p-b",
            "p-d",
            "p-e",
        ]
        first = await updates.raisers("london", ["housing"], 0, 60 * DAY, update.id, 2)
        assert names(first) == ["p-a", "p-b"]
        tokens = await updates.deliver_all(update.id, names(first))
        assert len(set(tokens)) == 2 and all(len(t) == 16 for t in tokens)
        rest = await updates.raisers("london", ["housing"], 0, 60 * DAY, update.id, 2)
        assert names(rest) == ["p-d", "p-e"]
        await updates.deliver_all(update.id, names(rest))
        assert await updates.raisers("london", ["housing"], 0, 60 * DAY, update.id, 2) == []
        assert await updates.raisers("wales", ["housing"], 0, 60 * DAY) == []
        assert await updates.raisers("london", ["work_training"], 0, 60 * DAY) == []
    await db.close()
