"""Before and after: the inbound burst at an earlier commit and at the working tree, in pairs.

A change worth a tenth of the CPU per update is lost in the noise of one run on a shared
machine (bench/FINDINGS.md, eighth round on). This runs `bench.inbound` at BASE (a git
worktree, made and removed here) and at the working tree, one after the other, `--pairs`
times, the order swapped in every other pair so that a machine speeding up or slowing down
over the minutes favours neither; then prints one table row per run, as FINDINGS quotes
them, and the medians. The measure to read is the whole burst's CPU per update ÷ the
ceiling's in the same run: it moves least with the machine's speed.

    .venv/bin/python -m bench.ab BASE [--pairs 3] [--people 1000] [--baseline-updates 2000]

About 70 s a run at the defaults (7 min for three pairs). Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CEILING = "ceiling (reply only)"
PEER = "peer (ConversationHandler)"
SUBSET = "yousaid (same subset)"


@dataclass(frozen=True)
class Run:
    side: str  # "before" or "after"
    label: str  # the commit, or "working tree"
    started: str  # HH:MM:SS UTC
    summary: dict[str, Any]  # bench.inbound's --json

    def _row(self, name: str) -> dict[str, Any]:
        for row in self.summary["rows"]:
            if row["name"] == name or (name == "whole" and row["name"].endswith("people)")):
                return dict(row)
        raise KeyError(name)

    @property
    def cpu_vs_ceiling(self) -> float:
        """The whole burst's CPU per update ÷ the ceiling's, in this run."""
        ceiling = float(self._row(CEILING)["cpu_ms_per_update"])
        whole = float(self._row("whole")["cpu_ms_per_update"])
        return whole / ceiling if ceiling else 0.0

    @property
    def whole_cpu_ms(self) -> float:
        return float(self._row("whole")["cpu_ms_per_update"])

    def table_row(self, pair: int) -> str:
        def speed(name: str) -> str:
            row = self._row(name)
            return f"{row['updates_per_s']}/s, {row['cpu_ms_per_update']} ms"

        s = self.summary
        ratios = (
            f"{s['ratio_vs_ceiling']:.2f} / {s['ratio_vs_peer']:.2f} (subset "
            f"{s['subset_ratio_vs_ceiling']:.2f} / {s['subset_ratio_vs_peer']:.2f})"
        )
        return (
            f"| {pair} {self.side} ({self.label}), {self.started} | {speed(CEILING)} | "
            f"{speed(SUBSET)} | {speed('whole')} | {self.cpu_vs_ceiling:.2f} | {ratios} |"
        )


HEADER = (
    "| run | ceiling | YouSaid subset | YouSaid whole burst | whole ÷ ceiling (CPU) "
    "| inbound ÷ ceiling / ÷ peer |\n|---|---|---|---|---|---|"
)


def report(runs: list[Run]) -> str:
    """The table, then each side's medians and the change in CPU per update."""
    lines = [HEADER]
    pair = 0
    for index, run in enumerate(runs):
        pair = index // 2 + 1
        lines.append(run.table_row(pair))
    sides = {side: [r for r in runs if r.side == side] for side in ("before", "after")}
    if all(sides.values()):
        before, after = (statistics.median(r.cpu_vs_ceiling for r in sides[s]) for s in sides)
        cpu_before, cpu_after = (statistics.median(r.whole_cpu_ms for r in sides[s]) for s in sides)
        lines.append("")
        lines.append(
            f"Medians: whole-burst CPU per update {cpu_before:.2f} ms before, {cpu_after:.2f} "
            f"after ({100 * (cpu_after / cpu_before - 1):+.1f}%); ÷ the ceiling's "
            f"{before:.2f} before, {after:.2f} after ({100 * (after / before - 1):+.1f}%)."
        )
    return "\n".join(lines)


def _run_inbound(where: Path, people: int, baseline: int, out: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.inbound",
        "--people",
        str(people),
        "--baseline-updates",
        str(baseline),
        "--repeats",
        "1",
        "--json",
        str(out),
    ]
    subprocess.run(command, cwd=where, check=True, stdout=subprocess.DEVNULL, timeout=1800)
    summary: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return summary


def _worktree(base: str, folder: Path) -> tuple[Path, str]:
    """A detached worktree of `base` with its catalogs compiled; (its path, short hash)."""
    short = subprocess.run(
        ["git", "rev-parse", "--short", base],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    path = folder / "base"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(path), base], cwd=ROOT, check=True
    )
    pybabel = Path(sys.executable).with_name("pybabel")
    subprocess.run(
        [str(pybabel), "compile", "--domain", "messages", "--directory", "locales"],
        cwd=path,
        check=True,
        capture_output=True,
    )
    return path, short


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("base", help="the commit to compare with (e.g. HEAD~1, main, 8138767)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--baseline-updates", type=int, default=2000)
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="yousaid-ab-") as tmp:
        folder = Path(tmp)
        try:
            base_path, short = _worktree(args.base, folder)
        except subprocess.CalledProcessError:
            parser.error(f"cannot make a worktree of {args.base!r}: is it a commit here?")
        try:
            for pair in range(args.pairs):
                order = [("before", base_path, short), ("after", ROOT, "working tree")]
                for side, where, label in order if pair % 2 == 0 else order[::-1]:
                    started = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
                    print(f"pair {pair + 1} of {args.pairs}: {side} ({label}), {started} UTC")
                    out = folder / f"{pair}-{side}.json"
                    summary = _run_inbound(where, args.people, args.baseline_updates, out)
                    runs.append(Run(side, label, started, summary))
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base_path)], cwd=ROOT, check=False
            )
    # Rows in pair order, before first within each pair, whatever order they ran in.
    ordered = sorted(enumerate(runs), key=lambda ir: (ir[0] // 2, ir[1].side != "before"))
    print(report([run for _, run in ordered]))


if __name__ == "__main__":
    main()
