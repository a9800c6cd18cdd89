"""YouSaid: the application layer (settings, CLI, wiring, Telegram adapter, services)."""

import os

# Opt in now to python-telegram-bot's coming behaviour (durations as timedelta); the code
# already accepts both, and this silences the deprecation warning on every 429.
os.environ.setdefault("PTB_TIMEDELTA", "1")
