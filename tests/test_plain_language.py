"""Every participant-facing English text reads at about age 9-10 (Flesch-Kincaid grade <= 5).

Exceptions are listed, with their reasons, in docs/plain-language-exceptions.yaml."""

from __future__ import annotations

import string

import pytest
import textstat
import yaml

from bot.babel_extract import extract_dialogue_yaml
from bot.dialogue_files import DATA_FILES
from bot.settings import PROJECT_ROOT

MAX_GRADE = 5.0
EXCEPTIONS_FILE = PROJECT_ROOT / "docs" / "plain-language-exceptions.yaml"
# Realistic values for placeholders, so a text is judged as a person reads it.
SAMPLES = {
    "status": "yes",
    "max": "40",
    "choice": "Yes",
    "sent": "1,240",
    "helps": "31",
    "not_helps": "fewer than 10",
    "more": "12",
    "total": "5,000",
    "unreachable": "3",
    "eta": "2 minutes",
    "role": "staff",
    "region": "Kent, Surrey and Sussex",
    "title": "Housing panel",
    "when": "Thursday 3 December 2026, 14:00",
    "starts_at": "Thursday 3 December 2026, 14:00",
    "place": "Town hall, Bute Street",
    "title_cy": "Panel tai",
    "panel_reach": "120",
    "update_reach": "fewer than 10",
    "place_cy": "Neuadd y dref, Stryd Bute",
    "support": "Travel costs, Childcare",
    "ticket": "KDF-3PX",
    "position": "2",
    "hours": "4",
    "reads": "They read our messages in Welsh. Write to them in Welsh if you can.",
    "needs": "Travel costs",
    "asked": "Interpreter",
    "need": "Interpreter",
    "language": "Polish",
    "count": "12",
    "capacity": "20",
    "taken": "12",
    "yes": "12",
    "maybe": "3",
    "waiting": "1",
    "no": "4",
    "cancelled": "1",
    "invited": "30",
    "tickets": "KDF-3PX",
    "message": "The bus leaves at noon.",
    "who": "KDF-3PX",
    "consents": "• Keep my answers: yes",
    "check_ins": "2",
    "answers": "1",
    "panels": "1",
    "safety": "0",
    "updates": "1",
    "week": "2026-W47",
    "quote": "There is no bus to the office on time.",
    "k": "10",
    "rate": "45.0%",
    "loop": "60.0%",
    "dates": "16–22 Nov 2026",
    "themes": "Housing, Money and benefits",
    "kind": "We changed this.",
    "text": "We now pay bus fares to appointments.",
    "text_en": "We now pay bus fares to appointments.",
    "text_cy": "none",
    "area": "London",
    "ref": "SG-12",
    "phone": "07700 900123",
    "category": "being in danger",
    "consent_summary": "• Keep my answers: yes\n• Invite me to panels: no\n"
    "• Tell me what changed: yes\n• Use my words without my name: no",
}


def participant_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted((PROJECT_ROOT / "dialogues").glob("*.yaml")):
        if path.name in DATA_FILES:  # theme names and risk phrases: not sentences to a person
            continue
        with path.open("rb") as handle:
            texts.extend(m for _, _, m, _ in extract_dialogue_yaml(handle, None, None, None))
    return sorted(set(texts))


def as_read(text: str) -> str:
    """Fill placeholders, and end each line as a sentence: in a chat message a line (a list
    item, a command with its meaning) is read as one unit."""
    names = {n for _, n, _, _ in string.Formatter().parse(text) if n}
    filled = text.format(**{n: SAMPLES[n] for n in names})
    lines = [line.strip(" •-") for line in filled.splitlines() if line.strip(" •-")]
    return " ".join(line if line[-1] in ".?!:" else line + "." for line in lines)


def grade(text: str) -> float:
    return float(textstat.flesch_kincaid_grade(as_read(text)))


# The grade formula needs sentences: on a button label of a few words it swings wildly
# ("Never" scores 8.4). A label is plain when it is short and no word is long.
LABEL_WORDS = 3
LABEL_SYLLABLES = 3


def is_plain(text: str) -> bool:
    words = as_read(text).rstrip(".").split()
    if len(words) <= LABEL_WORDS:
        return all(textstat.syllable_count(w) <= LABEL_SYLLABLES for w in words)
    return grade(text) <= MAX_GRADE


EXCEPTIONS: dict[str, str] = yaml.safe_load(EXCEPTIONS_FILE.read_text("utf-8")) or {}


@pytest.mark.parametrize("text", participant_texts(), ids=lambda t: t[:40])
def test_text_is_plain(text: str) -> None:
    if text in EXCEPTIONS:
        return
    assert is_plain(text), f"grade {grade(text)}: rewrite in shorter words/sentences"


def test_every_exception_is_still_needed_and_explained() -> None:
    texts = set(participant_texts())
    for text, reason in EXCEPTIONS.items():
        assert text in texts, f"{text!r} is no longer shipped: remove it from the exceptions"
        assert not is_plain(text), f"{text!r} now passes: remove it from the exceptions"
        assert len(reason.split()) >= 5, f"say why {text!r} is an exception"


def test_the_measure_can_fail() -> None:
    legalese = (
        "Notwithstanding the aforementioned considerations, participation constitutes "
        "an entirely voluntary undertaking without consequential ramifications."
    )
    assert grade(legalese) > MAX_GRADE
