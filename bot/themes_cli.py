"""Command line for the people who keep the theme keywords up to date.

`python -m bot themes tag --lang en|cy` reads answers, one per line, and prints one JSON line
per answer with its themes, so a keyword change can be tried on real wording. It never
echoes the answer back: answers may be personal, and the output may be pasted elsewhere.

`python -m bot themes evaluate` scores the keywords against the labelled corpus and exits 1
when the set-aside (holdout) part falls below the bar the product promises.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bot.settings import PROJECT_ROOT
from bot.themes import (
    ALL,
    LANGUAGES,
    SPLITS,
    Counts,
    Scores,
    Taxonomy,
    evaluate,
    load_corpus,
    load_taxonomy,
)

# The taxonomy the bot uses: its dialogues folder's (DIALOGUES_DIR, as the bot reads it).
DEFAULT_TAXONOMY = (
    Path(os.environ.get("DIALOGUES_DIR") or PROJECT_ROOT / "dialogues") / "themes.yaml"
)
DEFAULT_CORPUS = PROJECT_ROOT / "tests" / "corpus" / "themes.yaml"
# The bar on the holdout split (issue 5): below it, `evaluate` exits 1.
MIN_PRECISION = 0.8
MIN_RECALL = 0.7
EXIT_BELOW_BAR = 1
EXIT_BAD_INPUT = 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `themes tag` and `themes evaluate` to the bot's command line."""
    themes = subparsers.add_parser("themes", help="tag answers with themes; score the keywords")
    actions = themes.add_subparsers(dest="themes_command", required=True, metavar="ACTION")
    tag = actions.add_parser(
        "tag", help="read answers on stdin, one per line; print one JSON line of themes each"
    )
    tag.add_argument("--lang", required=True, choices=LANGUAGES, help="language of the answers")
    score = actions.add_parser(
        "evaluate",
        help=f"precision and recall on the labelled corpus; exit {EXIT_BELOW_BAR} when the "
        f"holdout is below precision {MIN_PRECISION} or recall {MIN_RECALL}",
    )
    score.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="labelled answers")
    for action in (tag, score):
        action.add_argument(
            "--taxonomy", type=Path, default=DEFAULT_TAXONOMY, help="the themes and keywords"
        )


def main(args: Sequence[str], stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """`python -m bot themes ...` on its own: `args` are the words after `themes`."""
    parser = argparse.ArgumentParser(prog="python -m bot")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run_themes(parser.parse_args(["themes", *args]), stdin, stdout)


def run_themes(
    args: argparse.Namespace | Sequence[str],
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Carry out a `themes` command; a bad taxonomy or corpus file prints one line, exit 2."""
    if not isinstance(args, argparse.Namespace):
        return main(args, stdin, stdout)
    out = stdout or sys.stdout
    try:
        taxonomy = load_taxonomy(args.taxonomy)
        if args.themes_command == "tag":
            return _tag(taxonomy, args.lang, stdin or sys.stdin, out)
        return _evaluate(taxonomy, args.corpus, out)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _tag(taxonomy: Taxonomy, lang: str, lines: TextIO, out: TextIO) -> int:
    """One JSON line per input line, counted from 0 (blank lines too, so numbers line up)."""
    for index, line in enumerate(lines):
        themes = taxonomy.tag(line.rstrip("\r\n"), lang)
        out.write(json.dumps({"text_index": index, "themes": list(themes)}) + "\n")
    out.flush()
    return 0


def _evaluate(taxonomy: Taxonomy, corpus: Path, out: TextIO) -> int:
    """Print the scores; exit 1 when the holdout misses the bar."""
    if not corpus.exists():
        # The corpus ships with the source (tests/), not in the Docker image.
        raise ValueError(
            f"no labelled corpus at {corpus} (it comes with the source code, not the Docker "
            "image): pass --corpus FILE"
        )
    scores = evaluate(taxonomy, load_corpus(corpus))
    out.write(format_scores(scores, taxonomy))
    holdout = scores.cell("holdout")
    passed = holdout.precision >= MIN_PRECISION and holdout.recall >= MIN_RECALL
    verdict = "meets" if passed else "DOES NOT meet"
    out.write(
        f"\nholdout precision {holdout.precision:.3f}, recall {holdout.recall:.3f}: {verdict} "
        f"the bar (precision >= {MIN_PRECISION}, recall >= {MIN_RECALL}).\n"
        "Tune keywords on the train split only; the holdout is the honest estimate.\n"
    )
    return 0 if passed else EXIT_BELOW_BAR


def format_scores(scores: Scores, taxonomy: Taxonomy) -> str:
    """The split x language table, then counts per theme (true/false positives, misses)."""
    rows = ["split    lang      n  precision  recall     F1"]
    for split in (*SPLITS, ALL):
        for lang in (*LANGUAGES, ALL):
            cell = scores.cell(split, lang)
            rows.append(f"{split:<8} {lang:<4} {cell.n:>5}  {_ratios(cell)}")
    rows += ["", f"{'theme':<27}" + "".join(f"{s + ' tp/fp/fn':>20}" for s in SPLITS)]
    for theme_id in taxonomy.ids:
        counts = [scores.by_theme.get((split, theme_id), Counts()) for split in SPLITS]
        rows.append(f"{theme_id:<27}" + "".join(f"{f'{c.tp}/{c.fp}/{c.fn}':>20}" for c in counts))
    return "\n".join(rows) + "\n"


def _ratios(cell: Counts) -> str:
    return f"{cell.precision:>9.3f}  {cell.recall:>6.3f}  {cell.f1:>5.3f}"
