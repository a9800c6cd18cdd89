"""An example digest from invented data, so a newcomer can see one without real data:

    make example-digest        (or: python -m tests.example_digest --out example-digest)

Writes the London digest of 2026-W47 (a seeded synthetic world of invented people over
eight weeks) as Markdown, CSV, HTML and the chart PNG, through the same code the bot uses.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from bot.digest import build_digests, to_csv, to_markdown
from bot.digest_report import report_files
from bot.themes import load_taxonomy
from state_machines.definition import REGION_SLUGS
from storage.database import Database
from storage.digest_data import NATIONAL, DigestFigures
from tests.digest_synthetic import ZONE, generate

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEEK = "2026-W47"


async def example_files(region: str = "london", k: int = 10) -> dict[str, bytes]:
    """The example digest's files, by name."""
    taxonomy = load_taxonomy(PROJECT_ROOT / "dialogues" / "themes.yaml")
    with tempfile.TemporaryDirectory() as folder:
        db = await Database.open(str(Path(folder) / "example.db"))
        try:
            await db.migrate()
            async with db.transaction() as conn:
                await generate(20261126, conn, last_week=WEEK)
            async with db.read() as conn:
                figures = DigestFigures(conn)
                data = {r: await figures.read(r, WEEK, ZONE) for r in (NATIONAL, *REGION_SLUGS)}
        finally:
            await db.close()
    themes = [(t.id, t.label) for t in taxonomy.themes]
    digest = build_digests(data, k, (), themes, ZONE)[region]
    png, html = report_files(digest, (), region.replace("-", " ").title())
    return {
        "digest.md": to_markdown(digest).encode(),
        "digest.csv": to_csv(digest).encode(),
        "digest.html": html.encode(),
        "chart.png": png,
    }


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
