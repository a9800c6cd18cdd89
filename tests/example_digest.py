"""An example digest from invented data, so a newcomer can see one without real data:

    make example-digest        (or: python -m tests.example_digest --out example-digest)

Writes the London digest of 2026-W47 (a seeded synthetic world of invented people over
eight weeks) as Markdown, CSV, HTML and the chart PNG, through the same code the bot uses.
Some invented answers of the week carry an invented quote (encrypted under a throwaway key,
as if their writers had agreed to be quoted), so the quotes section shows too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import aiosqlite

from bot.digest import build_digests, to_csv, to_markdown
from bot.digest_quotes import read_quotes
from bot.digest_report import report_files
from bot.scrub import scrub
from bot.secrets_file import Secrets, generate_secrets_file
from bot.themes import load_taxonomy
from state_machines.definition import REGION_SLUGS
from storage.database import Database
from storage.digest_data import NATIONAL, DigestFigures, week_bounds
from tests.digest_synthetic import ZONE, generate

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEEK = "2026-W47"
# Invented words, a few for each theme (the generator's answers carry no text).
SAYINGS = {
    "appointments_reporting": (
        "My appointments keep moving and I lose shifts at work.",
        "Reporting at nine means I miss my course.",
    ),
    "practitioner_relationship": (
        "My officer listens now, which makes a difference.",
        "I have had three officers this year.",
    ),
    "housing": ("The hostel is two buses from the office.", "I still have nowhere to live."),
    "work_training": (
        "I want a course that leads to a real job.",
        "Nobody will take me on with my record.",
    ),
    "money_benefits": (
        "My benefits stopped when I moved and nobody told me why.",
        "I can't afford the phone credit to call in.",
    ),
    "mental_health": (
        "Waiting months for counselling is too long.",
        "Talking to someone each week helped me.",
    ),
    "travel_costs": (
        "The bus fare to reporting is a lot out of my money.",
        "They paid my fare this time, that helped.",
    ),
    "kept_informed": (
        "Nobody told me my licence conditions had changed.",
        "I got a letter after the date had passed.",
    ),
    "family": (
        "I can't see my kids on the days I report.",
        "My partner was kept in the loop, thank you.",
    ),
}


async def example_files(region: str = "london", k: int = 10) -> dict[str, bytes]:
    """The example digest's files, by name."""
    taxonomy = load_taxonomy(PROJECT_ROOT / "dialogues" / "themes.yaml")
    with tempfile.TemporaryDirectory() as folder:
        db = await Database.open(str(Path(folder) / "example.db"))
        try:
            await db.migrate()
            secrets = generate_secrets_file(Path(folder) / "secrets")
            async with db.transaction() as conn:
                await generate(
                    20261126, conn, regions=("london",), people_per_region=1500, last_week=WEEK
                )
                await _quote_some(conn, secrets)
            async with db.read() as conn:
                async with DigestFigures(conn) as figures:
                    data = {r: await figures.read(r, WEEK, ZONE) for r in (NATIONAL, *REGION_SLUGS)}
                themes = [(t.id, t.label) for t in taxonomy.themes]
                digest = build_digests(data, k, (), themes, ZONE)[region]
                quotes = await read_quotes(conn, digest, ZONE, secrets.decrypt_text)
        finally:
            await db.close()
    png, html = report_files(digest, (), region.replace("-", " ").title(), quotes)
    return {
        "digest.md": to_markdown(digest, quotes).encode(),
        "digest.csv": to_csv(digest, quotes).encode(),
        "digest.html": html.encode(),
        "chart.png": png,
    }


async def _quote_some(conn: aiosqlite.Connection, secrets: Secrets) -> None:
    """Give every third answer of the week with one theme an invented quote about it."""
    start, end = week_bounds(WEEK, ZONE)
    async with conn.execute(
        "SELECT a.id, MIN(t.theme) FROM answers a JOIN answer_themes t ON t.answer_id = a.id "
        "WHERE a.created_at >= ? AND a.created_at < ? AND a.id % 3 = 0 GROUP BY a.id "
        "HAVING COUNT(*) = 1",
        (start, end),
    ) as cursor:
        chosen = list(await cursor.fetchall())
    for answer_id, theme in chosen:
        if theme in SAYINGS:
            said = SAYINGS[theme][answer_id % len(SAYINGS[theme])]
            quote = secrets.encrypt_text(scrub(said))
            await conn.execute("UPDATE answers SET quote = ? WHERE id = ?", (quote, answer_id))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.example_digest", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("example-digest"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, content in asyncio.run(example_files()).items():
        (args.out / name).write_bytes(content)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
