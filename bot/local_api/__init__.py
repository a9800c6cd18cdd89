"""A local Telegram Bot API server for tests and the sandbox mode.

It speaks the real Bot API over HTTP on a loopback address, so the unmodified
python-telegram-bot stack runs against it, and it adds records of everything the bot
did plus fault injection (errors, blocks, delays, held or dropped calls, flood limits).

    async with LocalBotApi(token=TOKEN, bot_username="yousaid_test_bot") as api:
        app = ApplicationBuilder().token(TOKEN).base_url(api.base_url).build()
        ...
        api.send_command(FakePerson(user_id=700000001), "start", "payload")
        [reply] = await api.wait_for_messages(700000001, 1)

Only invented people (FakePerson) ever appear here, and the server binds to and
delivers webhooks to loopback addresses only. It never logs message text or tokens.
Everything must be called from the event loop thread that runs the server.
"""

from .errors import ApiError
from .faults import FailRule, Hold
from .people import FakePerson
from .records import CallRecord, SentMessage
from .server import DEFAULT_TOKEN, LocalBotApi

__all__ = [
    "DEFAULT_TOKEN",
    "ApiError",
    "CallRecord",
    "FailRule",
    "FakePerson",
    "Hold",
    "LocalBotApi",
    "SentMessage",
]
