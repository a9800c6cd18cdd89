"""Memory and start-up: a real `python -m bot run` process over a database of 100,000
enrolled people, 10,000 of them in the middle of a check-in.

Measured with the operating system's own accounting: the peak resident set (VmHWM in
/proc/<pid>/status) of the bot process, after it has started and answered 1,000 of the
people in mid-dialogue; and the time from the process starting to its first getUpdates
call at the local Bot API server (ready to serve). Targets: < 250 MB and < 2 s.

    .venv/bin/python -m bench.startup [--people 100000] [--mid-dialogue 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.local_api import FakePerson, LocalBotApi
from bot.secrets_file import load_secrets
from bot.settings import PROJECT_ROOT
from state_machines.session import Place, Session
from storage.clock import SystemClock
from storage.database import Database

TOKEN = "123456789:AAinventedTOKENforBENCHonly_abcdefghij"
BASE_USER = 780_000_000
ANSWERING = 1000
REGIONS = [f"region_{n:02d}" for n in range(12)]


async def seed(folder: Path, people: int, mid: int) -> tuple[str, str]:
    """The database and secrets file: every person onboarded with consents and a region;
    the first `mid` half-way through a check-in (at its written question), with their
    nudge and expiry jobs waiting, as a scheduled round leaves them."""
    database, secrets_path = str(folder / "yousaid.db"), str(folder / "secrets")
    db = await Database.open(database)
    await db.migrate()
    await db.close()
    keys = load_secrets(secrets_path, production=False)
    now = SystemClock().now_ms()
    done = Session(completed=frozenset({"onboarding"})).to_json()
    with sqlite3.connect(database) as conn:
        rows = [
            (keys.pseudonym(BASE_USER + n), BASE_USER + n, REGIONS[n % len(REGIONS)])
            for n in range(people)
        ]
        conn.executemany(
            "INSERT INTO people (pseudonym, chat_id, locale, region, created_at, updated_at) "
            "VALUES (?, ?, 'en', ?, ?, ?)",
            [(p, chat, region, now, now) for p, chat, region in rows],
        )
        conn.executemany(
            "INSERT INTO consent_ledger (pseudonym, purpose, granted, notice_version, "
            "recorded_at) VALUES (?, ?, 1, 'v1', ?)",
            [
                (p, purpose, now)
                for p, _, _ in rows
                for purpose in ("feedback", "panel_invitations", "updates", "quotes")
            ],
        )
        sessions = []
        for n, (pseudonym, _, region) in enumerate(rows):
            if n >= mid:
                sessions.append((pseudonym, done, now))
                continue
            token = secrets.token_hex(8)
            cursor = conn.execute(
                "INSERT INTO checkins (pseudonym, token, region, locale, week, source, status, "
                "sent_at, started_at) VALUES (?, ?, ?, 'en', '2026-W48', 'scheduled', "
                "'started', ?, ?)",
                (pseudonym, token, region, now, now),
            )
            checkin_id = cursor.lastrowid
            for kind, due in (("checkin_nudge", 86_400_000), ("checkin_expire", 7 * 86_400_000)):
                conn.execute(
                    "INSERT INTO schedules (kind, key, due_at, payload, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        kind,
                        f"{kind}:{checkin_id}",
                        now + due,
                        json.dumps({"checkin": checkin_id}),
                        now,
                    ),
                )
            conn.executemany(
                "INSERT INTO checkin_scores (checkin_id, principle, score, answered_at) "
                "VALUES (?, ?, ?, ?)",
                [(checkin_id, p, 3, now) for p in ("voice", "respect", "neutrality", "trust")],
            )
            session = Session(
                place=Place("feedback", "improve"), completed=frozenset({"onboarding"})
            ).with_values(
                "feedback",
                {"checkin": token, "voice": "4", "respect": "3", "neutrality": "5", "trust": "2"},
            )
            sessions.append((pseudonym, session.to_json(), now))
        # The digest's anonymous counters for the round these check-ins came from.
        conn.execute(
            "INSERT INTO checkin_counts (week, region, locale, sent, started) "
            "SELECT week, region, locale, COUNT(*), COUNT(*) FROM checkins "
            "GROUP BY week, region, locale"
        )
        conn.executemany(
            "INSERT INTO dialogue_sessions (pseudonym, session, updated_at) VALUES (?, ?, ?)",
            sessions,
        )
    return database, secrets_path


def memory_of(pid: int) -> dict[str, int]:
    """VmHWM (peak resident) and VmRSS of a process, in kB, as the kernel counts them."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0])
    return fields


async def run(people: int, mid: int, profile: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        database, secrets_path = await seed(folder, people, mid)
        seeded = time.perf_counter() - began
        async with LocalBotApi(TOKEN, "yousaid_bench_bot") as api:
            persons = [
                FakePerson(user_id=BASE_USER + n, first_name="-", language_code="en")
                for n in range(min(mid, ANSWERING))
            ]
            for person in persons:
                api.add_chat(person)
            env = {
                **os.environ,
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_API_BASE_URL": api.base_url,
                "DATABASE_PATH": database,
                "SECRETS_PATH": secrets_path,
                "LOG_LEVEL": "WARNING",
                "SEND_RATE_PER_SECOND": "1000",
            }
            log_path = Path(os.environ.get("BENCH_BOT_LOG", folder / "bot.log"))
            with log_path.open("wb") as log:  # noqa: ASYNC230 - once, before the clock starts
                started = time.perf_counter()
                profiler = ["-m", "cProfile", "-o", profile] if profile else []
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    *profiler,
                    "-m",
                    "bot",
                    "run",
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdout=log,
                    stderr=log,
                )
            try:
                # Ready: the first getUpdates has arrived (it long-polls, so it is recorded as
                # pending until an update comes).
                while not api.calls("getUpdates"):
                    if time.perf_counter() - started > 60 or process.returncode is not None:
                        tail = log_path.read_text()[-2000:]  # noqa: ASYNC240 - failing anyway
                        raise RuntimeError("the bot did not start: " + tail)
                    await asyncio.sleep(0.005)
                ready = time.perf_counter() - started
                after_start = memory_of(process.pid)
                # The people half-way through answer their last question; each gets a reply.
                for person in persons:
                    api.send_text(person, "Appointments closer to home would help.")
                for person in persons:
                    await api.wait_for_messages(person.chat_id, 1, timeout=120)
                served = memory_of(process.pid)
                reply = api.messages(persons[0].chat_id)[0].text if persons else ""
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(process.wait(), timeout=30)
        with sqlite3.connect(database) as conn:
            completed = conn.execute(
                "SELECT COUNT(*) FROM checkins WHERE status = 'completed'"
            ).fetchone()[0]
        return {
            "people": people,
            "mid_dialogue": mid,
            "seed_seconds": round(seeded, 1),
            "ready_seconds": round(ready, 3),
            "rss_after_start_mb": round(after_start["VmRSS"] / 1024, 1),
            "answered": len(persons),
            "checkins_completed": completed,
            "first_reply": (reply or "")[:60],
            "peak_rss_mb": round(served["VmHWM"] / 1024, 1),
            "rss_mb": round(served["VmRSS"] / 1024, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--mid-dialogue", type=int, default=10_000)
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument("--profile", help="run the bot under cProfile, stats written here")
    args = parser.parse_args()
    result = asyncio.run(run(args.people, args.mid_dialogue, args.profile))
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
