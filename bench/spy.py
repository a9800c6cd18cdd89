"""Read a py-spy sampling profile of the inbound burst: where the bot's CPU goes.

`make profile` runs `bench.inbound` under py-spy (`record --format raw`: one line per distinct
stack, frames from the outermost to the innermost, then the number of samples) and this
summary. cProfile (`bench.inbound --profile`) times every call, and its own cost swamps
differences of a tenth; a sampler at 250 Hz costs the bot almost nothing.

py-spy samples every thread, and it cannot always tell a thread waiting on a queue from one
working (no GIL is held either way): the thread pool's and aiosqlite's idle waits and the
event loop's `select` are left out here, so the shares are of the time spent working.
SQLite runs in C: its time shows as the Python frame that called it, and is counted here by
the storage function that asked (the first frame in storage/ or bot/ above the call).

    .venv/bin/python -m bench.spy FILE [--top N]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Innermost frames that are a thread waiting, not working (file:line as py-spy prints them).
_IDLE = (
    re.compile(r"^_worker \(concurrent/futures/thread\.py:\d+\)$"),  # work_queue.get
    re.compile(r"^_connection_worker_thread \(aiosqlite/core\.py:\d+\)$"),  # tx.get
    re.compile(r"select \(selectors\.py:\d+\)$"),  # the event loop with nothing to do
)
# Innermost frames that are SQLite's C code running a statement or a commit.
_SQLITE = re.compile(
    r"^(_Connection\._execute|Connection\._execute_fetchall|Cursor\.\w+|"
    r"_Connection\.\w+_in_thread\.<locals>\.\w+|_Connection\.begin_now|"
    r"_Connection\.in_thread\.<locals>\.run) "
)
_OURS = re.compile(r"\((bot|storage|state_machines)/")
_ASKER = re.compile(r"\((storage/(?!database\.py)|bot/)")
_LINE = re.compile(r":\d+\)$")


def _frame(text: str) -> str:
    """A frame without its line number: `function (file)`."""
    return _LINE.sub(")", text)


def _area(frame: str) -> str:
    """The package or standard-library module a frame's code belongs to."""
    found = re.search(r"\(([^:)]+)", frame)
    where = found.group(1) if found else frame
    return where.split("/")[0]


@dataclass
class Summary:
    samples: int = 0
    idle: int = 0
    by_area: Counter[str] = field(default_factory=Counter)  # own time, SQLite apart
    sqlite_by_asker: Counter[str] = field(default_factory=Counter)
    own_functions: Counter[str] = field(default_factory=Counter)  # bot/, storage/, ...
    inclusive: Counter[str] = field(default_factory=Counter)

    @property
    def working(self) -> int:
        return self.samples - self.idle


def summarise(lines: list[str]) -> Summary:
    summary = Summary()
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        summary.samples += count
        innermost = frames[-1]
        if any(pattern.search(innermost) for pattern in _IDLE):
            summary.idle += count
            continue
        for frame in {_frame(f) for f in frames}:
            summary.inclusive[frame] += count
        if _SQLITE.match(innermost):
            summary.by_area["SQLite (C)"] += count
            # On the worker thread (a commit, a checkpoint) nothing of ours is above it.
            asker = next((f for f in reversed(frames) if _ASKER.search(f)), innermost)
            summary.sqlite_by_asker[_frame(asker)] += count
            continue
        summary.by_area[_area(innermost)] += count
        if _OURS.search(innermost):
            summary.own_functions[_frame(innermost)] += count
    return summary


def render(summary: Summary, top: int) -> str:
    working = summary.working or 1

    def table(title: str, counts: Counter[str]) -> list[str]:
        rows = [f"\n{title}", "| samples | share of working time | where |", "|---:|---:|---|"]
        rows += [f"| {n} | {100 * n / working:.1f}% | `{k}` |" for k, n in counts.most_common(top)]
        return rows

    out = [
        f"{summary.samples} samples, {summary.idle} of threads waiting (left out), "
        f"{summary.working} working."
    ]
    out += table("Own time by package (SQLite's C code apart):", summary.by_area)
    out += table("SQLite's time by the function that asked:", summary.sqlite_by_asker)
    out += table("Own time of YouSaid's functions:", summary.own_functions)
    ours = Counter({k: n for k, n in summary.inclusive.items() if _OURS.search(k)})
    out += table("YouSaid's functions with all they call (inclusive):", ours)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("file", help="py-spy record --format raw output")
    parser.add_argument("--top", type=int, default=15, help="rows per table (default 15)")
    args = parser.parse_args()
    text = Path(args.file).read_text(encoding="utf-8")
    print(render(summarise(text.splitlines()), args.top))


if __name__ == "__main__":
    main()
