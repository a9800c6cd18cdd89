"""Reading the dialogue files from disk (the engine layer itself does no I/O)."""

from __future__ import annotations

from pathlib import Path

from bot.datetimes import datetime_parser
from state_machines.definition import Dialogue
from state_machines.engine import Engine
from state_machines.loader import DialogueError, Problem, parse_dialogue
from storage.clock import Clock, SystemClock

# Data that lives beside the dialogues but is not one: the theme taxonomy, the risk-phrase
# lists and the word STOP in many languages (each read by its own module). Their labels are
# still extracted for translation.
DATA_FILES = frozenset({"themes.yaml", "safeguarding.yaml", "stop_words.yaml"})


def load_dialogues(directory: Path) -> dict[str, Dialogue]:
    """Every *.yaml dialogue in `directory`; raises DialogueError listing every problem."""
    dialogues: dict[str, Dialogue] = {}
    problems: list[Problem] = []
    files = sorted(p for p in directory.glob("*.yaml") if p.name not in DATA_FILES)
    if not files:
        raise DialogueError([Problem(str(directory), 1, "(folder)", "no dialogue files found")])
    for path in files:
        try:
            dialogue = parse_dialogue(path.read_text("utf-8"), path.name)
        except DialogueError as exc:
            problems.extend(exc.problems)
            continue
        if dialogue.id in dialogues:
            problems.append(Problem(path.name, 1, "(file)", f"id '{dialogue.id}' is used twice"))
        dialogues[dialogue.id] = dialogue
    if problems:
        raise DialogueError(problems)
    return dialogues


def build_engine(
    directory: Path, clock: Clock | None = None, zone: str = "Europe/London"
) -> Engine:
    """The engine for the dialogues in `directory`, reading typed dates in `zone` as of
    `clock` (a date must be in the future)."""
    parsers = {"datetime": datetime_parser(clock or SystemClock(), zone)}
    return Engine(load_dialogues(directory), parsers=parsers)
