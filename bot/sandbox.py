"""`python -m bot sandbox`: talk to the real bot in a terminal, with no token and no Telegram.

It starts the local Bot API server on 127.0.0.1, runs the real bot against it (the same code
path as `run`: long polling, inbox, outbox, sender), and lets you be an invented person on
licence: type text, or type a number to tap a button. Data goes to DATABASE_PATH, so leaving
and coming back resumes where the person was.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from dataclasses import replace
from typing import TextIO

from bot.local_api import FakePerson, LocalBotApi, SentMessage
from bot.local_api.server import DEFAULT_TOKEN
from bot.runtime import build_runtime, start, stop
from bot.settings import Settings

# An invented person: the same one every time, so the sandbox remembers them.
SANDBOX_PERSON = FakePerson(user_id=100000001, first_name="Sandbox", language_code="en")
QUIT_WORDS = ("/quit", "/exit")

BANNER = """\
YouSaid sandbox: you are an invented person on licence, talking to the real bot
through a local stand-in for Telegram (nothing leaves this machine).
Type a message and press Enter. When the bot shows buttons, type the number of one.
Type /quit (or press Ctrl-D) to leave; your place is kept for next time.
"""


class TerminalChat:
    """Shows the bot's messages with numbered buttons, and turns lines typed into updates."""

    def __init__(self, api: LocalBotApi, out: TextIO) -> None:
        self._api = api
        self._out = out
        self._shown = 0
        self._buttons: list[tuple[int, str, str]] = []  # (message id, label, callback data)
        self.closed = False

    def show(self, message: SentMessage) -> None:
        lines = (message.text or message.caption or "").splitlines() or [""]
        indented = [lines[0], *(("         " + line) if line else "" for line in lines[1:])]
        self._write("\nYouSaid: " + "\n".join(indented) + "\n")
        rows = (message.reply_markup or {}).get("inline_keyboard", [])
        if rows:
            self._buttons = []
            for row in rows:  # laid out as the keyboard's rows, numbered left to right
                labels = []
                for button in row:
                    entry = (message.message_id, button["text"], button["callback_data"])
                    self._buttons.append(entry)
                    labels.append(f"[{len(self._buttons)}] {button['text']}")
                self._write("   " + "   ".join(labels) + "\n")
        self._write("> ")

    async def show_replies(self) -> None:
        """Print every new message from the bot as it arrives, until `closed`. (A flag, not
        task cancellation: Python 3.11's wait_for can swallow a cancel.)"""
        chat_id = SANDBOX_PERSON.chat_id
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                await self._api.wait_for_messages(chat_id, self._shown + 1, timeout=0.5)
            messages = self._api.messages(chat_id)
            for message in messages[self._shown :]:
                self.show(message)
            self._shown = len(messages)

    def act(self, line: str) -> None:
        """A line typed by the person: a button number, or a message."""
        text = line.strip()
        if not text:
            self._write("> ")
            return
        if text.isdigit() and self._buttons and 1 <= int(text) <= len(self._buttons):
            message_id, _, data = self._buttons[int(text) - 1]
            self._buttons = []  # a button is tapped once; the next message brings new ones
            self._api.press_button(SANDBOX_PERSON, message_id, data)
            return
        self._api.send_text(SANDBOX_PERSON, text)

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()


def _read_lines(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Blocking stdin reads in a daemon thread (it must not keep the process alive)."""
    for line in sys.stdin:
        loop.call_soon_threadsafe(lines.put_nowait, line)
    loop.call_soon_threadsafe(lines.put_nowait, None)


async def run_sandbox(settings: Settings) -> int:
    """The sandbox until /quit or end of input."""
    # Update ids start from the clock so a restarted sandbox never reuses ids the bot's
    # inbox has already seen.
    api = LocalBotApi(DEFAULT_TOKEN, "yousaid_sandbox_bot", first_update_id=int(time.time()))
    await api.start(host="127.0.0.1", port=0)
    local = replace(settings, bot_token=DEFAULT_TOKEN, api_base_url=api.base_url)
    runtime = await build_runtime(local, poll_timeout=10)
    await start(runtime)
    chat = TerminalChat(api, sys.stdout)
    sys.stdout.write(BANNER)
    shower = asyncio.create_task(chat.show_replies())
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(
        target=_read_lines, args=(asyncio.get_running_loop(), lines), daemon=True
    ).start()
    api.send_text(SANDBOX_PERSON, "/start")  # as if the person tapped the bot's link
    try:
        while (line := await lines.get()) is not None and line.strip() not in QUIT_WORDS:
            chat.act(line)
    finally:
        chat.closed = True
        await asyncio.gather(shower, return_exceptions=True)
        await stop(runtime)
        await api.stop()
    sys.stdout.write("\nBye. Your place is kept: run the sandbox again to carry on.\n")
    return 0
