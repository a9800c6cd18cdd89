"""One update at a time per person, many people at once; a flooding person starves no one."""

from __future__ import annotations

import asyncio

import pytest
from telegram import Chat, Message, Update, User

from bot.ingest import TapAnswers
from bot.telegram_adapter import PerChatUpdateProcessor


def update_from(chat_id: int, update_id: int) -> Update:
    user = User(id=chat_id, first_name="-", is_bot=False)
    chat = Chat(id=chat_id, type=Chat.PRIVATE)
    message = Message(message_id=update_id, date=None, chat=chat, from_user=user, text="hi")  # type: ignore[arg-type]
    return Update(update_id=update_id, message=message)


async def test_one_chat_is_serialised_and_keeps_order() -> None:
    processor = PerChatUpdateProcessor(max_concurrent_updates=8)
    running: list[int] = []
    overlap: list[bool] = []
    order: list[int] = []

    async def handle(update_id: int) -> None:
        overlap.append(bool(running))
        running.append(update_id)
        await asyncio.sleep(0.01)
        order.append(update_id)
        running.remove(update_id)

    await asyncio.gather(
        *(processor.process_update(update_from(1, n), handle(n)) for n in range(10))
    )
    assert order == list(range(10))
    assert not any(overlap)


async def test_a_flooding_person_does_not_block_others() -> None:
    """With 4 slots, 50 queued updates from one person leave room for someone else."""
    processor = PerChatUpdateProcessor(max_concurrent_updates=4)
    release = asyncio.Event()
    served: list[int] = []

    async def slow(update_id: int) -> None:
        await release.wait()

    async def quick(update_id: int) -> None:
        served.append(update_id)

    flood = [
        asyncio.create_task(processor.process_update(update_from(1, n), slow(n))) for n in range(50)
    ]
    await asyncio.sleep(0.01)
    await asyncio.wait_for(processor.process_update(update_from(2, 999), quick(999)), 1.0)
    assert served == [999]
    release.set()
    await asyncio.gather(*flood)


async def test_many_tap_answers_under_way_go_before_new_updates() -> None:
    """A burst of taps: while THRESHOLD answers are under way no new update is started, so
    the answers (each with a ~15 s deadline) get the event loop first; below it, or after
    MAX_WAIT_S at most, updates go on."""
    answers = TapAnswers()
    processor = PerChatUpdateProcessor(max_concurrent_updates=8, tap_answers=answers)
    replied = asyncio.Event()
    events: list[str] = []

    async def answer() -> None:
        await replied.wait()

    async def handle(update_id: int) -> None:
        events.append(f"handled {update_id}")

    for _ in range(TapAnswers.THRESHOLD - 1):
        answers.add(answer())
    await processor.process_update(update_from(1, 1), handle(1))  # below: no wait
    answers.add(answer())
    waiting = asyncio.create_task(processor.process_update(update_from(2, 2), handle(2)))
    await asyncio.sleep(0.05)
    assert events == ["handled 1"] and not waiting.done()
    replied.set()  # Telegram answers them
    await asyncio.wait_for(waiting, 1.0)
    assert events == ["handled 1", "handled 2"]
    await answers.finish()


async def test_answers_that_hang_hold_an_update_back_for_a_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(TapAnswers, "MAX_WAIT_S", 0.1)
    answers = TapAnswers()
    processor = PerChatUpdateProcessor(max_concurrent_updates=8, tap_answers=answers)
    never = asyncio.Event()

    async def hang() -> None:
        await never.wait()

    for _ in range(TapAnswers.THRESHOLD):
        answers.add(hang())
    handled: list[int] = []

    async def handle(update_id: int) -> None:
        handled.append(update_id)

    await asyncio.wait_for(processor.process_update(update_from(3, 3), handle(3)), 1.0)
    assert handled == [3]
    never.set()
    await answers.finish()


async def test_at_most_a_few_answers_are_in_flight_so_replies_keep_their_connections() -> None:
    answers = TapAnswers()
    in_flight: list[int] = []
    most = 0

    async def answer() -> None:
        nonlocal most
        async with answers.slot():  # as Ingest holds one for each call to Telegram
            in_flight.append(1)
            most = max(most, len(in_flight))
            await asyncio.sleep(0.01)
            in_flight.pop()

    for _ in range(3 * TapAnswers.AT_ONCE):
        answers.add(answer())
    await answers.finish()
    assert most == TapAnswers.AT_ONCE
