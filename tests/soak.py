"""The fault suite's long run: `python -m tests.soak --rounds 200` (`make soak`).

Kill -9 and restart rounds (tests/fault_rounds.py) on a fresh local Bot API server and
database, at seeded random moments: the same checks as the short run in `make test`, many
more times. Prints a summary; with RELIABILITY_RESULTS set, writes kill_rounds_soak.json
there for docs/reliability.md (`make reliability`). Exit status 1 if anything was lost,
duplicated or left broken."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from tests.fault_rounds import run_kill_rounds
from tests.reliability import record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--rounds", type=int, default=200, help="kill and restart rounds")
    parser.add_argument("--seed", type=int, default=2026, help="seed for the kill moments")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="yousaid-soak-"))
    try:
        stats = asyncio.run(run_kill_rounds(folder, args.rounds, args.seed))
    except Exception as exc:  # a script stuck or broken: report it as a failure
        record("kill_rounds_soak", 0, False, {"error": f"{type(exc).__name__}: {exc}"})
        print(f"soak failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"database and bot log kept in {folder}", file=sys.stderr)
        return 1
    shutil.rmtree(folder, ignore_errors=True)
    passed = not stats.failures and stats.lost_acknowledged == 0
    record("kill_rounds_soak", stats.rounds, passed, {**vars(stats), "seed": args.seed})
    print(
        f"{stats.rounds} rounds, {stats.kills} kills, {stats.people} people, {stats.panels} "
        f"panels, {stats.steps_acknowledged} answers acknowledged, "
        f"{stats.idle_checked_at_kill} checked right after a kill, "
        f"{stats.lost_acknowledged} lost, {len(stats.failures)} failures, {stats.seconds} s"
    )
    for failure in stats.failures:
        print(f"  {failure}", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
