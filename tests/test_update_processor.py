"""One update at a time per person, many people at once; a flooding person starves no one."""

from __future__ import annotations

import asyncio

from telegram import Chat, Message, Update, User

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
