"""`python -m bot safeguarding check --lang en|cy`: try the risk-phrase lists on sample lines.

For maintainers of dialogues/safeguarding.yaml: each line on stdin gets one JSON line on
stdout saying whether it would be signposted and which list entry matched, so a change to the
lists can be checked against a file of examples. The input text is never echoed, so the output
can be shared, pasted into an issue or kept in CI logs even when the examples are real.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from bot.safeguarding import LANGS, RiskPhrases, load_risk_phrases
from bot.settings import PROJECT_ROOT

EXIT_PROBLEMS = 2
PHRASES_FILE = "safeguarding.yaml"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `safeguarding check` to the bot's command line."""
    safeguarding = subparsers.add_parser("safeguarding", help="try the risk-phrase lists")
    actions = safeguarding.add_subparsers(
        dest="safeguarding_command", required=True, metavar="ACTION"
    )
    check = actions.add_parser(
        "check",
        help="read lines on stdin; print one JSON line each: signposted or not, and which "
        "list entry matched (the text itself is never printed)",
    )
    check.add_argument(
        "--lang", choices=LANGS, default="en", help="the language the person chose (default en)"
    )
    check.add_argument(
        "--phrases", type=Path, help=f"the lists to try (default: dialogues/{PHRASES_FILE})"
    )


def main(args: argparse.Namespace, dialogues_dir: Path | None = None) -> int:
    """Carry out `safeguarding check`; a broken phrase file prints `file:line: problem` and
    exits 2. `dialogues_dir` is where the default file lives (DIALOGUES_DIR, if set)."""
    if args.safeguarding_command != "check":
        print(f"error: unknown action '{args.safeguarding_command}'; use: check", file=sys.stderr)
        return EXIT_PROBLEMS
    path = args.phrases or (dialogues_dir or PROJECT_ROOT / "dialogues") / PHRASES_FILE
    try:
        phrases = load_risk_phrases(path)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    for number, line in enumerate(_stdin_lines(), start=1):
        print(json.dumps(verdict(phrases, number, line, args.lang)), flush=True)
    return 0


def verdict(phrases: RiskPhrases, number: int, line: str, lang: str) -> dict[str, object]:
    """The JSON object for one input line: its number and the match, never its text."""
    match = phrases.check(line, lang)
    return {
        "line": number,
        "signposted": match is not None,
        "category": match.category if match else None,
        "entry": match.entry if match else None,
        "lang": match.lang if match else None,
    }


def _stdin_lines() -> Iterator[str]:
    """Lines of stdin without their line ending; bytes that are not UTF-8 become U+FFFD
    rather than stopping the run halfway through a file."""
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # a text stream (tests, or stdin replaced)
        for line in sys.stdin:
            yield line.rstrip("\r\n")
        return
    for data in raw:
        yield data.decode("utf-8", errors="replace").rstrip("\r\n")
