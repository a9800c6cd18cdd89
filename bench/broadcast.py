"""Broadcast benchmark: 10,000 invented recipients against the local Bot API server, which
enforces a global limit (Telegram's 30/s scaled up to 300/s so the run takes half a minute).

Reports the achieved rate ÷ the allowed rate (target ≥ 0.95), the 429s received (target 0)
and duplicates (target 0). The allowed rate is the baseline, enforced by the server in the
same run; the bot is told to pace itself just under it.

    .venv/bin/python -m bench.broadcast [--recipients 10000] [--limit 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from bot.local_api import FakePerson, LocalBotApi
from bot.runtime import build_runtime, start, stop
from bot.sender import ChatPacer
from bot.settings import load_settings
from storage.clock import SystemClock
from storage.people import ConsentLedger, People, reachable_with_consent

TOKEN = "123456789:AAinventedTOKENforBENCHonly_abcdefghij"
TEXT = "You are invited to a panel."


async def run(recipients: int, limit: float) -> dict[str, float]:
    people = [FakePerson(user_id=730000000 + n, first_name="-") for n in range(recipients)]
    async with LocalBotApi(
        TOKEN, "yousaid_bench_bot", enforce_limits=True, global_rate=limit
    ) as api:
        for person in people:
            api.add_chat(person)
        with tempfile.TemporaryDirectory() as folder:
            settings = load_settings(
                {
                    "TELEGRAM_BOT_TOKEN": TOKEN,
                    "TELEGRAM_API_BASE_URL": api.base_url,
                    "DATABASE_PATH": str(Path(folder) / "bench.db"),
                    "SECRETS_PATH": str(Path(folder) / "secrets"),
                    # pace just under the server's limit, as the real bot does under Telegram's
                    "SEND_RATE_PER_SECOND": str(limit * 0.985),
                    "LOG_LEVEL": "WARNING",
                }
            )
            runtime = await build_runtime(settings, poll_timeout=1, chat_pacer=ChatPacer())
            await start(runtime)
            try:
                now = SystemClock().now_ms()
                async with runtime.db.transaction() as conn:
                    for person in people:
                        pseudonym = f"p{person.user_id}"
                        await People(conn).touch(pseudonym, person.chat_id, "en", now)
                        await People(conn).set_region(pseudonym, "london", now)
                        await ConsentLedger(conn).record(
                            pseudonym, "panel_invitations", True, "v1", now
                        )
                async with runtime.db.read() as conn:
                    chosen = await reachable_with_consent(conn, "london", "panel_invitations")
                await runtime.broadcasts.start(
                    "panel_invitation",
                    "panel:bench",
                    "london",
                    "bench",
                    [(r.chat_id, {"text": TEXT}) for r in chosen],
                )
                await wait_until_sent(api, recipients)
            finally:
                await stop(runtime)
        sends = [c for c in api.calls("sendMessage") if c.params.get("text") == TEXT]
        delivered = [c for c in sends if c.outcome == "ok"]
        per_chat = Counter(c.chat_id for c in delivered)
        seconds = max(c.time for c in delivered) - min(c.time for c in delivered)
        achieved = (len(delivered) - 1) / seconds
        return {
            "recipients": recipients,
            "allowed_per_s": limit,
            "achieved_per_s": achieved,
            "ratio": achieved / limit,
            "429s": sum(1 for c in sends if c.status == 429),
            "duplicates": sum(n - 1 for n in per_chat.values()),
            "missed": recipients - len(per_chat),
            "seconds": seconds,
        }


async def wait_until_sent(api: LocalBotApi, count: int) -> None:
    started = time.monotonic()
    while len({c.chat_id for c in api.calls("sendMessage") if c.outcome == "ok"}) < count:
        if time.monotonic() - started > 600:
            raise TimeoutError("the broadcast did not finish in 10 minutes")
        await asyncio.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--limit", type=float, default=300.0)
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()
    result = asyncio.run(run(args.recipients, args.limit))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:>15}: {value:.3f}" if isinstance(value, float) else f"{key:>15}: {value}")


if __name__ == "__main__":
    main()
