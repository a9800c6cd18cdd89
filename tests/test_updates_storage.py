"""Who a "you said, we did" update is for, part by part (storage/updates.py)."""

from __future__ import annotations

from pathlib import Path

from storage.answers import Answers
from storage.broadcasts import Broadcasts
from storage.checkins import Checkins
from storage.database import Database
from storage.people import ConsentLedger, People
from storage.queues import Outbox
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


async def test_a_taken_back_update_finds_each_copy_to_edit_once_and_forgets_unsent_ones(
    tmp_path: Path,
) -> None:
    """Taken back: the copies sent (their message kept by the 0029 trigger as the sender
    marks them sent) are found once each; deliveries stopped before they were sent are
    forgotten; someone unreachable is not written to."""
    db = await Database.open(str(tmp_path / "updates.db"))
    await db.migrate()
    async with db.transaction() as conn:
        people, ledger = People(conn), ConsentLedger(conn)
        everyone = ["p-a", "p-b", "p-c", "p-d"]
        for n, pseudonym in enumerate(everyone, start=1):
            await people.touch(pseudonym, n, "en", 0)
            await people.set_region(pseudonym, "london", 0)
            await ledger.record(pseudonym, "updates", True, "v1", 0)
        updates = Updates(conn)
        update = await updates.publish("london", "changed", ["housing"], "-", None, "p-s", DAY)
        await updates.deliver_all(update.id, everyone)
        messages = [(n, {"text": "-"}) for n in range(1, 5)]
        broadcast = await Broadcasts(conn).create(
            "update", f"update:{update.id}", "london", "p-s", messages, None, DAY
        )
        async with conn.execute(
            "SELECT chat_id, id, version FROM outbox WHERE broadcast_id = ?", (broadcast,)
        ) as cursor:
            rows = {int(r[0]): (int(r[1]), int(r[2])) for r in await cursor.fetchall()}
        sent = [(rows[chat][0], 500 + chat, rows[chat][1]) for chat in (1, 3, 4)]
        await Outbox(conn).mark_sent_many(sent, DAY)  # p-b's is still waiting...
        assert await Broadcasts(conn).cancel(broadcast, DAY) == 1  # ...and is stopped
        await ledger.record("p-c", "updates", False, "v1", DAY)  # said no since
        await people.set_reachable(4, False, DAY)  # p-d blocked the bot

        assert await updates.withdraw(update.id, 2 * DAY)
        assert not await updates.withdraw(update.id, 2 * DAY)
        assert await updates.forget_unsent(update.id) == 1
        copies = await updates.copies_to_edit(update.id, 10)
        # p-c said no to updates since: her copy is still corrected (an edit sends nothing).
        assert [(c.pseudonym, c.message_id) for c in copies] == [("p-a", 501), ("p-c", 503)]
        await updates.mark_edited(update.id, ["p-a", "p-c"], 2 * DAY)
        assert await updates.copies_to_edit(update.id, 10) == []
        async with conn.execute(
            "SELECT pseudonym, message_id FROM update_deliveries ORDER BY pseudonym"
        ) as cursor:
            kept = [(str(r[0]), r[1]) for r in await cursor.fetchall()]
        assert kept == [("p-a", 501), ("p-c", 503), ("p-d", 504)]  # p-b never got it
        assert await updates.latest("london", 5) == []
        assert [u.id for u in await updates.latest("london", 5, taken_back_too=True)] == [update.id]
    await db.close()
