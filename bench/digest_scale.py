"""Digest at scale: 1,000,000 stored answers from 50,000 invented people over two years in
12 regions; all 12 regional weekly digests (and the national one they are checked against)
built by the real path, timed, with the peak memory the kernel counted.

Answers are what people gave: a score per principle (checkin_scores, four per started
check-in, a skip kept as NULL) and the written answer (answers, theme-tagged, a scrubbed
quote kept for those who said yes to quotes). The build is the Monday job's release
(`DigestService.prepare_release`: the figures of every region read on a snapshot, the figure
model with disclosure control over all 13 digests built in a worker thread; then
`release_week` stores them), then each region's quotes (`read_quotes`, decrypting) and its
Markdown: what `python -m bot digest` does for one region, for all twelve. Also reported:
how long the release holds the write lock (every update waits for it meanwhile), against
the same release built inside the write transaction in the same process.

The build runs in a child process under /usr/bin/time -v, so "peak memory" is the kernel's
maximum resident set size of that process. Targets: < 5 s in total, < 300 MB.

    .venv/bin/python -m bench.digest_scale [--people 50000] [--answers 1000000] [--cache DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.settings import PROJECT_ROOT, load_settings
from bot.themes import load_taxonomy
from state_machines.definition import REGION_SLUGS
from storage.database import Database
from storage.digest_data import shift_week, week_bounds

ZONE = "Europe/London"
LAST_WEEK = "2026-W47"
WEEKS = 104
PRINCIPLES = ("voice", "respect", "neutrality", "trust")
QUOTE = "Appointments run late and nobody says why. Evening slots would help me keep my job."
# A started check-in gives four scores; a completed one also a written answer (80% of
# check-ins complete, 10% stop after starting, 10% are never started): 4.4 answers each.
ANSWERS_PER_CHECKIN = 0.9 * 4 + 0.8


def generate(database: str, secrets_path: str, people: int, answers: int, seed: int = 8) -> None:
    """The invented history, written with executemany in a few large transactions."""
    from bot.secrets_file import load_secrets

    asyncio.run(_migrate(database))
    keys = load_secrets(secrets_path, production=False)
    rng = random.Random(seed)
    themes = [t.id for t in load_taxonomy(PROJECT_ROOT / "dialogues" / "themes.yaml").themes]
    weeks = [shift_week(LAST_WEEK, -n) for n in range(WEEKS - 1, -1, -1)]
    bounds = {w: week_bounds(w, ZONE) for w in weeks}
    checkins = int(answers / ANSWERS_PER_CHECKIN)
    sealed_quotes = [keys.encrypt_text(f"{QUOTE} ({n})") for n in range(200)]
    cipher = os.urandom(120)  # the written answers' ciphertext: never read by the digest
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")  # generating, not measuring
    conn.execute("BEGIN")
    region_of = [REGION_SLUGS[n % len(REGION_SLUGS)] for n in range(people)]
    pseudonyms = [f"bench{n:08d}" for n in range(people)]
    quotes_yes = [rng.random() < 0.3 for _ in range(people)]
    conn.executemany(
        "INSERT INTO people (pseudonym, chat_id, locale, region, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            (p, 790_000_000 + n, "cy" if n % 10 == 0 else "en", region_of[n], 0, 0)
            for n, p in enumerate(pseudonyms)
        ),
    )
    conn.executemany(
        "INSERT INTO consent_ledger (pseudonym, purpose, granted, notice_version, recorded_at) "
        "VALUES (?, ?, ?, 'v1', 0)",
        (
            (p, purpose, 1 if purpose == "feedback" or quotes_yes[n] else 0)
            for n, p in enumerate(pseudonyms)
            for purpose in ("feedback", "quotes")
        ),
    )
    checkin_rows, score_rows, answer_rows, theme_rows = [], [], [], []
    for c in range(1, checkins + 1):
        n = rng.randrange(people)
        week = weeks[rng.randrange(WEEKS)]
        start, end = bounds[week]
        sent = rng.randrange(start, end - 3_600_000)
        roll = rng.random()
        status = "completed" if roll < 0.8 else "expired"
        started = sent + 600_000 if roll < 0.9 else None
        completed = sent + 900_000 if status == "completed" else None
        checkin_rows.append(
            (
                c,
                pseudonyms[n],
                f"{c:016x}",
                region_of[n],
                "cy" if n % 10 == 0 else "en",
                week,
                status,
                sent,
                started,
                completed,
                completed or sent + 7 * 86_400_000,
            )
        )
        if started is not None:
            for principle in PRINCIPLES:
                score = None if rng.random() < 0.05 else rng.randint(1, 5)
                score_rows.append((c, principle, score, started))
        if completed is not None:
            quote = sealed_quotes[c % 200] if quotes_yes[n] else None
            answer_rows.append((c, pseudonyms[n], cipher, completed, c, quote))
            for theme in rng.sample(themes, rng.choice((1, 1, 2))):
                theme_rows.append((c, theme, "staff" if rng.random() < 0.05 else "keywords"))
    conn.executemany(
        "INSERT INTO checkins (id, pseudonym, token, region, locale, week, source, status, "
        "sent_at, started_at, completed_at, closed_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 'scheduled', ?, ?, ?, ?, ?)",
        checkin_rows,
    )
    conn.executemany(
        "INSERT OR REPLACE INTO checkin_scores (checkin_id, principle, score, answered_at) "
        "VALUES (?, ?, ?, ?)",
        score_rows,
    )
    conn.executemany(
        "INSERT INTO answers (id, pseudonym, dialogue, question, ciphertext, created_at, "
        "checkin_id, quote) VALUES (?, ?, 'feedback', 'improve', ?, ?, ?, ?)",
        answer_rows,
    )
    conn.executemany(
        "INSERT INTO answer_themes (answer_id, theme, source) VALUES (?, ?, ?)", theme_rows
    )
    conn.execute(
        "INSERT INTO checkin_counts (week, region, locale, sent, started, completed) "
        "SELECT week, region, locale, COUNT(*), COUNT(started_at), COUNT(completed_at) "
        "FROM checkins GROUP BY 1, 2, 3"
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


async def _migrate(database: str) -> None:
    db = await Database.open(database)
    try:
        await db.migrate()
    finally:
        await db.close()


def counts(database: str) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        scores = conn.execute("SELECT COUNT(*) FROM checkin_scores").fetchone()[0]
        written = conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        people = conn.execute("SELECT COUNT(DISTINCT pseudonym) FROM checkins").fetchone()[0]
    return {"answers": scores + written, "scores": scores, "written": written, "people": people}


class _Undo(Exception):
    """Rolls back the baseline's release, so the measured one starts with nothing released."""


async def build(database: str, secrets_path: str) -> dict[str, Any]:
    """In the child process: the Monday job's release of LAST_WEEK as the bot runs it
    (`prepare_release`: every region's and the national digest read on a snapshot and
    built together in a worker thread, no lock held; then `release_week` stores them in a
    write transaction), then each region's quotes and Markdown as `python -m bot digest`
    writes them. First, as a baseline in the same process, the release built inside the
    write transaction (as the bot did before the third round), rolled back afterwards:
    how long every update would have waited for the lock."""
    from bot.digest import to_markdown
    from bot.digest_quotes import read_quotes
    from bot.digests import DigestService
    from bot.secrets_file import load_secrets

    settings = load_settings({"DATABASE_PATH": database, "SECRETS_PATH": secrets_path})
    taxonomy = load_taxonomy(settings.dialogues_dir / "themes.yaml")
    themes = [(t.id, t.label) for t in taxonomy.themes]
    db = await Database.open(database)
    # The release needs only these of the service (the rest sends messages).
    service = DigestService.__new__(DigestService)
    service._db, service._themes, service._zone, service._k = db, themes, ZONE, 10
    service._preparing = {}
    try:
        inline_at = time.perf_counter()
        with contextlib.suppress(_Undo):
            async with db.transaction() as conn:
                await service.release_week(conn, LAST_WEEK, 0)
                lock_held_inline = time.perf_counter() - inline_at
                raise _Undo
    finally:
        await db.close()

    began = time.perf_counter()
    keys = load_secrets(secrets_path, production=False)
    db = await Database.open(database)
    service._db = db
    try:
        prepared_at = time.perf_counter()
        prepared = await service.prepare_release(LAST_WEEK)
        stored_at = time.perf_counter()
        async with db.transaction() as conn:
            built = await service.release_week(conn, LAST_WEEK, 0, prepared)
        released = time.perf_counter() - prepared_at
        lock_held = time.perf_counter() - stored_at
        texts: dict[str, str] = {}
        quotes_total = 0
        async with db.read() as conn:
            for region in REGION_SLUGS:
                quotes = await read_quotes(conn, built[region], ZONE, keys.decrypt_text)
                quotes_total += sum(len(q) for q in quotes.values())
                texts[region] = to_markdown(built[region], quotes)
    finally:
        await db.close()
    total = time.perf_counter() - began
    return {
        "seconds_total": round(total, 3),
        "seconds_release_all_13": round(released, 3),
        "write_lock_held_seconds": round(lock_held, 4),
        "write_lock_held_seconds_built_inside": round(lock_held_inline, 3),
        "digests": len(built),
        "quotes": quotes_total,
        "markdown_chars": sum(len(t) for t in texts.values()),
        "hidden_mentions": sum(text.count("fewer than") for text in texts.values()),
    }


def run_child(database: str, secrets_path: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.digest_scale", "--child", database, secrets_path]
    timed = ["/usr/bin/time", "-v", *command] if Path("/usr/bin/time").exists() else command
    done = subprocess.run(timed, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the digest build failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if peak:
        result["peak_rss_mb"] = round(int(peak.group(1)) / 1024, 1)
    return result


def fresh_copy(source: str, folder: Path) -> str:
    """A copy of the generated database, so every build starts with nothing released."""
    target = str(folder / "digest.db")
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--answers", type=int, default=1_000_000)
    parser.add_argument("--cache", help="keep the generated database in this folder")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(build(*args.child))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache or tmp)
        cache.mkdir(parents=True, exist_ok=True)
        source = cache / f"digest-{args.people}-{args.answers}.db"
        secrets_path = str(cache / "secrets")
        generated = None
        if not source.exists():
            began = time.perf_counter()
            generate(str(source) + ".part", secrets_path, args.people, args.answers)
            Path(str(source) + ".part").rename(source)
            generated = round(time.perf_counter() - began, 1)
        else:
            # The schema may have moved on (e.g. a new index) since it was cached.
            asyncio.run(_migrate(str(source)))
        summary: dict[str, Any] = {**counts(str(source)), "generate_seconds": generated}
        runs = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as work:
                runs.append(run_child(fresh_copy(str(source), Path(work)), secrets_path))
        summary["runs"] = runs
        summary["best_seconds"] = min(r["seconds_total"] for r in runs)
        summary["peak_rss_mb"] = max(r.get("peak_rss_mb", 0.0) for r in runs)
        summary["write_lock_held_seconds"] = max(r["write_lock_held_seconds"] for r in runs)
        summary["write_lock_held_seconds_built_inside"] = min(
            r["write_lock_held_seconds_built_inside"] for r in runs
        )
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
